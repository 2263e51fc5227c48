//! The engine's two channels: `Event`s out (to the UI or the headless printer) and `Command`s in.
//! Owned values only, so the engine never shares mutable state with whoever watches it.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::report::Summary;

/// Index of a VM in the rollout plan (0-based, plan order). Stable for the whole run.
pub type VmIndex = usize;

/// Where a VM is in its life. `Queued -> Cloning -> Configuring -> Booting -> AwaitingAgent ->
/// AwaitingIp -> IpFound -> Verifying [-> Provisioning] -> Verified` (provisioning: the
/// `on_verified` hook); the five states the mission names are shown as `cloning`, `booting`,
/// `awaiting-agent`, `IP-found`, `verified`. `awaiting-ip` is the wait for a usable address once
/// the agent answered (DHCP, not the agent, is then what is slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Queued,
    Cloning,
    Configuring,
    Booting,
    AwaitingAgent,
    AwaitingIp,
    IpFound,
    Verifying,
    /// Proven healthy; the `on_verified` hook runs.
    Provisioning,
    Verified,
}

impl Phase {
    /// Phases in order; `Verified` is terminal.
    pub const ALL: [Phase; 10] = [
        Phase::Queued,
        Phase::Cloning,
        Phase::Configuring,
        Phase::Booting,
        Phase::AwaitingAgent,
        Phase::AwaitingIp,
        Phase::IpFound,
        Phase::Verifying,
        Phase::Provisioning,
        Phase::Verified,
    ];

    /// The name used in summaries, logs and the grid (`IP-found` keeps the mission's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Cloning => "cloning",
            Phase::Configuring => "configuring",
            Phase::Booting => "booting",
            Phase::AwaitingAgent => "awaiting-agent",
            Phase::AwaitingIp => "awaiting-ip",
            Phase::IpFound => "IP-found",
            Phase::Verifying => "verifying",
            Phase::Provisioning => "provisioning",
            Phase::Verified => "verified",
        }
    }

    /// The key used for this phase in `summary.json`'s `phases` map.
    pub fn summary_key(self) -> &'static str {
        match self {
            Phase::IpFound => "ip-found",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM's whole state: a phase it is in, or one of the side states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum VmState {
    /// Working (or waiting) in this phase.
    Active { phase: Phase },
    /// Held by the operator; resumes in `phase`.
    Paused { phase: Phase },
    /// Gave up in `phase` with a reason; `Retry` restarts from `phase`.
    Failed { phase: Phase, reason: String },
    /// Left the rollout on the operator's word.
    Skipped { phase: Phase },
    /// Cut off in `phase` when the rollout was aborted (Ctrl-C, SIGTERM, SIGHUP); not
    /// journaled as an end, so the same `deploy` resumes it.
    Aborted { phase: Phase },
    /// Verified, but its `on_verified` hook failed (non-zero exit, timeout); `Retry` runs the
    /// hook again, `Skip` goes on without it.
    HookFailed { reason: String },
}

impl VmState {
    pub fn phase(&self) -> Phase {
        match self {
            VmState::Active { phase }
            | VmState::Paused { phase }
            | VmState::Failed { phase, .. }
            | VmState::Skipped { phase }
            | VmState::Aborted { phase } => *phase,
            VmState::HookFailed { .. } => Phase::Provisioning,
        }
    }

    /// Verified, failed or skipped: nothing more will happen without a command.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            VmState::Active {
                phase: Phase::Verified
            } | VmState::Failed { .. }
                | VmState::Skipped { .. }
                | VmState::Aborted { .. }
                | VmState::HookFailed { .. }
        )
    }

    /// The word for this state in summaries: `verified`, `failed`, `skipped`, `aborted`,
    /// `paused`, or the phase.
    pub fn label(&self) -> &'static str {
        match self {
            VmState::Active { phase } => phase.as_str(),
            VmState::Paused { .. } => "paused",
            VmState::Failed { .. } => "failed",
            VmState::Skipped { .. } => "skipped",
            VmState::Aborted { .. } => "aborted",
            VmState::HookFailed { .. } => "hook-failed",
        }
    }
}

