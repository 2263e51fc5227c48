//! The rollout journal: one JSON line per transition that matters, appended to
//! `<output dir>/journal.jsonl` and flushed to disk (`sync_data`) before the engine takes the next
//! step, so a run killed at any point (SIGKILL, power loss) is resumed by running it again.
//! The writes and syncs run on the journal's own thread (a slow disk never stalls the async
//! threads' timers and polls); an append is awaited until that thread says the line is on disk.
//!
//! The journal says which VM ids and clone tasks this rollout owns; it is never trusted alone:
//! resume looks every VM up on the cluster and adopts only those carrying our marker.
//! It holds names, ids, UPIDs and failure reasons; never a secret.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The journal's file name inside the output dir.
pub const FILE_NAME: &str = "journal.jsonl";

/// Where the journal of a rollout writing to `output_dir` lives.
pub fn path_in(output_dir: &Path) -> PathBuf {
    output_dir.join(FILE_NAME)
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Entry {
    /// The operator asked to reboot the VM and wait for it again.
    RebootRequested {
        name: String,
        vmid: u32,
    },
    /// The operator asked to destroy the VM and clone it again (same name and id).
    RecreateRequested {
        name: String,
        vmid: u32,
    },
    /// A run of the rollout began (first run or a resume).
    RolloutStarted {
        rollout: String,
        /// The digest of `values`.
        settings: String,
        /// The settings themselves (absent in journals of older versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<super::settings::Settings>,
    },
    /// The VM `name` gets `vmid` on `node` and its NICs' static addresses (net0's as
    /// `address`, the others' by NIC name in `nic_addresses`: `{"net1": "10.0.20.5/24"}`),
    /// pool-given ones included: written before its clone is asked for, so a rerun keeps them
    /// all.
    Assigned {
        name: String,
        vmid: u32,
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        nic_addresses: BTreeMap<String, String>,
    },
    /// The clone is about to be asked for (its answer may be lost: a resume looks before cloning).
    CloneRequested {
        name: String,
        vmid: u32,
    },
    /// PVE accepted the clone; `upid` is its task.
    CloneAccepted {
        name: String,
        vmid: u32,
        upid: String,
    },
    Cloned {
        name: String,
        vmid: u32,
    },
    /// PVE accepted the migration of the clone (made where its template lives) to `target`;
    /// `upid` is its task. A resume awaits it before looking where the VM is.
    MigrateAccepted {
        name: String,
        vmid: u32,
        target: String,
        upid: String,
    },
    Configured {
        name: String,
        vmid: u32,
    },
    Started {
        name: String,
        vmid: u32,
    },
    Verified {
        name: String,
        vmid: u32,
    },
    Failed {
        name: String,
        vmid: u32,
        phase: String,
        reason: String,
    },
    Skipped {
        name: String,
        vmid: u32,
    },
    /// The VM's `on_verified` hook is about to run.
    HookStarted {
        name: String,
        vmid: u32,
    },
    /// The hook ended; `ok` when it exited 0. A resumed run does not run a hook that ended ok
    /// again; one started and never ended (cut off) runs again.
    HookEnded {
        name: String,
        vmid: u32,
        ok: bool,
    },
    /// The operator went on without the hook.
    HookSkipped {
        name: String,
        vmid: u32,
    },
    /// `destroy` stopped and deleted the VM.
    Destroyed {
        name: String,
        vmid: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct Line {
    at: Timestamp,
    #[serde(flatten)]
    entry: Entry,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "journal {path} is in use by another pve-rollout run of this rollout; wait for it to end (two runs at once could clone a VM twice)"
    )]
    Busy { path: String },
    #[error(
        "journal {path}, line {line}: not a journal record ({reason}); fix or move the file away to start over"
    )]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The last known step of a VM, as the journal tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Assigned,
    CloneRequested,
    CloneAccepted,
    Cloned,
    Configured,
    Started,
    Verified,
    Failed,
    Skipped,
    Destroyed,
}

