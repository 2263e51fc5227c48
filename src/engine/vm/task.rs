//! Waiting for a PVE task (clone, resize, start) to stop.

use std::time::Duration;

use crate::config::format_duration;
use crate::pve::{ErrorClass, TaskState, Upid};

use super::super::event::{Event, Level};
use super::super::poll::{Attempt, Backoff, Copy, CopyProgress, Wait};
use super::{Step, Stop, VmTask};

impl VmTask {
    /// Polls a task until it stops. The first poll comes when the fastest such task of this
    /// rollout was done; a copying task is then followed through its log (one small GET of the
    /// new lines: the copy's percentages predict the end, the closing line says it is over),
    /// others back off; so a ten-minute clone costs a handful of requests, not one every few
    /// seconds.
    ///
    /// A copy ends in failure only when its percentage stands still for `clone_stall_timeout`
    /// (or past `timeout`, a ceiling a copy need not have); other tasks end past `timeout`.
    pub(super) async fn wait_task(
        &mut self,
        upid: &Upid,
        timeout: Option<Duration>,
        wait: Wait,
    ) -> Step<TaskState> {
        let shared = self.shared.clone();
        let clock = shared.clock;
        let first = shared
            .learned
            .first_wait(wait, 0.0, 0.9)
            .unwrap_or(Duration::from_millis(500))
            .max(Duration::from_millis(200));
        let backoff = Backoff::growing(first, 1.5, Duration::from_secs(10));
        let mut poll = Self::poller(&shared, clock.deadline_within(timeout), backoff)
            .starting_at(first)
            .learning(&shared.learned, wait, None);
        let follow_log = wait == Wait::CloneTask;
        if follow_log {
            poll = poll.stalls_after(shared.checks.clone_stall_timeout);
        }
        let mut progress = CopyProgress::default();
        let mut lines_read = 0u64;
        loop {
            poll.due().await?;
            let attempt = 'ask: {
                if follow_log {
                    match self.shared.client.task_log(upid, lines_read, 0).await {
                        Ok(lines) => {
                            let mut ended = false;
                            let mut percent = None;
                            for line in lines.iter().filter(|l| !l.is_placeholder()) {
                                lines_read = lines_read.max(line.n);
                                ended |= line.is_end();
                                percent = line.copy_percent().or(percent);
                            }
                            // One sample per poll: lines read together carry no timing of their
                            // own.
                            if let Some(p) = percent {
                                progress.observe(clock.now_s(), p);
                                self.send(Event::CopyProgress {
                                    vm: self.vm.index,
                                    percent: progress.percent().unwrap_or(p),
                                    eta_s: progress.remaining().map(|s| s * clock.scale()),
                                });
                            }
                            if !ended {
                                break 'ask Attempt::Copying(Copy {
                                    remaining: progress.remaining(),
                                    percent: progress.percent(),
                                });
                            }
                        }
                        // Fall through to the status, which classifies the trouble.
                        Err(e) => self.log(Level::Warning, format!("task log: {e}")),
                    }
                }
                match self.shared.client.task_status(upid).await {
                    Ok(status) if status.state != TaskState::Running => Attempt::Done(status.state),
                    Ok(_) => Attempt::Pending(String::new()),
                    // A task not visible yet on a busy cluster answers "no such task"; keep
                    // asking.
                    Err(e)
                        if matches!(
                            e.class,
                            ErrorClass::Transient | ErrorClass::InvalidParameter
                        ) =>
                    {
                        self.log(Level::Warning, format!("task status: {e}"));
                        Attempt::Pending(String::new())
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            // A stalled copy says so; a deadline reached says how long the task ran.
            let timed_out = |stalled: String| {
                Err(Stop::Failed(match timeout {
                    _ if !stalled.is_empty() => format!("task {} {stalled}", upid.0),
                    Some(limit) => format!(
                        "task {} still running after {}",
                        upid.0,
                        format_duration(limit)
                    ),
                    None => format!("task {} did not end", upid.0),
                }))
            };
            if let Some(state) = poll.answer(attempt, timed_out)? {
                return Ok(state);
            }
        }
    }

    /// The last lines of a task's log, shown in the detail pane when something went wrong.
    pub(super) async fn task_log_tail(&self, upid: &Upid) {
        if let Ok(lines) = self.shared.client.task_log(upid, 0, 0).await {
            let tail: Vec<String> = lines
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|l| l.t.clone())
                .collect();
            self.send(Event::TaskLog {
                vm: self.vm.index,
                lines: tail,
            });
        }
    }
}
