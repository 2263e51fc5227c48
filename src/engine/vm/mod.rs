//! One VM's way through the phases: clone, configure, boot, await the agent, find the IP, verify.
//! A VM's failure stays local: it ends in `Failed { phase, reason }` and the rest go on.
//!
//! This file holds what every phase shares: the task's state, the step boundary (abort and
//! pause), the journal, the events, the guest-agent lane and the poller. Each phase is a file:
//! `clone` (then `migrate`, for a clone made where a template with local disks lives),
//! `configure` (with `disks`, the extra disks), `boot`, `agent`, `ip`, `verify` (with `exec`,
//! the guest commands, and `guest_checks`, the operator's own), `provision` (the `on_verified`
//! hook), and `task` waits for PVE tasks.

mod agent;
mod boot;
mod clone;
mod configure;
mod disks;
mod exec;
mod guest_checks;
mod ip;
mod migrate;
mod provision;
mod task;
mod verify;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc::UnboundedSender, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckMode, ChecksConfig, ExecCheck};
use crate::pve::{Client, PveError};

use super::clock::Clock;
use super::clone_slots::CloneSlots;
use super::event::{Event, Level, Phase, VmState};
use super::ip::IpRules;
use super::journal::{Entry, Journal};
use super::plan::PlannedVm;
use super::poll::{Aborted, Backoff, Learned, Poller, nap};
use super::schedule::{AgentLane, AgentLaneGuard, Stagger};
use super::task_watch::TaskWatch;

/// What every VM task shares.
pub(super) struct Shared {
    pub client: Client,
    pub clock: Clock,
    pub checks: ChecksConfig,
    pub ip_rules: IpRules,
    pub rollout_id: String,
    pub stagger: Arc<Stagger>,
    pub agent_lane: Arc<AgentLane>,
    /// Graceful stop: tasks stop at their next step boundary.
    pub abort: CancellationToken,
    pub pause_all: watch::Receiver<bool>,
    pub events: UnboundedSender<Event>,
    /// Every transition that matters is on disk here before the next step.
    pub journal: Arc<Journal>,
    /// How long the earlier VMs' waits took, to time the later VMs' polls.
    pub learned: Learned,
    /// Clones in flight per target storage.
    pub clone_slots: Arc<CloneSlots>,
    /// Each node's task list, asked once for all the tasks followed there.
    pub task_watch: Arc<TaskWatch>,
    /// Per VM (plan order), the operator's guest checks run after the built-in ones.
    pub exec_checks: Vec<Vec<ExecCheck>>,
    /// Runs `on_verified`, when configured.
    pub provisioner: Option<super::provision::Provisioner>,
}

/// What this VM's own calls already told, so a later phase need not ask again.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// net0's MAC in the config read after the clone (configure keeps it).
    pub mac: Option<Option<String>>,
    /// The VM is known stopped (this attempt cloned it, or configure saw it so): configure and
    /// boot need not ask.
    pub stopped: bool,
    /// Consecutive agent answers so far: the answer that ends the agent wait is the first ping.
    pub pings: u32,
}

/// What an attempt does before its first phase, on the operator's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prelude {
    None,
    /// Stop the VM; the attempt then starts it again (booting) and checks it anew.
    Reboot,
    /// Destroy the VM; the attempt then clones it again (same name and id).
    Recreate,
}

/// How a VM task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Verified,
    Failed {
        phase: Phase,
        reason: String,
    },
    /// Stopped by `Abort` in this phase.
    Aborted {
        phase: Phase,
    },
    /// Verified, but the `on_verified` hook failed.
    HookFailed {
        reason: String,
    },
}

/// Why a step stopped early.
enum Stop {
    Aborted,
    Failed(String),
    HookFailed(String),
}

impl From<PveError> for Stop {
    fn from(e: PveError) -> Self {
        Stop::Failed(e.to_string())
    }
}

impl From<Aborted> for Stop {
    fn from(_: Aborted) -> Self {
        Stop::Aborted
    }
}

type Step<T = ()> = Result<T, Stop>;

