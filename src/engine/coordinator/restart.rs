//! Starting a VM again: a retry from its phase, a reboot-and-wait, a recreate; and what a
//! panicking VM task leaves behind.

use super::super::event::{Event, Level, Phase, VmState};
use super::super::journal::Entry;
use super::super::vm::{Outcome, Prelude};
use super::Coordinator;

impl Coordinator {
    /// Starts VM `i` again: from where its last attempt stopped, or after a reboot or a
    /// recreate.
    pub(super) fn respawn(&mut self, i: usize, phase: Phase, how: Prelude) {
        let attempt = self.record.attempts(i) + 1;
        self.forward(Event::Attempt { vm: i, attempt });
        let (from, text) = match how {
            Prelude::None => {
                let from = retry_from(phase);
                (from, format!("retry #{attempt} from {from}"))
            }
            Prelude::Reboot => (
                Phase::Booting,
                format!("reboot-and-wait (attempt {attempt})"),
            ),
            Prelude::Recreate => (Phase::Cloning, format!("recreate (attempt {attempt})")),
        };
        self.emit(Event::Log {
            vm: Some(i),
            level: Level::Info,
            text,
        });
        self.spawn(i, from, false, how);
    }

    /// A VM task that panicked (a bug): that VM fails with the panic's text, in the phase it
    /// was in, and what its task held is released; the others go on, and a retry starts it
    /// afresh.
    pub(super) fn panicked(&mut self, i: usize, e: tokio::task::JoinError) -> Outcome {
        let message = match e.try_into_panic() {
            Ok(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into()),
            Err(e) => e.to_string(),
        };
        self.emit(Event::Log {
            vm: Some(i),
            level: Level::Error,
            text: format!("the VM's task panicked: {message}"),
        });
        // `run` never reached its end: the stagger turn is released here.
        self.shared.stagger.release(i);
        Outcome::Failed {
            phase: self.phase_of(i),
            reason: format!("internal error: {message}"),
        }
    }

    pub(super) fn retry(&mut self, i: usize) {
        match (self.record.state(i), &self.kills[i]) {
            (
                Some(VmState::Active {
                    phase: Phase::Verified,
                }),
                _,
            ) => self.emit(Event::Log {
                vm: Some(i),
                level: Level::Info,
                text: "already verified; nothing to retry".into(),
            }),
            _ => self.restart(i, Prelude::None),
        }
    }

    /// Ends VM `i`'s attempt if one runs, then starts another: a retry from its phase, or after
    /// a reboot or a recreate (journaled first, so a resume knows).
    pub(super) fn restart(&mut self, i: usize, how: Prelude) {
        let vm = &self.rollout.plan.vms[i];
        let (name, vmid) = (vm.name.clone(), vm.vmid);
        let entry = match how {
            Prelude::Reboot if self.phase_of(i) < Phase::Booting => {
                self.emit(Event::Log {
                    vm: Some(i),
                    level: Level::Info,
                    text: "not started yet; nothing to reboot".into(),
                });
                return;
            }
            Prelude::None => None,
            Prelude::Reboot => Some(Entry::RebootRequested { name, vmid }),
            Prelude::Recreate => Some(Entry::RecreateRequested { name, vmid }),
        };
        if let Some(entry) = entry {
            self.journal_in_background(i, entry);
        }
        match (self.record.state(i), &self.kills[i]) {
            (Some(_), Some(kill)) => {
                // Running or stuck: stop the current attempt, then start again.
                kill.cancel();
                self.retry_pending.insert(i, how);
            }
            (Some(_), None) => {
                let phase = self.phase_of(i);
                self.respawn(i, phase, how);
                self.finished_sent = false;
            }
            _ => {}
        }
    }
}

/// Where a retry re-enters: the failed phase, with the agent checks restarting as a whole.
fn retry_from(phase: Phase) -> Phase {
    match phase {
        Phase::Queued | Phase::Cloning => Phase::Cloning,
        Phase::Configuring => Phase::Configuring,
        Phase::Booting => Phase::Booting,
        // The hook only: the VM was verified.
        Phase::Provisioning => Phase::Provisioning,
        _ => Phase::AwaitingAgent,
    }
}
