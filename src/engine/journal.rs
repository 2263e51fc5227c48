//! The rollout journal: one JSON line per transition that matters, appended to
//! `<output dir>/journal.jsonl` and flushed to disk (`sync_data`) before the engine takes the next
//! step, so a run killed at any point (SIGKILL, power loss) is resumed by running it again.
//!
//! The journal says which VM ids and clone tasks this rollout owns; it is never trusted alone:
//! resume looks every VM up on the cluster and adopts only those carrying our marker.
//! It holds names, ids, UPIDs and failure reasons; never a secret.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// A run of the rollout began (first run or a resume).
    RolloutStarted {
        rollout: String,
        /// The digest of `values`.
        settings: String,
        /// The settings themselves (absent in journals of older versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<super::settings::Settings>,
    },
    /// The VM `name` gets `vmid` on `node` and, when taken from an `ip_pool`, net0's static
    /// `address` (written before its clone is asked for, so a rerun keeps both).
    Assigned {
        name: String,
        vmid: u32,
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
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
    /// The address an `ip_pool` gave it (`10.0.10.21/24`).
    pub address: Option<String>,
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
                address: None,
                step,
                hook_done: false,
            });
            if r.vmid != vmid {
                r.clone_upid = None;
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
            } => {
                let r = set(&mut self.vms, name, vmid, Step::Assigned);
                r.node = node;
                if address.is_some() {
                    r.address = address;
                }
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
                set(&mut self.vms, name, vmid, Step::Destroyed).clone_upid = None;
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

/// The open journal. Appends are serialised by a mutex and each is on disk when `append`
/// returns. The write is blocking, but it is one small line and one `fdatasync`.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
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
        Ok(Journal {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&self, entry: Entry) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut line = serde_json::to_string(&Line {
            at: Timestamp::now(),
            entry,
        })
        .map_err(|e| io(std::io::Error::other(e)))?;
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }
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
        }
    }

    #[test]
    fn a_hook_is_done_once_it_ended_ok_or_was_skipped_for_that_vmid() {
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
            j.append(e).unwrap();
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

    #[test]
    fn appends_survive_reopen_and_fold_into_a_history() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(Entry::RolloutStarted {
            rollout: "r".into(),
            settings: "abc".into(),
            values: None,
        })
        .unwrap();
        j.append(assigned("a", 100)).unwrap();
        j.append(Entry::CloneAccepted {
            name: "a".into(),
            vmid: 100,
            upid: "UPID:pve1:1".into(),
        })
        .unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        j.append(Entry::Verified {
            name: "a".into(),
            vmid: 100,
        })
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

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(assigned("a", 100)).unwrap();
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
        j.append(assigned("b", 101)).unwrap();
        let h = History::read(&path).unwrap();
        assert!(!h.torn_tail);
        assert_eq!(h.vms.len(), 2);
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
