//! The agent phase: wait until the guest agent answers a ping, first asking when the earliest
//! agent of this rollout came up.

use std::time::Duration;

use crate::config::format_duration;
use crate::pve::ErrorClass;

use super::super::event::{Level, Phase};
use super::super::poll::{Attempt, Backoff, Wait};
use super::{Step, Stop, VmTask};

/// Pinging an agent not up yet: 1.5 s after each failed ping. A ping holds its worker for 3 s and
/// an agent that comes up meanwhile answers it, so an agent that comes up between two pings is
/// noticed at most this late (plus the failed ping's answer); gaps growing to 3 s noticed some
/// agents 3 s late, and shorter ones cost a pvedaemon worker for every VM whose agent is slow.
const AGENT_PINGS: Backoff = Backoff::fixed(Duration::from_millis(1500));

impl VmTask {
    /// The MAC of net0 as configured, to match the agent's interface (read after the clone, or
    /// asked when the run resumes past configure).
    pub(super) async fn net0_mac(&mut self) -> Step<Option<String>> {
        if let Some(mac) = self.seen.mac.clone() {
            return Ok(mac);
        }
        let cfg = self
            .shared
            .client
            .vm_config(&self.vm.node, self.vm.vmid)
            .await?;
        Ok(cfg.net0_mac())
    }

    /// Every NIC's MAC, net0 first. A VM with more NICs than net0 reads its config (PVE gave the
    /// NICs added at configure their MACs then).
    pub(super) async fn nic_macs(&mut self) -> Step<Vec<Option<String>>> {
        let count = self.vm.spec.networks.len();
        if count <= 1 {
            return Ok(vec![self.net0_mac().await?]);
        }
        let cfg = (self.shared.client)
            .vm_config(&self.vm.node, self.vm.vmid)
            .await?;
        Ok((0..count)
            .map(|i| cfg.net(i).and_then(|d| d.mac_address()))
            .collect())
    }

    pub(super) async fn agent_phase(&mut self, held: bool) -> Step {
        self.gate().await?;
        self.enter(Phase::AwaitingAgent);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let shared = self.shared.clone();
        let clock = shared.clock;
        let timeout = shared.checks.agent_timeout;
        let started = self.started_at.unwrap_or_else(|| clock.now_s());
        // The first ping goes a little before the earliest agent start seen so far, because a
        // ping to an agent that is not up yet holds a pvedaemon worker for 3 s. The first VMs,
        // with nothing learned, ping from the start.
        let since_start = Duration::from_secs_f64((clock.now_s() - started).max(0.0));
        let first = shared
            .learned
            .first_wait(Wait::Agent, 0.0, 0.8)
            .unwrap_or_default()
            .saturating_sub(since_start);
        let mut poll = Self::poller(&shared, clock.deadline(timeout), AGENT_PINGS)
            .first_wait(first)
            .learning(&shared.learned, Wait::Agent, Some(started));
        loop {
            poll.due().await?;
            let n = node.clone();
            let attempt = match self
                .agent_call(held, |c| async move { c.agent_ping(&n, vmid).await })
                .await?
            {
                Ok(()) => Attempt::Done(()),
                Err(e)
                    if matches!(
                        e.class,
                        ErrorClass::AgentNotReady | ErrorClass::NotRunning | ErrorClass::Transient
                    ) =>
                {
                    Attempt::Pending(e.to_string())
                }
                Err(e) => return Err(e.into()),
            };
            let timed_out = |last_error| {
                Err(Stop::Failed(format!(
                    "guest agent did not answer within {} ({last_error})",
                    format_duration(timeout)
                )))
            };
            if poll.answer(attempt, timed_out)?.is_some() {
                break;
            }
        }
        let delay = clock.now_s() - started;
        self.seen.pings = 1;
        self.log(
            Level::Info,
            format!("guest agent answered {delay:.1}s after start"),
        );
        Ok(())
    }
}
