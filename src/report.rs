//! What an operator keeps after a rollout: `summary.json`, `summary.md`, `inventory.ini` and the
//! original wait_for_vm.sh flow's `vm_<VMID>_ip.txt` / `vm_<VMID>_summary.txt`, all written
//! atomically (temp + rename).
//! Never a secret in any of them: the types below hold none.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indexmap::IndexMap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub rollout: RolloutInfo,
    pub vms: Vec<VmSummary>,
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
    /// `verifying`) -> when it started and finished.
    pub phases: IndexMap<String, PhaseTimes>,
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
        self.vms.iter().filter(|vm| vm.state == state).count()
    }

    /// `3 verified, 1 failed, 0 skipped of 4` (other states added when present).
    pub fn tally(&self) -> String {
        let mut parts: Vec<String> = ["verified", "failed", "skipped"]
            .iter()
            .map(|state| format!("{} {state}", self.count(state)))
            .collect();
        let others =
            self.vms.len() - self.count("verified") - self.count("failed") - self.count("skipped");
        if others > 0 {
            parts.push(format!("{others} unfinished"));
        }
        format!("{} of {}", parts.join(", "), self.vms.len())
    }
}

impl VmSummary {
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
        ("inventory.ini".to_string(), inventory(summary)),
    ];
    for vm in &summary.vms {
        files.push((format!("vm_{}_summary.txt", vm.vmid), vm_text(summary, vm)));
        if let Some(ip) = &vm.ip {
            files.push((format!("vm_{}_ip.txt", vm.vmid), format!("{ip}\n")));
        }
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, content) in files {
        written.push(write_atomic(dir, &name, content.as_bytes())?);
    }
    sync_dir(dir);
    Ok(written)
}

/// Temp file in the same directory, fsync, rename: readers see the old file or the new one,
/// never half of one.
fn write_atomic(dir: &Path, name: &str, content: &[u8]) -> Result<PathBuf, ReportError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(name);
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    match result {
        Ok(()) => Ok(path),
        Err(source) => {
            let _ = std::fs::remove_file(&temp);
            Err(ReportError::Write { path, source })
        }
    }
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

fn or_dash(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

/// One markdown table cell: no pipes or newlines can break the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn markdown(summary: &Summary) -> String {
    let r = &summary.rollout;
    let mut out = String::new();
    let _ = writeln!(out, "# Rollout {}\n", r.id);
    let _ = writeln!(out, "- Proxmox: {}", r.proxmox_url);
    let _ = writeln!(out, "- Template: {}", r.template);
    let _ = writeln!(
        out,
        "- Mode: {}, {} VMs, deployment delay {}, nodes: {}",
        r.mode,
        r.vm_count,
        r.deployment_delay,
        r.nodes.join(", ")
    );
    let _ = writeln!(out, "- Started: {}", ms::format(&r.started));
    match r.finished {
        Some(finished) => {
            let _ = writeln!(
                out,
                "- Finished: {} (after {})",
                ms::format(&finished),
                format_elapsed(between(r.started, finished))
            );
        }
        None => out.push_str("- Finished: not yet\n"),
    }
    if r.aborted {
        out.push_str("- **Aborted** by the operator before every VM settled\n");
    }
    let _ = writeln!(out, "- Result: {}\n", summary.tally());

    out.push_str("| VM | VMID | Node | State | IP | Attempts | Time |\n");
    out.push_str("| --- | ---: | --- | --- | --- | ---: | ---: |\n");
    for vm in &summary.vms {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&vm.name),
            vm.vmid,
            cell(&vm.node),
            cell(&vm.state),
            cell(or_dash(vm.ip.as_deref())),
            vm.attempts,
            vm.elapsed().map_or("-".to_string(), format_elapsed)
        );
    }
    for vm in &summary.vms {
        let _ = writeln!(out, "\n## {} ({})\n", vm.name, vm.vmid);
        let _ = writeln!(out, "- Node: {}", vm.node);
        let _ = writeln!(out, "- State: {}", vm.state);
        let _ = writeln!(out, "- IP: {}", or_dash(vm.ip.as_deref()));
        if !vm.ip_candidates.is_empty() {
            let _ = writeln!(out, "- IP candidates: {}", vm.ip_candidates.join(", "));
        }
        let _ = writeln!(out, "- OS: {}", or_dash(vm.os.as_deref()));
        if let Some(uname) = &vm.uname {
            let _ = writeln!(out, "- uname: `{}`", uname.replace('`', "'").trim());
        }
        let _ = writeln!(out, "- Attempts: {}", vm.attempts);
        if let Some(error) = &vm.error {
            let _ = writeln!(out, "- Error: {}", error.replace('\n', " ").trim());
        }
        if !vm.phases.is_empty() {
            out.push_str("\n| Phase | Started | Finished | Duration |\n");
            out.push_str("| --- | --- | --- | ---: |\n");
            for (phase, times) in &vm.phases {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    cell(phase),
                    times.started.as_ref().map_or("-".to_string(), ms::format),
                    times.finished.as_ref().map_or("-".to_string(), ms::format),
                    times.duration().map_or("-".to_string(), format_elapsed)
                );
            }
        }
    }
    out.push_str(&gantt(summary));
    out
}

/// Text safe in a Mermaid gantt line (`:` ends a task name, `#` and `;` start comments or
/// statements).
fn mermaid_text(text: &str) -> String {
    text.replace([':', '#', ';', '\n', '\r'], " ")
}

