//! What an operator keeps after a rollout: `summary.json`, `summary.md`, `inventory.ini` and the
//! original wait_for_vm.sh flow's `vm_<VMID>_ip.txt` / `vm_<VMID>_summary.txt`, all written
//! atomically (temp + rename).
//! Never a secret in any of them: the types below hold none.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indexmap::IndexMap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or goes away, or the shape grows a part readers should
/// know of. 2: per VM its `nics` (name, MAC, bridge, VLAN, expected and reported addresses), its
/// `pool` and `tags`; `ip` stays the primary (net0) address.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub rollout: RolloutInfo,
    pub vms: Vec<VmSummary>,
    /// The `on_finished` hook, once it ran (the summary is written again with it).
    #[serde(default)]
    pub on_finished: Option<HookReport>,
}

/// The rollout's settings as run (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutInfo {
    /// Stable id of this rollout (marks its VMs).
    pub id: String,
    pub proxmox_url: String,
    pub template: String,
    pub mode: String,
    pub vm_count: usize,
    pub deployment_delay: String,
    pub nodes: Vec<String>,
    #[serde(with = "ms")]
    pub started: Timestamp,
    #[serde(with = "ms::option", default)]
    pub finished: Option<Timestamp>,
    /// True when the operator aborted (or quit) before every VM settled.
    pub aborted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSummary {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// `verified`, `failed`, `skipped`, `paused`, or the phase it stopped in.
    pub state: String,
    pub ip: Option<String>,
    pub ip_candidates: Vec<String>,
    pub uname: Option<String>,
    pub os: Option<String>,
    pub attempts: u32,
    pub error: Option<String>,
    /// Phase name (`cloning`, `configuring`, `booting`, `awaiting-agent`, `ip-found`,
    /// `verifying`, `provisioning`) -> when it started and finished.
    pub phases: IndexMap<String, PhaseTimes>,
    /// The operator's guest checks (`[[checks.exec]]`), in the order they ran, each as its last
    /// run ended.
    #[serde(default)]
    pub checks: Vec<CheckReport>,
    /// The `on_verified` hook, when one is configured and it was reached.
    #[serde(default)]
    pub hook: Option<HookReport>,
    /// Its NICs in order (net0 first).
    #[serde(default)]
    pub nics: Vec<NicSummary>,
    /// The resource pool it joined.
    #[serde(default)]
    pub pool: Option<String>,
    /// The tags the rollout gave it (its marker tag included).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One NIC of a VM: what the plan set and what the guest agent reported on the interface with
/// its MAC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSummary {
    /// `net0`, `net1`, ...
    pub name: String,
    /// As PVE generated it (`BC:24:11:...`), once known.
    pub mac: Option<String>,
    pub bridge: String,
    pub vlan: Option<u16>,
    /// The static addresses it was given (`10.0.10.21/24`, `2001:db8::21/64`); empty for DHCP
    /// and SLAAC.
    pub expected: Vec<String>,
    /// The addresses the agent reported on it (link-local and loopback left out), when it was
    /// asked.
    pub reported: Vec<String>,
}

/// One guest check as its last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub name: String,
    pub passed: bool,
    /// The command's exit code (`None` when it never exited: timed out, or could not run).
    pub exit_code: Option<i64>,
    /// Runs so far (1 + retries used).
    pub runs: u32,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The last lines of the command's stdout and stderr.
    pub stdout_tail: Vec<String>,
    pub stderr_tail: Vec<String>,
}

/// A hook's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookReport {
    /// `running`, `succeeded`, `failed`, `skipped` (by the operator), `aborted` (cut off by an
    /// abort; a resumed run runs it again) or `done-before` (it succeeded in an earlier run of
    /// this rollout and was not run again).
    pub state: String,
    /// The hook's exit code when it exited by itself.
    pub exit_code: Option<i32>,
    /// How it ended, in words: `exit 0`, `timed out after 30m`, `stopped by the abort`.
    pub result: Option<String>,
    /// Its last lines of output.
    pub tail: Vec<String>,
}