/// Severity of a log line, the levels the original wait_for_vm.sh flow printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Info,
    Success,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Success => "SUCCESS",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// One VM as planned, sent once at the start so watchers can lay out the grid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedVm {
    pub index: VmIndex,
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// Its NICs as planned (bridge, VLAN, static addresses; no MAC or report yet).
    #[serde(default)]
    pub nics: Vec<crate::report::NicSummary>,
    #[serde(default)]
    pub pool: Option<String>,
    /// The tags the rollout gives it, its marker tag included.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Counts per state, for progress lines and the header gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub total: usize,
    pub queued: usize,
    pub in_flight: usize,
    pub verified: usize,
    pub failed: usize,
    pub skipped: usize,
    pub paused: usize,
    /// Cut off by an abort.
    pub aborted: usize,
    /// API requests sent so far by this process.
    pub requests: u64,
    /// Wall seconds predicted until every VM is verified, once the clones' throughput is
    /// known ([`crate::engine::record::Record::progress`] says how).
    pub eta_s: Option<u64>,
}

/// Engine -> watcher.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The plan, once, before any work.
    Planned {
        rollout: String,
        cluster: String,
        vms: Vec<PlannedVm>,
    },
    /// A VM changed state.
    VmState {
        vm: VmIndex,
        state: VmState,
        at: SystemTime,
    },
    /// A log line, for one VM or for the rollout as a whole.
    Log {
        vm: Option<VmIndex>,
        level: Level,
        text: String,
    },
    /// The IP chosen for a VM, with every candidate the agent reported (best first).
    VmIp {
        vm: VmIndex,
        ip: String,
        candidates: Vec<String>,
    },
    /// Once its IP is found: every NIC with its MAC and the addresses the agent reports on it.
    VmNics {
        vm: VmIndex,
        nics: Vec<crate::report::NicSummary>,
    },
    /// While the IP is awaited: the addresses the agent reports, when they changed (`lo
    /// 127.0.0.1 ::1; eth0 fe80::…`), so the operator sees why none is usable.
    VmReported { vm: VmIndex, addresses: String },
    /// What the guest said about itself during verification.
    VmGuest {
        vm: VmIndex,
        uname: Option<String>,
        os: Option<String>,
    },
    /// How far a VM's clone copied (its task log's last percentage) and, once a rate is
    /// known, the wall seconds it is predicted to take still.
    CopyProgress {
        vm: VmIndex,
        percent: f64,
        eta_s: Option<f64>,
    },
    /// A guest check of `[[checks.exec]]` ran (or ran again) on a VM.
    Check {
        vm: VmIndex,
        check: crate::report::CheckReport,
    },
    /// A VM's `on_verified` hook started, ended, or was skipped.
    Hook {
        vm: VmIndex,
        hook: crate::report::HookReport,
    },
    /// Recent Proxmox task log lines for a VM (clone, start, ...), newest last.
    TaskLog { vm: VmIndex, lines: Vec<String> },
    /// Counts, now and then and on every settle.
    Progress(Progress),
    /// The rollout's attempt counter for a VM changed (a retry began).
    Attempt { vm: VmIndex, attempt: u32 },
    /// Summary files were written (on `Export`, and before `Finished`).
    Exported { paths: Vec<std::path::PathBuf> },
    /// The engine is done (finished, or aborted); the summary is what was written last.
    Finished { summary: Box<Summary> },
}

/// Watcher -> engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause(VmIndex),
    Resume(VmIndex),
    PauseAll,
    ResumeAll,
    /// Re-run a failed (or stuck) VM from the phase it failed in, reusing the VM when it exists.
    Retry(VmIndex),
    Skip(VmIndex),
    /// Stop the VM (it keeps its name, id and disks) and go through booting and the checks
    /// again: for a guest whose agent never answered.
    RebootAndWait(VmIndex),
    /// Destroy the VM and clone it again with the same name and id, then on as usual.
    Recreate(VmIndex),
    /// Stop new work, let calls in flight finish, write the outputs.
    Abort,
    /// Write the summary files now, keep going.
    Export,
}