pub(super) struct VmTask {
    pub shared: Arc<Shared>,
    pub vm: PlannedVm,
    pub paused: watch::Receiver<bool>,
    pub phase: Phase,
    /// True on the first attempt: the clone waits for its stagger turn.
    pub first_attempt: bool,
    /// Rollout-clock second at which the VM was seen started (to learn agent delays).
    pub started_at: Option<f64>,
    /// The stagger turn was taken (a re-clone within the attempt does not wait again).
    pub staggered: bool,
    /// Clones redone within this attempt because the VM vanished (its clone task failed).
    pub reclones: u32,
    /// The IP chosen (for the verified line).
    pub ip: Option<String>,
    pub seen: Seen,
    pub prelude: Prelude,
}

impl VmTask {
    /// A fresh task for `vm`, to start at `from`.
    pub fn new(
        shared: Arc<Shared>,
        vm: PlannedVm,
        paused: watch::Receiver<bool>,
        from: Phase,
        first_attempt: bool,
    ) -> Self {
        VmTask {
            shared,
            vm,
            paused,
            phase: from,
            first_attempt,
            started_at: None,
            staggered: false,
            reclones: 0,
            ip: None,
            seen: Seen::default(),
            prelude: Prelude::None,
        }
    }

    /// Runs from `from` to the end; never panics on API input.
    pub async fn run(mut self, from: Phase) -> Outcome {
        self.phase = from;
        let result = self.phases(from).await;
        if self.first_attempt {
            // Whatever happened, never hold up later clones.
            self.shared.stagger.release(self.vm.index);
        }
        match result {
            Ok(()) => Outcome::Verified,
            Err(Stop::Aborted) => Outcome::Aborted { phase: self.phase },
            Err(Stop::Failed(reason)) => Outcome::Failed {
                phase: self.phase,
                reason,
            },
            Err(Stop::HookFailed(reason)) => Outcome::HookFailed { reason },
        }
    }

    async fn phases(&mut self, from: Phase) -> Step {
        self.run_prelude().await?;
        let mut config = None;
        if from <= Phase::Cloning {
            config = Some(self.clone_phase().await?);
        }
        if from <= Phase::Configuring {
            self.migrate_phase().await?;
            if self.vm.source.migrate {
                // Read on the node it was cloned on: the migration changed it.
                config = None;
            }
            self.configure_phase(config.take()).await?;
            self.journal(Entry::Configured {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })
            .await?;
        }
        if from <= Phase::Booting {
            self.boot_phase().await?;
            self.journal(Entry::Started {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })
            .await?;
        }
        if from <= Phase::Verifying {
            // From here on the guest agent is talked to; in sequential mode the lane is held
            // for the whole check sequence, in pipelined mode per call.
            let held = match self.shared.checks.mode {
                CheckMode::Sequential => Some(self.enter_agent_lane().await?),
                CheckMode::Pipelined => None,
            };
            let macs = self.nic_macs().await?;
            self.agent_phase(held.is_some()).await?;
            self.ip_phase(&macs, held.is_some()).await?;
            self.verify_phase(held.is_some()).await?;
            drop(held);
            self.journal(Entry::Verified {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })
            .await?;
        }
        self.provision_phase().await?;
        self.set(VmState::Active {
            phase: Phase::Verified,
        });
        Ok(())
    }

    /// The operator's reboot (stop, then the boot phase starts it) or recreate (destroy, then
    /// the clone phase clones it anew: nothing is adopted).
    async fn run_prelude(&mut self) -> Step {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        match self.prelude {
            Prelude::None => Ok(()),
            Prelude::Reboot => {
                self.enter(Phase::Booting);
                self.log(Level::Info, "rebooting: stopping the VM");
                let upid = self.shared.client.stop(&node, vmid).await?;
                let timeout = Some(self.shared.checks.boot_timeout);
                if let crate::pve::TaskState::Failed(text) = self
                    .wait_task(&upid, timeout, super::poll::Wait::StopTask)
                    .await?
                {
                    return Err(Stop::Failed(format!("reboot: stop failed: {text}")));
                }
                self.seen.stopped = true;
                Ok(())
            }
            Prelude::Recreate => {
                self.enter(Phase::Cloning);
                self.log(Level::Info, "recreating: destroying the VM");
                let target = super::destroy::Target {
                    name: self.vm.name.clone(),
                    vmid,
                    node,
                    status: String::new(),
                };
                super::destroy::remove_one(&self.shared.client, self.shared.clock, &target)
                    .await
                    .map_err(|e| Stop::Failed(format!("recreate: {e}")))?;
                self.vm.adopted = None;
                self.vm.clone_upid = None;
                Ok(())
            }
        }
    }

