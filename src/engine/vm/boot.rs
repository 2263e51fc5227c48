//! The boot phase: start the VM unless it runs, and note when it started (the agent wait is
//! measured from there).

use std::time::Duration;

use crate::pve::{TaskState, Upid};

use super::super::event::{Level, Phase};
use super::super::poll::Wait;
use super::{Step, Stop, VmTask};

impl VmTask {
    pub(super) async fn boot_phase(&mut self) -> Step {
        self.gate().await?;
        self.enter(Phase::Booting);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        // Configure (just before, in this attempt) saw it stopped; else ask.
        let stopped = std::mem::take(&mut self.seen.stopped)
            || !self
                .shared
                .client
                .vm_status(&node, vmid)
                .await?
                .is_running();
        // Leaves by `break` (started) or `return`; `continue` starts it again.
        if stopped {
            loop {
                let Some(upid) = self.start_vm().await? else {
                    self.mark_started();
                    return Ok(());
                };
                let state = self
                    .wait_task(
                        &upid,
                        Some(self.shared.checks.boot_timeout),
                        Wait::StartTask,
                    )
                    .await?;
                // bpg's lesson: qmstart can fail yet the VM runs; a VM already running is started.
                if let TaskState::Failed(text) = &state
                    && !state.is_success_for_start()
                {
                    // Its own lock timed out: a clone of it still runs. Not a failure: wait for the
                    // clone to end and start it then.
                    if state.config_lock_timeout() == Some(vmid) {
                        self.wait_unlocked(text).await?;
                        continue;
                    }
                    self.task_log_tail(&upid).await;
                    return Err(Stop::Failed(format!("start failed: {text}")));
                }
                break;
            }
        }
        self.mark_started();
        Ok(())
    }

    /// `POST status/start`; a transient failure (a 596 whose start may or may not have
    /// happened) is checked against the VM's status and retried. `None`: it runs already.
    async fn start_vm(&mut self) -> Step<Option<Upid>> {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let mut attempt = 1;
        loop {
            match self.shared.client.start(&node, vmid).await {
                Ok(upid) => return Ok(Some(upid)),
                Err(e) if e.class.is_transient() && attempt < 4 => {
                    // A lost answer (596) may hide a start that runs late: look before asking
                    // again (a second start of a running VM fails harmlessly, `already running`).
                    let what = if e.outcome_unknown {
                        "outcome unknown, checking the VM"
                    } else {
                        "checking the VM"
                    };
                    self.log(Level::Warning, format!("start: {e}; {what}"));
                    self.sleep(Duration::from_secs(2)).await?;
                    if self
                        .shared
                        .client
                        .vm_status(&node, vmid)
                        .await?
                        .is_running()
                    {
                        return Ok(None);
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn mark_started(&mut self) {
        self.started_at = Some(self.shared.clock.now_s());
    }
}