/// What the journal knows about one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    pub vmid: u32,
    pub node: String,
    /// The last clone task accepted for it.
    pub clone_upid: Option<String>,
    /// The last migration task accepted for it.
    pub migrate_upid: Option<String>,
    /// Its NICs' static IPv4 addresses by NIC index (`10.0.10.21/24`), as an `ip_pool` gave them.
    pub addresses: BTreeMap<usize, String>,
    pub step: Step,
    /// Its `on_verified` hook succeeded (or was skipped) for this vmid: not to be run again.
    pub hook_done: bool,
}

/// The journal folded: the rollout it belongs to and every VM it names, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub rollout: Option<String>,
    pub settings: Option<String>,
    /// The last run's settings, when its journal line holds them.
    pub settings_values: Option<super::settings::Settings>,
    pub vms: BTreeMap<String, VmRecord>,
    /// A torn last line (the writer died mid-line) was dropped.
    pub torn_tail: bool,
}

impl History {
    fn apply(&mut self, entry: Entry) {
        fn set(
            vms: &mut BTreeMap<String, VmRecord>,
            name: String,
            vmid: u32,
            step: Step,
        ) -> &mut VmRecord {
            let r = vms.entry(name).or_insert(VmRecord {
                vmid,
                node: String::new(),
                clone_upid: None,
                migrate_upid: None,
                addresses: BTreeMap::new(),
                step,
                hook_done: false,
            });
            if r.vmid != vmid {
                r.clone_upid = None;
                r.migrate_upid = None;
                r.hook_done = false;
            }
            r.vmid = vmid;
            r.step = step;
            r
        }
        match entry {
            Entry::RolloutStarted {
                rollout,
                settings,
                values,
            } => {
                self.rollout = Some(rollout);
                self.settings = Some(settings);
                self.settings_values = values;
            }
            Entry::Assigned {
                name,
                vmid,
                node,
                address,
                nic_addresses,
            } => {
                let r = set(&mut self.vms, name, vmid, Step::Assigned);
                r.node = node;
                r.addresses.extend(address.map(|a| (0, a)));
                r.addresses
                    .extend(nic_addresses.into_iter().filter_map(|(nic, address)| {
                        Some((nic.strip_prefix("net")?.parse().ok()?, address))
                    }));
            }
            Entry::CloneRequested { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::CloneRequested);
            }
            Entry::CloneAccepted { name, vmid, upid } => {
                set(&mut self.vms, name, vmid, Step::CloneAccepted).clone_upid = Some(upid);
            }
            Entry::Cloned { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::Cloned);
            }
            // Still `Cloned`: the VM is configured only once it is on its node.
            Entry::MigrateAccepted {
                name, vmid, upid, ..
            } => {
                set(&mut self.vms, name, vmid, Step::Cloned).migrate_upid = Some(upid);
            }
            Entry::Configured { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::Configured);
            }
            Entry::Started { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::Started);
            }
            Entry::Verified { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::Verified);
            }
            Entry::Failed { name, vmid, .. } => {
                set(&mut self.vms, name, vmid, Step::Failed);
            }
            Entry::Skipped { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::Skipped);
            }
            // It exists and is configured; a resume goes on from booting.
            Entry::RebootRequested { name, vmid } => {
                set(&mut self.vms, name, vmid, Step::Configured);
            }
            // It may be gone: a resume looks it up, and clones it when it is.
            Entry::RecreateRequested { name, vmid } => {
                let r = set(&mut self.vms, name, vmid, Step::Assigned);
                r.clone_upid = None;
                r.migrate_upid = None;
            }
            Entry::HookStarted { name, vmid } => {
                if let Some(r) = self.vms.get_mut(&name).filter(|r| r.vmid == vmid) {
                    r.hook_done = false;
                }
            }
            Entry::HookEnded { name, vmid, ok } => {
                if let Some(r) = self.vms.get_mut(&name).filter(|r| r.vmid == vmid) {
                    r.hook_done = ok;
                }
            }
            Entry::HookSkipped { name, vmid } => {
                if let Some(r) = self.vms.get_mut(&name).filter(|r| r.vmid == vmid) {
                    r.hook_done = true;
                }
            }
            Entry::Destroyed { name, vmid } => {
                let r = set(&mut self.vms, name, vmid, Step::Destroyed);
                r.clone_upid = None;
                r.migrate_upid = None;
            }
        }
    }

    /// Did VM `name` with `vmid` finish its `on_verified` hook (ok, or skipped) in a run so far?
    pub fn hook_done(&self, name: &str, vmid: u32) -> bool {
        self.vms
            .get(name)
            .is_some_and(|r| r.vmid == vmid && r.hook_done)
    }

    /// Reads the journal at `path`; a missing file is an empty history. A torn last line (a
    /// crash mid-write) is dropped; a bad line anywhere else is an error, since guessing past it
    /// could lose track of a VM.
    pub fn read(path: &Path) -> Result<History, JournalError> {
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut text = String::new();
        match File::open(path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).map_err(io)?;
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<History, JournalError> {
        let mut history = History::default();
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(line) {
                Ok(l) => history.apply(l.entry),
                Err(_) if i + 1 == lines.len() && !complete => history.torn_tail = true,
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path: path.display().to_string(),
                        line: i + 1,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(history)
    }
}

/// The open journal. Appends go, in order, to the journal's writer thread, which owns the file;
/// each is on disk when `append`'s future resolves.
pub struct Journal {
    path: PathBuf,
    /// To the writer thread; `None` once dropped (the thread then ends).
    to_writer: Option<mpsc::Sender<LineToWrite>>,
    writer: Option<JoinHandle<()>>,
    before_sync: SyncHook,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

/// A test seam: runs on the writer thread before each `sync_data` (a slow disk, in tests).
type SyncHook = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

/// One line for the writer, and where to say it is on disk.
struct LineToWrite {
    line: String,
    done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

/// The writer thread: lines written in arrival order; every line queued by the time one is
/// taken goes to disk with it under one sync (a group commit: 1,000 VMs' plan lines, or the
/// state changes of many VMs at once, cost one sync, not one each), then each caller is told.
fn write_lines(mut file: File, lines: mpsc::Receiver<LineToWrite>, before_sync: SyncHook) {
    while let Ok(first) = lines.recv() {
        let mut group = vec![first];
        group.extend(lines.try_iter());
        let bytes: String = group.iter().map(|w| w.line.as_str()).collect();
        let result = file.write_all(bytes.as_bytes()).and_then(|()| {
            if let Some(hook) = &*before_sync.lock().unwrap_or_else(|e| e.into_inner()) {
                hook();
            }
            file.sync_data()
        });
        for w in group {
            let told = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            let _ = w.done.send(told);
        }
    }
}

impl Drop for Journal {
    /// Ends the writer (every line sent is written first) and releases the file's lock before
    /// returning, so the same journal can be opened again at once.
    fn drop(&mut self) {
        self.to_writer.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal in `output_dir`, creating the dir. A torn last line left
    /// by a crash is cut off first, so the next record starts on a line of its own.
    pub fn open(output_dir: &Path) -> Result<Journal, JournalError> {
        let path = path_in(output_dir);
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(output_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        lock_exclusive(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                JournalError::Busy {
                    path: path.display().to_string(),
                }
            } else {
                io(e)
            }
        })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            file.set_len(keep as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        if bytes.is_empty() {
            // A new file: its directory entry must reach the disk too (power loss).
            File::open(output_dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let (to_writer, lines) = mpsc::channel();
        let before_sync: SyncHook = Arc::default();
        let hook = before_sync.clone();
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || write_lines(file, lines, hook))
            .map_err(io)?;
        Ok(Journal {
            path,
            to_writer: Some(to_writer),
            writer: Some(writer),
            before_sync,
        })
    }

    /// Test seam: `hook` runs on the writer thread before each sync (to make a disk slow).
    #[doc(hidden)]
    pub fn before_sync(&self, hook: impl Fn() + Send + 'static) {
        *self.before_sync.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; resolves once it is on disk.
    pub async fn append(&self, entry: Entry) -> Result<(), JournalError> {
        self.submit(entry).await
    }

    /// Queues one record now (records are written in the order they are submitted) and
    /// returns what resolves once it is on disk; for callers that cannot wait here.
    pub fn submit(
        &self,
        entry: Entry,
    ) -> impl std::future::Future<Output = Result<(), JournalError>> + Send + 'static {
        let path = self.path.display().to_string();
        let io = move |source| JournalError::Io { path, source };
        let queued = serde_json::to_string(&Line {
            at: Timestamp::now(),
            entry,
        })
        .map_err(std::io::Error::other)
        .and_then(|mut line| {
            line.push('\n');
            let (done, on_disk) = tokio::sync::oneshot::channel();
            let writer = self.to_writer.as_ref().ok_or_else(gone)?;
            writer
                .send(LineToWrite { line, done })
                .map_err(|_| gone())?;
            Ok(on_disk)
        });
        async move {
            let on_disk = queued.map_err(io.clone())?;
            match on_disk.await {
                Ok(written) => written.map_err(io),
                Err(_) => Err(io(gone())),
            }
        }
    }
}

/// The writer thread is gone (it panicked): nothing more reaches the disk.
fn gone() -> std::io::Error {
    std::io::Error::other("the journal's writer stopped")
}

/// One run per journal: an advisory lock the kernel drops when the holder dies (even SIGKILL).
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns and keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(name: &str, vmid: u32) -> Entry {
        Entry::Assigned {
            name: name.into(),
            vmid,
            node: "pve1".into(),
            address: None,
            nic_addresses: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn every_nics_address_is_read_back_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(Entry::Assigned {
            name: "web-1".into(),
            vmid: 100,
            node: "pve1".into(),
            address: Some("10.0.10.20/24".into()),
            nic_addresses: [("net1".to_string(), "10.0.20.20/24".to_string())].into(),
        })
        .await
        .unwrap();
        // A later line without addresses (a rerun's) keeps them.
        j.append(assigned("web-1", 100)).await.unwrap();
        let history = History::read(j.path()).unwrap();
        let addresses: Vec<(usize, &str)> = (history.vms["web-1"].addresses.iter())
            .map(|(i, a)| (*i, a.as_str()))
            .collect();
        assert_eq!(addresses, [(0, "10.0.10.20/24"), (1, "10.0.20.20/24")]);
    }

    #[tokio::test]
    async fn a_hook_is_done_once_it_ended_ok_or_was_skipped_for_that_vmid() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let hook = |name: &str, vmid, ok: Option<bool>| match ok {
            None => Entry::HookStarted {
                name: name.into(),
                vmid,
            },
            Some(ok) => Entry::HookEnded {
                name: name.into(),
                vmid,
                ok,
            },
        };
        for e in [
            assigned("ok", 100),
            hook("ok", 100, None),
            hook("ok", 100, Some(true)),
            assigned("cut", 101),
            hook("cut", 101, None),
            assigned("failed", 102),
            hook("failed", 102, None),
            hook("failed", 102, Some(false)),
            assigned("skipped", 103),
            hook("skipped", 103, None),
            Entry::HookSkipped {
                name: "skipped".into(),
                vmid: 103,
            },
            // Ran ok, then a later run started it again and was cut off: run it again.
            assigned("again", 104),
            hook("again", 104, Some(true)),
            hook("again", 104, None),
            // Ran ok on an id the VM no longer has.
            assigned("moved", 105),
            hook("moved", 105, Some(true)),
            assigned("moved", 106),
        ] {
            j.append(e).await.unwrap();
        }
        let h = History::read(j.path()).unwrap();
        assert!(h.hook_done("ok", 100));
        assert!(!h.hook_done("ok", 999));
        assert!(!h.hook_done("cut", 101));
        assert!(!h.hook_done("failed", 102));
        assert!(h.hook_done("skipped", 103));
        assert!(!h.hook_done("again", 104));
        assert!(!h.hook_done("moved", 106));
        assert!(!h.hook_done("never", 107));
    }

    #[tokio::test]
    async fn appends_survive_reopen_and_fold_into_a_history() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(Entry::RolloutStarted {
            rollout: "r".into(),
            settings: "abc".into(),
            values: None,
        })
        .await
        .unwrap();
        j.append(assigned("a", 100)).await.unwrap();
        j.append(Entry::CloneAccepted {
            name: "a".into(),
            vmid: 100,
            upid: "UPID:pve1:1".into(),
        })
        .await
        .unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        j.append(Entry::Verified {
            name: "a".into(),
            vmid: 100,
        })
        .await
        .unwrap();
        let h = History::read(&path_in(dir.path())).unwrap();
        assert_eq!(h.rollout.as_deref(), Some("r"));
        let a = &h.vms["a"];
        assert_eq!(
            (a.vmid, a.node.as_str(), a.step, a.clone_upid.as_deref()),
            (100, "pve1", Step::Verified, Some("UPID:pve1:1"))
        );
        assert!(!h.torn_tail);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_dropped_and_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(assigned("a", 100)).await.unwrap();
        drop(j);
        let path = path_in(dir.path());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"at":"2026-01-01T00:00:00Z","event":"assig"#)
            .unwrap();
        drop(f);
        let h = History::read(&path).unwrap();
        assert!(h.torn_tail);
        assert_eq!(h.vms["a"].step, Step::Assigned);

        let j = Journal::open(dir.path()).unwrap();
        j.append(assigned("b", 101)).await.unwrap();
        let h = History::read(&path).unwrap();
        assert!(!h.torn_tail);
        assert_eq!(h.vms.len(), 2);
    }

    /// A disk whose sync takes 200 ms, on a runtime of one thread (the worst case: a VM task
    /// and the others' polls share it): while an append waits for its sync, the other task
    /// keeps polling. Had the append blocked the thread, not one poll would run meanwhile.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_slow_sync_does_not_hold_up_other_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.before_sync(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = polls.clone();
        let poller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        tokio::task::yield_now().await;
        let before = polls.load(std::sync::atomic::Ordering::SeqCst);
        j.append(assigned("a", 100)).await.unwrap();
        let during = polls.load(std::sync::atomic::Ordering::SeqCst) - before;
        poller.abort();
        assert!(during >= 5, "{during} polls while the sync ran");
        let h = History::read(&path_in(dir.path())).unwrap();
        assert_eq!(
            h.vms["a"].step,
            Step::Assigned,
            "on disk when append returned"
        );
    }

    /// Lines queued while a sync runs go to disk together, with one sync (a plan of 1,000 VMs
    /// is 1,000 lines: one sync each took seconds on a slow disk), and each is on disk, in
    /// order, when its own future resolves.
    #[tokio::test]
    async fn lines_queued_together_share_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let syncs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = syncs.clone();
        j.before_sync(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
        });
        let queued: Vec<_> = (0..200)
            .map(|i| j.submit(assigned(&format!("vm-{i}"), 100 + i)))
            .collect();
        for (i, on_disk) in queued.into_iter().enumerate() {
            on_disk.await.unwrap();
            let h = History::read(j.path()).unwrap();
            assert!(
                h.vms.contains_key(&format!("vm-{i}")),
                "line {i} on disk when resolved"
            );
        }
        let syncs = syncs.load(std::sync::atomic::Ordering::SeqCst);
        assert!(syncs <= 3, "200 queued lines took {syncs} syncs");
        // In the order they were submitted.
        let text = std::fs::read_to_string(j.path()).unwrap();
        let vmids: Vec<u32> = text
            .lines()
            .map(|l| match serde_json::from_str::<Line>(l).unwrap().entry {
                Entry::Assigned { vmid, .. } => vmid,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(vmids, (100..300).collect::<Vec<u32>>());
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, "{\"nonsense\":1}\n{}\n").unwrap();
        let err = History::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_second_writer_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = Journal::open(dir.path()).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Busy { .. }), "{err}");
        drop(first);
        Journal::open(dir.path()).expect("free again");
    }

    #[test]
    fn a_missing_journal_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            History::read(&path_in(dir.path())).unwrap(),
            History::default()
        );
    }
}