    /// Records a transition durably; a journal that cannot be written stops the VM, since
    /// going on would leave a VM a later run could not account for.
    async fn journal(&self, entry: Entry) -> Step {
        self.shared
            .journal
            .append(entry)
            .await
            .map_err(|e| Stop::Failed(format!("cannot write the journal: {e}")))
    }

    // ---- events -------------------------------------------------------------------------

    fn send(&self, event: Event) {
        // The coordinator outlives every task; a send error only means it is shutting down.
        let _ = self.shared.events.send(event);
    }

    fn set(&mut self, state: VmState) {
        self.phase = state.phase();
        self.send(Event::VmState {
            vm: self.vm.index,
            state,
            at: SystemTime::now(),
        });
    }

    fn enter(&mut self, phase: Phase) {
        self.set(VmState::Active { phase });
        #[cfg(debug_assertions)]
        test_panic::on_enter(&self.vm.name, phase);
    }

    fn log(&self, level: Level, text: impl Into<String>) {
        self.send(Event::Log {
            vm: Some(self.vm.index),
            level,
            text: text.into(),
        });
    }

    // ---- pacing -------------------------------------------------------------------------

    /// A step boundary: stop on abort, hold while paused.
    async fn gate(&mut self) -> Step {
        if self.shared.abort.is_cancelled() {
            return Err(Stop::Aborted);
        }
        let mut mine = self.paused.clone();
        let mut all = self.shared.pause_all.clone();
        if !*mine.borrow() && !*all.borrow() {
            return Ok(());
        }
        let phase = self.phase;
        self.set(VmState::Paused { phase });
        while *mine.borrow_and_update() || *all.borrow_and_update() {
            tokio::select! {
                _ = self.shared.abort.cancelled() => return Err(Stop::Aborted),
                r = mine.changed() => if r.is_err() { break },
                r = all.changed() => if r.is_err() { break },
            }
        }
        self.set(VmState::Active { phase });
        Ok(())
    }

    /// Sleeps rollout time `d`; wakes early only to abort.
    async fn sleep(&self, d: Duration) -> Step {
        Ok(nap(self.shared.clock, &self.shared.abort, d).await?)
    }

    /// A poller for this VM until `deadline`, its sleeps ended by an abort.
    fn poller<'a>(shared: &'a Shared, deadline: Instant, backoff: Backoff) -> Poller<'a> {
        Poller::new(shared.clock, deadline, backoff).abortable(&shared.abort)
    }

    // ---- the guest-agent lane -----------------------------------------------------------

    async fn enter_agent_lane(&mut self) -> Step<AgentLaneGuard> {
        tokio::select! {
            _ = self.shared.abort.cancelled() => Err(Stop::Aborted),
            g = self.shared.agent_lane.enter(self.vm.index) => Ok(g),
        }
    }

    /// Runs one guest-agent call in the lane (pipelined) or under the lane already held.
    async fn agent_call<T, F, Fut>(&mut self, held: bool, call: F) -> Step<Result<T, PveError>>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, PveError>>,
    {
        self.gate().await?;
        let _guard = if held {
            None
        } else {
            Some(self.enter_agent_lane().await?)
        };
        Ok(call(self.shared.client.clone()).await)
    }
}

/// Test hook, debug builds only (compiled out of release builds):
/// `PVE_ROLLOUT_TEST_VM_PANIC=<vm name>:<phase>` panics that VM's task as it enters the phase,
/// once (so a retry can verify it), to prove a panicking VM task fails that VM alone.
#[cfg(debug_assertions)]
mod test_panic {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::Phase;

    pub const ENV: &str = "PVE_ROLLOUT_TEST_VM_PANIC";

    pub fn on_enter(name: &str, phase: Phase) {
        static FIRED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        let Ok(wanted) = std::env::var(ENV) else {
            return;
        };
        let here = format!("{name}:{phase}");
        if wanted.trim() != here {
            return;
        }
        if !FIRED.lock().unwrap_or_else(|e| e.into_inner()).insert(here) {
            return;
        }
        panic!("{ENV}: deliberate panic in {name} entering {phase} (test hook)");
    }
}