/// A Mermaid `gantt` chart of every VM's phases (a section per VM), as GitHub, GitLab and most
/// wikis render it. Times are Unix milliseconds (`dateFormat x`). A phase still open ends at the
/// rollout's end (or its own start when the rollout has not ended) and is `active`, or `crit`
/// when the VM failed in it.
fn gantt(summary: &Summary) -> String {
    let r = &summary.rollout;
    let mut out = String::from("\n## Timeline\n\n```mermaid\ngantt\n");
    let _ = writeln!(out, "    title Rollout {}", mermaid_text(&r.id));
    out.push_str("    dateFormat x\n");
    let span = r
        .finished
        .map(|f| between(r.started, f))
        .unwrap_or_default();
    let axis = if span >= Duration::from_secs(6 * 3600) {
        "%d %H:%M"
    } else {
        "%H:%M:%S"
    };
    let _ = writeln!(out, "    axisFormat {axis}");
    out.push_str("    todayMarker off\n");
    for (v, vm) in summary.vms.iter().enumerate() {
        let _ = writeln!(out, "    section {} ({})", mermaid_text(&vm.name), vm.vmid);
        let last = vm.phases.len().saturating_sub(1);
        for (p, (phase, times)) in vm.phases.iter().enumerate() {
            let Some(started) = times.started else {
                continue;
            };
            let (finished, tag) = match times.finished {
                Some(finished) => (finished, "done"),
                None if vm.state == "failed" && p == last => {
                    (r.finished.unwrap_or(started).max(started), "crit")
                }
                None => (r.finished.unwrap_or(started).max(started), "active"),
            };
            let _ = writeln!(
                out,
                "    {} :{tag}, vm{v}p{p}, {}, {}",
                mermaid_text(phase),
                started.as_millisecond(),
                finished.as_millisecond()
            );
        }
    }
    out.push_str("```\n");
    out
}

/// An Ansible group name (letters, digits, underscores; not starting with a digit).
fn group_name(node: &str) -> String {
    let mut name: String = node
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || matches!(
            name.as_str(),
            "verified" | "pve_rollout" | "all" | "ungrouped"
        )
    {
        name.insert_str(0, "node_");
    }
    name
}

/// Ansible INI: one group per node, `[verified]`, and `[pve_rollout:children]` over the node
/// groups. Only VMs with an IP are hosts.
fn inventory(summary: &Summary) -> String {
    let mut out = format!(
        "# Ansible inventory written by pve-rollout for rollout {}\n# {}\n",
        summary.rollout.id,
        summary.tally()
    );
    let host = |vm: &VmSummary| {
        vm.ip
            .as_ref()
            .map(|ip| format!("{} ansible_host={ip}\n", vm.name))
    };
    let mut groups: IndexMap<String, String> = IndexMap::new();
    for vm in &summary.vms {
        if let Some(line) = host(vm) {
            groups
                .entry(group_name(&vm.node))
                .or_default()
                .push_str(&line);
        }
    }
    for (group, hosts) in &groups {
        let _ = write!(out, "\n[{group}]\n{hosts}");
    }
    out.push_str("\n[verified]\n");
    for vm in summary.vms.iter().filter(|vm| vm.state == "verified") {
        if let Some(line) = host(vm) {
            out.push_str(&line);
        }
    }
    out.push_str("\n[pve_rollout:children]\n");
    for group in groups.keys() {
        let _ = writeln!(out, "{group}");
    }
    out
}

/// The original wait_for_vm.sh flow's per-VM "deployment summary and debug info".
fn vm_text(summary: &Summary, vm: &VmSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Deployment summary for {} (VM {})", vm.name, vm.vmid);
    let _ = writeln!(out, "========================================");
    let rows: [(&str, String); 10] = [
        ("VM name", vm.name.clone()),
        ("VM id", vm.vmid.to_string()),
        ("Node", vm.node.clone()),
        ("State", vm.state.clone()),
        ("IP address", or_dash(vm.ip.as_deref()).to_string()),
        (
            "IP candidates",
            if vm.ip_candidates.is_empty() {
                "-".to_string()
            } else {
                vm.ip_candidates.join(", ")
            },
        ),
        ("OS", or_dash(vm.os.as_deref()).to_string()),
        (
            "uname -a",
            or_dash(vm.uname.as_deref().map(str::trim)).to_string(),
        ),
        ("Attempts", vm.attempts.to_string()),
        (
            "Total time",
            vm.elapsed().map_or("-".to_string(), format_elapsed),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{:<15}{value}", format!("{label}:"));
    }
    if let Some(error) = &vm.error {
        let _ = writeln!(out, "{:<15}{}", "Error:", error.trim());
    }
    let _ = writeln!(out, "\nPhases:");
    if vm.phases.is_empty() {
        let _ = writeln!(out, "  (none started)");
    }
    for (phase, times) in &vm.phases {
        let _ = writeln!(
            out,
            "  {:<16}{:<26}{:<26}{}",
            phase,
            times.started.as_ref().map_or("-".to_string(), ms::format),
            times.finished.as_ref().map_or("-".to_string(), ms::format),
            times.duration().map_or("-".to_string(), format_elapsed)
        );
    }
    let r = &summary.rollout;
    let _ = writeln!(out, "\nRollout:");
    let _ = writeln!(out, "  id             {}", r.id);
    let _ = writeln!(out, "  proxmox        {}", r.proxmox_url);
    let _ = writeln!(out, "  template       {}", r.template);
    let _ = writeln!(out, "  mode           {}", r.mode);
    let _ = writeln!(out, "  started        {}", ms::format(&r.started));
    if let Some(finished) = &r.finished {
        let _ = writeln!(out, "  finished       {}", ms::format(finished));
    }
    if r.aborted {
        let _ = writeln!(out, "  aborted        yes");
    }
    out
}

#[cfg(test)]
mod tests;