impl HookReport {
    pub fn failed(&self) -> bool {
        self.state == "failed"
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimes {
    #[serde(with = "ms::option", default)]
    pub started: Option<Timestamp>,
    #[serde(with = "ms::option", default)]
    pub finished: Option<Timestamp>,
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T17:09:45.123Z`.
pub mod ms {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    pub mod option {
        use jiff::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            text.map(|t| t.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// Writing the outputs failed. Names the file; carries no secret (the summary holds none).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot create the output directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode summary.json: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Summary {
    /// VMs per state label, for "3 verified, 1 failed" lines.
    pub fn count(&self, state: &str) -> usize {
        count(&self.vms, state)
    }

    /// `3 verified, 1 failed, 0 skipped of 4` (other states added when present).
    pub fn tally(&self) -> String {
        tally(&self.vms)
    }
}

fn count(vms: &[VmSummary], state: &str) -> usize {
    vms.iter().filter(|vm| vm.state == state).count()
}

fn tally(vms: &[VmSummary]) -> String {
    let mut parts: Vec<String> = ["verified", "failed", "skipped"]
        .iter()
        .map(|state| format!("{} {state}", count(vms, state)))
        .collect();
    let hook_failed = count(vms, "hook-failed");
    if hook_failed > 0 {
        parts.push(format!("{hook_failed} hook-failed"));
    }
    let others = vms.len()
        - count(vms, "verified")
        - count(vms, "failed")
        - count(vms, "skipped")
        - hook_failed;
    if others > 0 {
        parts.push(format!("{others} unfinished"));
    }
    format!("{} of {}", parts.join(", "), vms.len())
}

impl NicSummary {
    /// `net1 on vmbr2 VLAN 20 (MAC BC:24:11:..): 10.0.20.20, expected 10.0.20.20/24`.
    pub fn describe(&self) -> String {
        let mut out = format!("{} on {}", self.name, self.bridge);
        if let Some(tag) = self.vlan {
            out.push_str(&format!(" VLAN {tag}"));
        }
        if let Some(mac) = &self.mac {
            out.push_str(&format!(" (MAC {mac})"));
        }
        match self.reported.is_empty() {
            true => out.push_str(": nothing reported"),
            false => out.push_str(&format!(": {}", self.reported.join(" "))),
        }
        if !self.expected.is_empty() {
            out.push_str(&format!(", expected {}", self.expected.join(" ")));
        }
        out
    }
}

impl VmSummary {
    /// A VM known only by its plan: nothing has happened to it yet.
    pub fn planned(name: &str, vmid: u32, node: &str) -> VmSummary {
        VmSummary {
            name: name.to_string(),
            vmid,
            node: node.to_string(),
            state: "queued".to_string(),
            ip: None,
            ip_candidates: Vec::new(),
            uname: None,
            os: None,
            attempts: 1,
            error: None,
            phases: IndexMap::new(),
            checks: Vec::new(),
            hook: None,
            nics: Vec::new(),
            pool: None,
            tags: Vec::new(),
        }
    }

    /// From the first phase's start to the last phase's finish (or start, if still running).
    pub fn elapsed(&self) -> Option<Duration> {
        let first = self.phases.values().filter_map(|p| p.started).min()?;
        let last = self
            .phases
            .values()
            .flat_map(|p| [p.started, p.finished])
            .flatten()
            .max()?;
        Some(between(first, last))
    }
}

impl PhaseTimes {
    pub fn duration(&self) -> Option<Duration> {
        Some(between(self.started?, self.finished?))
    }
}

fn between(from: Timestamp, to: Timestamp) -> Duration {
    let ms = to.as_millisecond().saturating_sub(from.as_millisecond());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A short human duration: `850ms`, `12.3s`, `2m03s`, `1h02m`.
pub fn format_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{}.{}s", secs, (ms % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Writes every output for `summary` into `dir` (created if needed), each file atomically:
/// `summary.json`, `summary.md`, `inventory.ini`, and per VM `vm_<VMID>_summary.txt` plus
/// `vm_<VMID>_ip.txt` when its IP is known. Returns the paths written, in that order.
pub fn write_all(dir: &Path, summary: &Summary) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut json = serde_json::to_string_pretty(summary)?;
    json.push('\n');
    let mut files: Vec<(String, String)> = vec![
        ("summary.json".to_string(), json),
        ("summary.md".to_string(), markdown(summary)),
        (
            "inventory.ini".to_string(),
            inventory(&summary.rollout.id, &summary.vms),
        ),
    ];
    for vm in &summary.vms {
        files.extend(vm_files(&summary.rollout, vm));
    }
    write_atomic(dir, files)
}

/// The original wait_for_vm.sh flow's files for one VM: `vm_<VMID>_summary.txt`, and
/// `vm_<VMID>_ip.txt` once its IP is known.
fn vm_files(rollout: &RolloutInfo, vm: &VmSummary) -> Vec<(String, String)> {
    let mut files = vec![(format!("vm_{}_summary.txt", vm.vmid), vm_text(rollout, vm))];
    if let Some(ip) = &vm.ip {
        files.push((format!("vm_{}_ip.txt", vm.vmid), format!("{ip}\n")));
    }
    files
}

/// One VM's files as soon as it settles (verified, failed, skipped), as the original
/// wait_for_vm.sh flow wrote them VM by VM: a script can take a VM's IP while the rollout goes
/// on, and the final export finds them written (their text holds nothing about the rollout's
/// end) and skips them.
pub fn write_vm_files(
    dir: &Path,
    rollout: &RolloutInfo,
    vm: &VmSummary,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomic(dir, vm_files(rollout, vm))
}

/// `vm_<VMID>_inventory.ini` in `dir`: an Ansible inventory holding only `vm`, in its node's
/// group and in `[verified]` (what an `on_verified` hook is handed as `{inventory}`).
pub fn write_vm_inventory(
    dir: &Path,
    rollout_id: &str,
    vm: &VmSummary,
) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let one = [VmSummary {
        state: "verified".to_string(),
        ..vm.clone()
    }];
    let name = format!("vm_{}_inventory.ini", vm.vmid);
    let mut paths = write_atomic(dir, vec![(name, inventory(rollout_id, &one))])?;
    Ok(paths.remove(0))
}

/// Each file through a temp file in the same directory, fsync, rename: readers see the old file
/// or the new one, never half of one. Returns every file's path, unchanged ones included. All temp files are written first and synced together on a
/// few threads, so the file system commits them in a few journal commits rather than one per
/// file (2,000 files for 1,000 VMs took seconds one by one on a slow disk); then the renames,
/// and one sync of the directory makes them durable. On an error no temp file is left.
fn write_atomic(dir: &Path, files: Vec<(String, String)>) -> Result<Vec<PathBuf>, ReportError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const SYNC_THREADS: usize = 8;
    const FILES_PER_THREAD: usize = 8;
    // A file that already holds this text (written when its VM settled) is left as it is.
    let all: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
    let files: Vec<(String, String)> = files
        .into_iter()
        .filter(|(name, content)| {
            std::fs::read(dir.join(name)).ok().as_deref() != Some(content.as_bytes())
        })
        .collect();
    let temps: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|(name, _)| {
            let temp = dir.join(format!(
                ".{name}.tmp-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            (temp, dir.join(name))
        })
        .collect();
    let fail = |path: &Path, source| {
        for (temp, _) in &temps {
            let _ = std::fs::remove_file(temp);
        }
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    };
    let mut opened = Vec::with_capacity(files.len());
    for ((temp, path), (_, content)) in temps.iter().zip(&files) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
            .and_then(|mut f| f.write_all(content.as_bytes()).map(|()| f));
        match file {
            Ok(file) => opened.push(file),
            Err(source) => return Err(fail(path, source)),
        }
    }
    let sync = |files: &[std::fs::File], names: &[(PathBuf, PathBuf)]| {
        files
            .iter()
            .zip(names)
            .try_for_each(|(file, (_, path))| file.sync_all().map_err(|e| (path.clone(), e)))
    };
    // A few files (one VM's) are synced here; threads pay off only for many.
    let chunk = opened.len().div_ceil(SYNC_THREADS).max(FILES_PER_THREAD);
    let synced = match opened.len() <= chunk {
        true => sync(&opened, &temps),
        false => std::thread::scope(|scope| {
            let workers: Vec<_> = opened
                .chunks(chunk)
                .zip(temps.chunks(chunk))
                .map(|(files, names)| scope.spawn(move || sync(files, names)))
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err((dir.to_path_buf(), std::io::Error::other("panicked"))))
            })
        }),
    };
    if let Err((path, source)) = synced {
        return Err(fail(&path, source));
    }
    drop(opened);
    for (temp, path) in &temps {
        if let Err(source) = std::fs::rename(temp, path) {
            return Err(fail(path, source));
        }
    }
    sync_dir(dir);
    Ok(all)
}

/// Makes the renames durable. Best effort: not every platform can open a directory.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

mod text;
#[cfg(test)]
use text::{cell, group_name};
use text::{inventory, markdown, vm_text};

#[cfg(test)]
mod tests;
