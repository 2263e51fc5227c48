//! Waiting for a PVE task (clone, resize, start) to stop.

use std::time::Duration;

use crate::config::format_duration;
use crate::pve::{ErrorClass, TaskState, Upid};

use super::super::clone_slots::StoragePace;
use super::super::event::{Event, Level};
use super::super::poll::{Attempt, Backoff, Copy, CopyProgress, Wait};
use super::super::task_watch::Listed;
use super::{Step, Stop, VmTask};

/// A copy's log is read again after this share of its predicted rest (at least
/// `LOG_EVERY_MIN_S`): often enough for the percentage and ETA on the dashboard and to keep the
/// prediction fresh, while the node's task list tells when it ends.
const LOG_EVERY_SHARE: f64 = 0.6;
const LOG_EVERY_MIN_S: f64 = 30.0;
/// The first clone onto a storage measures its pace once this much of the copy was seen.
const PACE_MIN_PERCENT: f64 = 2.0;
/// Copies that end within this many seconds are followed through the task list alone.
const SHORT_COPY_S: f64 = 60.0;

impl VmTask {
    /// Polls a task until it stops. The first poll comes near the median such task of this
    /// rollout (see below); then the node's task list (one request for every task of the rollout
    /// on that node, see `TaskWatch`) says whether it still runs and how it ended; only when the
    /// list cannot tell is the task asked for its own status. A copying task's log is read at a
    /// slow pace: its percentages predict the end (the list is asked near it) and give the
    /// dashboard its progress; the first clone onto a storage also measures the storage's pace
    /// for `max_clones_per_storage = "auto"`.
    ///
    /// A copy ends in failure only when its percentage, read again, stands where it stood
    /// `clone_stall_timeout` before (or past `timeout`, a ceiling a copy need not have); other
    /// tasks end past `timeout`.
    pub(super) async fn wait_task(
        &mut self,
        upid: &Upid,
        timeout: Option<Duration>,
        wait: Wait,
    ) -> Step<TaskState> {
        let shared = self.shared.clone();
        let clock = shared.clock;
        let t0 = clock.now_s();
        // When half of the same tasks so far had ended (the quickest one seen would have most
        // tasks asked about twice), then in steps from a sixteenth of that, growing by a
        // quarter: the slower half is noticed within a second or two of its end, not a whole
        // wait later (a task's end delays every step of its VM after it).
        let learned = shared.learned.first_wait(wait, 0.5, 1.0);
        let first = learned
            .unwrap_or(Duration::from_millis(500))
            .max(Duration::from_millis(200));
        let copying = wait == Wait::CloneTask;
        // Copies this rollout saw end within a minute are not worth their log while they are
        // that short: the list tells the end, and a percentage would hardly show.
        let short = shared
            .learned
            .quantile(Wait::CloneTask, 0.5)
            .is_some_and(|s| s < SHORT_COPY_S);
        let step = (first / 16).max(Duration::from_millis(500));
        // A long copy is read early, so the dashboard shows its percentage and ETA from its
        // first minute rather than from near its predicted end.
        let first = match copying && !short {
            true => first.min(Duration::from_secs_f64(LOG_EVERY_MIN_S)),
            false => first,
        };
        let backoff = Backoff::growing(step, 1.25, Duration::from_secs(10));
        // Learned from how long each task ran by PVE's clock when the list says (a wait
        // measured here also counts the poll that noticed the end, and would creep up).
        let mut poll =
            Self::poller(&shared, clock.deadline_within(timeout), backoff).first_wait(first);
        let mut took = None;
        let stall_limit = shared.checks.clone_stall_timeout;
        if copying {
            poll = poll.stalls_after(stall_limit);
        }
        let mut progress = CopyProgress::default();
        let mut lines_read = 0u64;
        let mut next_log_at = t0;
        let mut measuring = copying && shared.clone_slots.measuring(&self.vm.clone_storage);
        loop {
            let listed = poll
                .due_or(|wait| shared.task_watch.check(upid, wait))
                .await?
                .unwrap_or(Listed::Unknown);
            let attempt = 'ask: {
                if listed == Listed::Running {
                    if !copying {
                        break 'ask Attempt::Pending(String::new());
                    }
                    let now = clock.now_s();
                    let mut fresh = None;
                    // Until this copy's own rate is known, the storage's measured pace bounds
                    // its rest: no copy runs faster than one alone on the storage (less the
                    // percent it may be past its last line).
                    let pace = shared.clone_slots.pace(&self.vm.clone_storage);
                    let alone_rest =
                        |p: f64| pace.map(|pace| pace.copy_s * (100.0 - p - 1.0).max(0.0) / 100.0);
                    let unknown_rest = progress.remaining().is_none()
                        && progress.percent().and_then(alone_rest).is_none();
                    // A copy expected short that runs on is read like any other (a frozen one
                    // must be seen not to move).
                    let read_log = measuring || !short || now - t0 >= SHORT_COPY_S;
                    if !read_log {
                        // Nothing to predict from: the back-off's short steps, not a wait grown
                        // from the first (the end is due about now).
                        break 'ask Attempt::Pending(String::new());
                    }
                    let due = now >= next_log_at || unknown_rest || poll.stall_due();
                    if read_log && due {
                        let before = progress.percent();
                        fresh = self
                            .read_copy_log(upid, &mut lines_read, &mut progress)
                            .await;
                        let now = clock.now_s();
                        // A whole percent may take longer than the stall limit (a big drive
                        // on a storage many copies share): stalled means no move for three
                        // times the slowest step seen on any copy of this rollout.
                        if let Some(step) = progress.seconds_per_percent() {
                            shared.learned.record(Wait::CopyStep, step);
                        }
                        if let Some(slowest) = shared.learned.quantile(Wait::CopyStep, 1.0) {
                            poll.stall_at_least(Duration::from_secs_f64(3.0 * slowest));
                        }
                        let rest = progress
                            .remaining_at(now)
                            .or_else(|| progress.percent().and_then(alone_rest))
                            .unwrap_or(0.0);
                        next_log_at = now + (rest * LOG_EVERY_SHARE).max(LOG_EVERY_MIN_S);
                        // Standing still: read again within half the stall limit, so a frozen
                        // copy is named soon after the limit.
                        if fresh.is_some() && fresh == before {
                            next_log_at = next_log_at.min(now + stall_limit.as_secs_f64() / 2.0);
                        }
                    }
                    if measuring && let Some((copy_s, began)) = progress.pace(PACE_MIN_PERCENT) {
                        measuring = false;
                        let pace = StoragePace {
                            copy_s,
                            overhead_s: (began - t0).max(0.0),
                        };
                        if let Some(text) =
                            shared.clone_slots.measured(&self.vm.clone_storage, pace)
                        {
                            self.log(Level::Info, text);
                        }
                    }
                    // The rest at the storage's whole throughput: this copy's rate can grow at
                    // most as many times as our clones share the storage (others' load aside).
                    let sharing = shared.clone_slots.copying(&self.vm.clone_storage) as f64;
                    let at_least = progress
                        .remaining_at_least(clock.now_s())
                        .map(|rest| rest / sharing)
                        .or_else(|| progress.percent().and_then(alone_rest));
                    break 'ask match at_least {
                        Some(at_least) => Attempt::CopyingAtLeast {
                            at_least,
                            percent: fresh,
                        },
                        None => Attempt::Copying(Copy {
                            remaining: None,
                            percent: fresh,
                        }),
                    };
                }
                if let Listed::Ended {
                    state: Some(state),
                    took_s,
                } = listed
                {
                    took = took_s;
                    break 'ask Attempt::Done(state);
                }
                // The list says it ended but not how, or cannot tell: ask the task itself.
                match self.shared.client.task_status(upid).await {
                    Ok(status) if status.state != TaskState::Running => Attempt::Done(status.state),
                    Ok(_) if copying => Attempt::Copying(Copy {
                        remaining: progress.remaining_at(clock.now_s()),
                        percent: None,
                    }),
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
                let took = took.unwrap_or_else(|| clock.now_s() - t0);
                shared.learned.record(wait, took);
                return Ok(state);
            }
        }
    }

    /// Reads a copying task's new log lines: its percentage, one sample per read (lines read
    /// together carry no timing of their own), shown on the dashboard. Gives the percentage the
    /// copy stands at when the log was read (no new lines: where it stood), `None` when the log
    /// could not be read.
    async fn read_copy_log(
        &self,
        upid: &Upid,
        lines_read: &mut u64,
        progress: &mut CopyProgress,
    ) -> Option<f64> {
        match self.shared.client.task_log(upid, *lines_read, 0).await {
            Ok(lines) => {
                let mut percent = None;
                for line in lines.iter().filter(|l| !l.is_placeholder()) {
                    *lines_read = (*lines_read).max(line.n);
                    percent = line.copy_percent().or(percent);
                }
                if let Some(p) = percent {
                    let clock = self.shared.clock;
                    progress.observe(clock.now_s(), p);
                    self.send(Event::CopyProgress {
                        vm: self.vm.index,
                        percent: progress.percent().unwrap_or(p),
                        eta_s: progress.remaining().map(|s| s * clock.scale()),
                    });
                }
                percent.or(progress.percent())
            }
            Err(e) => {
                self.log(Level::Warning, format!("task log: {e}"));
                None
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
