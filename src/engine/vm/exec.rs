//! Guest commands through the agent (`guest-exec`, then its status until it exited).

use std::time::Duration;

use tokio::time::Instant;

use crate::pve::{ErrorClass, PveError};

use super::super::Clock;
use super::super::event::Level;
use super::super::poll::{Aborted, Attempt, Backoff, Learned, Poller, Wait};
use super::{Step, Stop, VmTask};

/// What a command said when it exited.
pub(super) struct ExecResult {
    pub exitcode: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

/// Why one run of a command did not give a result.
enum ExecStop {
    Stop(Stop),
    /// The agent refused or lost the command (classified, to decide whether to run it again).
    Agent(PveError),
}

impl From<Stop> for ExecStop {
    fn from(stop: Stop) -> Self {
        ExecStop::Stop(stop)
    }
}

impl From<Aborted> for ExecStop {
    fn from(aborted: Aborted) -> Self {
        ExecStop::Stop(aborted.into())
    }
}

/// The wait for a guest command to exit. The first ask comes when most commands of this rollout
/// had exited (a status that says "running" is a request wasted); commands that run longer are
/// then asked about less and less. Sequential mode holds the lane meanwhile and asks at once, as
/// the original wait_for_vm.sh flow did.
fn exec_poll(clock: Clock, deadline: Instant, learned: &Learned, held: bool) -> Poller<'_> {
    let first = match held {
        true => Duration::ZERO,
        false => learned
            .first_wait(Wait::Exec, 0.75, 1.0)
            .unwrap_or(Duration::from_millis(500))
            .clamp(Duration::from_millis(100), Duration::from_secs(2)),
    };
    // After a first ask too early, the next comes half as late again (a command that runs a
    // little longer than most is found soon), and the steps grow from there.
    let backoff = Backoff::growing(first / 2, 1.5, Duration::from_secs(2))
        .at_least(Duration::from_millis(100));
    Poller::new(clock, deadline, backoff)
        .first_wait(first)
        .learning(learned, Wait::Exec, None)
        .learning_midpoint()
}

impl VmTask {
    /// Runs a command through the agent and waits for it to exit. The commands run here are
    /// harmless to repeat, so a transient failure (an agent command timeout, a lost answer, a
    /// pid the agent already forgot) runs the command again, a few times.
    pub(super) async fn exec(
        &mut self,
        held: bool,
        argv: &[&str],
        deadline: Instant,
    ) -> Step<ExecResult> {
        const ATTEMPTS: u32 = 4;
        let mut attempt = 1;
        loop {
            let error = match self.exec_once(held, argv, deadline).await {
                Ok(result) => return Ok(result),
                Err(ExecStop::Stop(stop)) => return Err(stop),
                Err(ExecStop::Agent(e)) => e,
            };
            let again = matches!(
                error.class,
                ErrorClass::Transient | ErrorClass::AgentNotReady | ErrorClass::ExecPidUnknown
            );
            if !again || attempt >= ATTEMPTS || self.shared.clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "guest-exec {}: {error}",
                    argv.join(" ")
                )));
            }
            // A lost answer (596) may hide a command that ran: every command run here only
            // reads the guest's state, which is what makes running it again the right check.
            let why = if error.outcome_unknown {
                "outcome unknown; it only reads, so running it again"
            } else {
                "running it again"
            };
            self.log(
                Level::Warning,
                format!("guest-exec {}: {error}; {why}", argv.join(" ")),
            );
            attempt += 1;
            self.sleep(Duration::from_secs(1)).await?;
        }
    }

    async fn exec_once(
        &mut self,
        held: bool,
        argv: &[&str],
        deadline: Instant,
    ) -> Result<ExecResult, ExecStop> {
        let vmid = self.vm.vmid;
        let args: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let n = self.vm.node.clone();
        let pid = self
            .agent_call(held, |c| async move {
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                c.agent_exec(&n, vmid, &argv, None).await
            })
            .await?
            .map_err(ExecStop::Agent)?;
        let shared = self.shared.clone();
        let mut poll =
            exec_poll(shared.clock, deadline, &shared.learned, held).abortable(&shared.abort);
        loop {
            poll.due().await?;
            let n = self.vm.node.clone();
            let status = self
                .agent_call(
                    held,
                    |c| async move { c.agent_exec_status(&n, vmid, pid).await },
                )
                .await?
                .map_err(ExecStop::Agent)?;
            let attempt = match status.exited {
                true => Attempt::Done(ExecResult {
                    exitcode: status.exitcode,
                    stdout: status.out_data.unwrap_or_default(),
                    stderr: status.err_data.unwrap_or_default(),
                }),
                false => Attempt::Pending(String::new()),
            };
            let timed_out = |_| {
                Err(ExecStop::Stop(Stop::Failed(format!(
                    "guest-exec {} did not finish in time",
                    argv.join(" ")
                ))))
            };
            if let Some(result) = poll.answer(attempt, timed_out)? {
                return Ok(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands that all take 0.3 s: the first ask must settle near that, not creep. It
    /// did: each wait was learned as the time of the ask that found the command done, and
    /// the first ask came at 1.1x that, so every later VM asked later, up to the 2 s cap (the
    /// sparse bench's last VM waited 2.1 s for each of its two 0.1-1 s commands).
    #[tokio::test(start_paused = true)]
    async fn the_first_ask_settles_near_what_commands_take() {
        let clock = Clock::new(1.0);
        let learned = Learned::default();
        let took = 0.3;
        let mut firsts = Vec::new();
        let mut asks = 0;
        for _ in 0..40 {
            let deadline = clock.deadline(Duration::from_secs(60));
            let mut poll = exec_poll(clock, deadline, &learned, false);
            let start = clock.now_s();
            let mut first = None;
            loop {
                poll.due().await.unwrap();
                asks += 1;
                let waited = clock.now_s() - start;
                first.get_or_insert(waited);
                let attempt = match waited >= took - 1e-9 {
                    true => Attempt::Done(()),
                    false => Attempt::Pending(String::new()),
                };
                if poll.answer(attempt, |_| Err(())).unwrap().is_some() {
                    break;
                }
            }
            firsts.extend(first);
        }
        let late: Vec<f64> = firsts[20..].to_vec();
        assert!(
            late.iter().all(|f| *f <= 2.0 * took),
            "first asks of the last 20 commands: {late:?}"
        );
        assert!(asks <= 60, "{asks} asks for 40 commands");
    }
}
