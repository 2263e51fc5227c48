//! The engine's one polling loop: ask; done, or fail past the deadline; sleep; ask less often.
//!
//! Every wait on PVE or on a guest (a task to stop, a lock to go, the agent to answer, a lease, a
//! command to exit) is a [`Poller`]. It owns the deadline, the pace between asks (a [`Backoff`],
//! or a copy's predicted end), and the first wait, which the rollout's earlier VMs teach
//! ([`Learned`]): the VMs of one rollout come from one template on one cluster, so the first ones
//! tell when to ask about the later ones, and polling blind costs requests (and, for a VM whose
//! agent is still down, a pvedaemon worker for 3 s per ping).
//!
//! Every wait reads the same:
//! ```text
//! let mut poll = Poller::new(clock, deadline, backoff).first_wait(learned);
//! let value = loop {
//!     poll.due().await?;                       // sleeps as due; Err(Aborted) on abort
//!     let attempt = /* one ask */;             // Done(v), Pending(why), Again, Copying(eta)
//!     if let Some(v) = poll.answer(attempt, |why| Err(/* timed out */))? {
//!         break v;
//!     }
//! };
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;

/// What one ask found.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    /// Not yet; the text says what is awaited (the timeout message ends with it).
    Pending(String),
    /// A step toward the goal (one of N answers): ask again at once.
    Again,
    /// A copy under way: the next ask follows the prediction ([`next_poll`]) rather than the
    /// back-off, and a poller that [stalls](Poller::stalls_after) watches its percentage.
    Copying(Copy),
    /// A copy under way that cannot end sooner than `at_least` seconds from now (its rate could
    /// at most grow to the whole storage's): the next ask comes at 0.85 of it, at least every
    /// 2 s near the end ([`next_poll_bounded`]). `percent` is the one read at this ask, if any.
    CopyingAtLeast {
        at_least: f64,
        percent: Option<f64>,
    },
}

/// What a copying task's log said at one ask.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Copy {
    /// Seconds predicted to the end, once a rate is known.
    pub remaining: Option<f64>,
    /// The percentage the log reported last (each drive's copy counts from 0 again).
    pub percent: Option<f64>,
}

/// Progress watch: the time of the last move, and where it moved to.
#[derive(Debug, Clone, Copy)]
struct Stall {
    /// `clone_stall_timeout`, or longer for a copy slower than a whole percent in that time.
    limit: Duration,
    /// Rollout second of the last move (or of the first ask: a first wait learned from a
    /// slower VM says nothing about this copy).
    since: Option<f64>,
    best: Option<f64>,
    /// This answer read the percentage and found it where it was: only then is a stall judged
    /// (a copy whose log is read rarely has not stalled between two reads that saw it move).
    unmoved: bool,
}

/// The rollout was aborted while a poller slept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aborted")
    }
}

impl From<Aborted> for String {
    fn from(aborted: Aborted) -> String {
        aborted.to_string()
    }
}

/// How the wait between asks grows: times `factor` after each ask, within `floor..=cap`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait after the first ask (unless the poller starts from a learned wait).
    pub start: Duration,
    pub factor: f64,
    pub floor: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// `start`, then times `factor` up to `cap`.
    pub const fn growing(start: Duration, factor: f64, cap: Duration) -> Self {
        Backoff {
            start,
            factor,
            floor: Duration::ZERO,
            cap,
        }
    }

    /// The same wait every time.
    pub const fn fixed(every: Duration) -> Self {
        Backoff::growing(every, 1.0, every)
    }

    /// Never less than `floor` (a wait that starts at zero still grows).
    pub const fn at_least(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    fn after(&self, last: Duration) -> Duration {
        last.mul_f64(self.factor).min(self.cap).max(self.floor)
    }
}

/// A wait on something that will change, until a deadline.
#[derive(Debug)]
pub struct Poller<'a> {
    clock: Clock,
    abort: Option<CancellationToken>,
    deadline: Instant,
    backoff: Backoff,
    /// To sleep before the next ask (the first wait, then what the last answer set).
    due: Option<Duration>,
    /// What the last `Pending` said was awaited.
    waiting_for: String,
    /// The next wait after a `Pending`.
    next: Duration,
    /// The wait slept last (a prediction grows from it).
    last: Duration,
    /// Rollout second the wait began (its length is learned from there).
    origin: f64,
    learn: Option<(&'a Learned, Wait)>,
    /// Learn the middle of the span in which the wait ended (see [`Self::learning_midpoint`]).
    learn_midpoint: bool,
    /// Seconds from `origin` to the last ask that found the wait not over.
    last_pending: f64,
    stall: Option<Stall>,
}

impl<'a> Poller<'a> {
    /// Asks until `deadline`, waiting per `backoff` in between.
    pub fn new(clock: Clock, deadline: Instant, backoff: Backoff) -> Self {
        Poller {
            clock,
            abort: None,
            deadline,
            backoff,
            due: None,
            waiting_for: String::new(),
            next: backoff.start,
            last: backoff.start,
            origin: clock.now_s(),
            learn: None,
            learn_midpoint: false,
            last_pending: 0.0,
            stall: None,
        }
    }

    /// The wait also ends (through `timed_out`, with a text saying so) when no answer moved the
    /// copy's percentage for `limit`: a copy that progresses is never cut off by the deadline
    /// of a slower one, a frozen one is noticed whatever its deadline.
    pub fn stalls_after(mut self, limit: Duration) -> Self {
        self.stall = Some(Stall {
            limit,
            since: None,
            best: None,
            unmoved: false,
        });
        self
    }

    /// A copy that prints its percentage this seldom (a whole percent of a big drive on a
    /// busy storage can take longer than the stall limit) counts as stalled only after
    /// `at_least`.
    pub fn stall_at_least(&mut self, at_least: Duration) {
        if let Some(stall) = &mut self.stall {
            stall.limit = stall.limit.max(at_least);
        }
    }

    /// Sleeps end early, with [`Aborted`], when `abort` is cancelled.
    pub fn abortable(mut self, abort: &CancellationToken) -> Self {
        self.abort = Some(abort.clone());
        self
    }

    /// The first ask comes after `wait`; the back-off starts afresh after it.
    pub fn first_wait(mut self, wait: Duration) -> Self {
        self.due = Some(wait);
        self.last = wait;
        self
    }

    /// The first ask comes after `wait`, and the back-off grows on from it.
    pub fn starting_at(mut self, wait: Duration) -> Self {
        self.due = Some(wait);
        self.last = wait;
        self.next = self.backoff.after(wait);
        self
    }

    /// On success, how long the wait took (from `since`, a rollout second) is recorded as `wait`.
    pub fn learning(mut self, learned: &'a Learned, wait: Wait, since: Option<f64>) -> Self {
        self.learn = Some((learned, wait));
        if let Some(since) = since {
            self.origin = since;
        }
        self
    }

    /// What is learned is the middle of the span in which the wait ended (from the last ask that
    /// found it not over, or from its start, to the ask that found it over), not that ask's time.
    /// For waits whose first ask comes at what earlier ones took: learned as the ask's time,
    /// a wait that ended before its first ask teaches that first ask's time, so each later
    /// first ask came later (1.1x the last, up to its cap).
    pub fn learning_midpoint(mut self) -> Self {
        self.learn_midpoint = true;
        self
    }

    /// Sleeps until the next ask is due: the first wait, then the pace the last answer set.
    pub async fn due(&mut self) -> Result<(), Aborted> {
        match self.due.take() {
            Some(wait) => self.sleep(wait).await,
            None => Ok(()),
        }
    }

    /// Like [`Self::due`], but the wait is handed to `wait_for`, which may end it early (a
    /// node's task list that says a task ended): its output, or `None` when nothing was due.
    pub async fn due_or<F, Fut, T>(&mut self, wait_for: F) -> Result<Option<T>, Aborted>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let Some(wait) = self.due.take() else {
            return Ok(None);
        };
        match &self.abort {
            Some(abort) => tokio::select! {
                _ = abort.cancelled() => Err(Aborted),
                out = wait_for(wait) => Ok(Some(out)),
            },
            None => Ok(Some(wait_for(wait).await)),
        }
    }

    /// A percentage read at this answer (none when the log was not read): a new one is a move,
    /// the same one means the copy stood still since the last move.
    fn note_percent(&mut self, now: f64, percent: Option<f64>) {
        if let Some(stall) = &mut self.stall
            && let Some(p) = percent
        {
            // Any other percentage is a move: a drive's copy grows it, the next drive's starts
            // it from 0 again.
            if stall.best == Some(p) {
                stall.unmoved = true;
            } else {
                stall.best = Some(p);
                stall.since = Some(now);
            }
        }
    }

    /// The copy's percentage must be read at this ask: the stall limit passed since the last
    /// move (only a fresh read can say whether it still stands).
    pub fn stall_due(&self) -> bool {
        self.stall.is_some() && self.stall_left(self.clock.now_s()) <= 0.0
    }

    /// Seconds until the copy would count as stalled (a poll comes by then to read it again).
    fn stall_left(&self, now: f64) -> f64 {
        self.stall.map_or(f64::INFINITY, |s| {
            s.limit.as_secs_f64() - (now - s.since.unwrap_or(now))
        })
    }

    /// The longest wait before the copy would count as stalled: ask again by then, to read it.
    /// Once past (that read failed, or told nothing), the pace is the copy's own again rather
    /// than a spin.
    fn stall_cap(&self, now: f64) -> f64 {
        match self.stall_left(now) {
            left if left > 0.0 => left,
            _ => f64::INFINITY,
        }
    }

    /// What an ask found. `Some(value)` when done (its wait learned); `None` to ask again once
    /// [`Self::due`]; past the deadline (checked after a `Pending` or `Copying`) `timed_out`
    /// decides, from the last `Pending` text, what the wait gives: mostly an error saying what
    /// never came.
    pub fn answer<T, E>(
        &mut self,
        attempt: Attempt<T>,
        timed_out: impl FnOnce(String) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        if let Some(stall) = &mut self.stall {
            stall.since.get_or_insert(self.clock.now_s());
            stall.unmoved = false;
        }
        let wait = match attempt {
            Attempt::Done(value) => {
                if let Some((learned, wait)) = self.learn {
                    let ended_by = self.clock.now_s() - self.origin;
                    learned.record(
                        wait,
                        match self.learn_midpoint {
                            true => (self.last_pending + ended_by) / 2.0,
                            false => ended_by,
                        },
                    );
                }
                return Ok(Some(value));
            }
            Attempt::Again => return Ok(None),
            Attempt::Pending(why) => {
                self.waiting_for = why;
                self.last_pending = self.clock.now_s() - self.origin;
                self.next
            }
            Attempt::CopyingAtLeast { at_least, percent } => {
                let now = self.clock.now_s();
                self.note_percent(now, percent);
                let waited = now - self.origin;
                let left = self.clock.left(self.deadline).as_secs_f64();
                let secs = next_poll_bounded(at_least, waited).min(self.stall_cap(now));
                Duration::from_secs_f64(secs.min(left).max(0.2))
            }
            Attempt::Copying(copy) => {
                let now = self.clock.now_s();
                self.note_percent(now, copy.percent);
                let waited = now - self.origin;
                let left = self.clock.left(self.deadline).as_secs_f64();
                let secs = next_poll(copy.remaining, self.last.as_secs_f64(), waited, 0.5)
                    .min(self.stall_cap(now));
                Duration::from_secs_f64(secs.min(left).max(0.2))
            }
        };
        if let Some(stall) = self.stall
            && stall.unmoved
            && let Some(since) = stall.since
            && self.clock.now_s() - since >= stall.limit.as_secs_f64()
        {
            let at = match stall.best {
                Some(p) => format!("stuck at {p:.2}%"),
                None => "no progress reported".to_string(),
            };
            return timed_out(format!(
                "made no progress for {} ({at})",
                crate::config::format_duration(stall.limit)
            ))
            .map(Some);
        }
        if self.clock.left(self.deadline).is_zero() {
            return timed_out(std::mem::take(&mut self.waiting_for)).map(Some);
        }
        self.due = Some(wait);
        self.last = wait;
        self.next = self.backoff.after(wait);
        Ok(None)
    }

    async fn sleep(&self, d: Duration) -> Result<(), Aborted> {
        match &self.abort {
            Some(abort) => nap(self.clock, abort, d).await,
            None => {
                self.clock.sleep(d).await;
                Ok(())
            }
        }
    }
}

/// Sleeps rollout time `d`; wakes early only to abort. No wait at all when `d` is zero.
pub async fn nap(clock: Clock, abort: &CancellationToken, d: Duration) -> Result<(), Aborted> {
    if abort.is_cancelled() {
        return Err(Aborted);
    }
    if d.is_zero() {
        return Ok(());
    }
    tokio::select! {
        _ = abort.cancelled() => Err(Aborted),
        _ = clock.sleep(d) => Ok(()),
    }
}

/// What a wait is for, so the durations the first VMs took can time the later VMs' first ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// A task (clone, start, resize) from its UPID to `stopped`.
    CloneTask,
    StartTask,
    StopTask,
    ResizeTask,
    /// A migration of a stopped clone to its node.
    MigrateTask,
    /// From the VM's start to its agent's first answer.
    Agent,
    /// From the agent's first answer to a usable IP.
    Ip,
    /// From a guest-exec to its `exited`.
    Exec,
    /// Seconds a copy took per 1 % of its drive (its log prints a line per whole percent).
    CopyStep,
}

/// Durations observed in this rollout (rollout seconds), per kind of wait.
#[derive(Debug, Default)]
pub struct Learned {
    seen: Mutex<HashMap<Wait, Vec<f64>>>,
}

impl Learned {
    pub fn record(&self, wait: Wait, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.lock().entry(wait).or_default().push(seconds);
        }
    }

    /// The `q` quantile (0 = the fastest) of what `wait` took so far, if anything was seen.
    pub fn quantile(&self, wait: Wait, q: f64) -> Option<f64> {
        let seen = self.lock();
        let mut v = seen.get(&wait)?.clone();
        drop(seen);
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        v.get(i).copied()
    }

    /// A first wait: `share` of the `q` quantile of `wait` so far, if anything was seen.
    pub fn first_wait(&self, wait: Wait, q: f64, share: f64) -> Option<Duration> {
        self.quantile(wait, q)
            .map(|s| Duration::from_secs_f64((s * share).max(0.0)))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Wait, Vec<f64>>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Progress of a task that copies data, from the percentages of its log.
#[derive(Debug, Default, Clone)]
pub struct CopyProgress {
    /// (rollout second first seen, percent) each time the percentage moved, for the drive
    /// being copied.
    samples: Vec<(f64, f64)>,
}

impl CopyProgress {
    /// A percentage seen at rollout second `at`. A clone copies its drives one after the other,
    /// each from 0 to 100 %: a lower percentage is the next drive, whose samples start afresh.
    pub fn observe(&mut self, at: f64, percent: f64) {
        if self.samples.last().is_some_and(|(_, p)| percent < *p) {
            self.samples.clear();
        }
        if self.samples.last().is_none_or(|(_, p)| percent > *p) {
            self.samples.push((at, percent));
        }
    }

    /// Seconds per 1 % between the first and the last move seen on this drive.
    pub fn seconds_per_percent(&self) -> Option<f64> {
        let (&(t0, p0), &(t1, p1)) = (self.samples.first()?, self.samples.last()?);
        (p1 > p0).then(|| (t1 - t0) / (p1 - p0))
    }

    /// The copy's pace once it has moved at least `min_percent` between the first and the last
    /// samples: (seconds from 0 to 100 % at that rate, rollout second the copy began).
    /// A drive seen at 100 % tells no pace (it may have ended long before it was read).
    pub fn pace(&self, min_percent: f64) -> Option<(f64, f64)> {
        let (&(t0, p0), &(t1, p1)) = (self.samples.first()?, self.samples.last()?);
        let rate = (p1 - p0) / (t1 - t0);
        (p1 - p0 >= min_percent && p1 < 100.0 && rate.is_finite() && rate > 0.0)
            .then(|| (100.0 / rate, t1 - p1 / rate))
    }

    /// [`Self::remaining`] as of rollout second `now` (time has passed since the last sample).
    pub fn remaining_at(&self, now: f64) -> Option<f64> {
        let (last, _) = *self.samples.last()?;
        self.remaining().map(|r| (r - (now - last)).max(0.0))
    }

    /// The least time left as of `now`: PVE prints a line as the copy passes each whole
    /// percent, so when a line was read the copy may already have been up to a percent
    /// further on. A poll timed by this comes before the end, not up to a percent after it.
    pub fn remaining_at_least(&self, now: f64) -> Option<f64> {
        let step = 1.0 / self.rate()?;
        self.remaining_at(now).map(|r| (r - step).max(0.0))
    }

    /// The percentage of the drive being copied.
    pub fn percent(&self) -> Option<f64> {
        self.samples.last().map(|(_, p)| *p)
    }

    /// Seconds until 100 % at the rate between the last two moves seen, once there are two
    /// (before the copy starts the task allocates and prepares, so a rate measured from the
    /// task's start would predict far too late).
    pub fn remaining(&self) -> Option<f64> {
        let p1 = self.percent()?;
        self.rate().map(|rate| ((100.0 - p1) / rate).max(0.0))
    }

    /// Percent per second between the last two moves seen.
    fn rate(&self) -> Option<f64> {
        let [.., (t0, p0), (t1, p1)] = self.samples[..] else {
            return None;
        };
        let rate = (p1 - p0) / (t1 - t0);
        (rate.is_finite() && rate > 0.0).then_some(rate)
    }
}

/// The next poll of something that will finish: 0.7 of the predicted remaining time when
/// there is a prediction (a little early, as rates change), else back off; at
/// most 8 times the last interval (a prediction from two samples can be far off); never more
/// often than every `floor` seconds nor than 1% of the time waited so far (so a long wait costs
/// a bounded number of requests and is noticed within about 1% of its length).
pub fn next_poll(remaining: Option<f64>, last: f64, waited: f64, floor: f64) -> f64 {
    let floor = floor.max(waited * 0.01);
    // Never sleep past 5% of the wait so far: when clones share a storage, the rate of the last
    // ones jumps as the others finish, and a prediction from the earlier rate sleeps far past
    // the end (measured: 44 000 s late on a 34 000 s clone).
    let ceiling = (waited * 0.05).max(5.0);
    match remaining {
        Some(r) => (r * 0.7).min(last * 8.0).min(ceiling).max(floor),
        // Doubling, but by at most a quarter of the time waited: after a first poll timed by an
        // earlier VM the task is nearly done, and twice that wait would overshoot its end.
        None => (last * 2.0).min(waited * 0.25).min(ceiling).max(floor),
    }
}

/// The next poll of a copy that cannot end sooner than `at_least` seconds from now: 0.85 of that
/// (a true lower bound, so the poll still comes before the earliest end; the bound shrinks to
/// 15% with each poll, so a 10-minute copy costs about four polls before its last seconds),
/// never more often than every 0.5 s nor, near the end, less often than every 2 s or
/// 1% of the wait so far (the end is noticed within about a second or two).
pub fn next_poll_bounded(at_least: f64, waited: f64) -> f64 {
    let floor = (waited * 0.01).clamp(0.5, 2.0);
    (at_least * 0.85).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_progress_predicts_the_rest_of_a_copy() {
        let mut p = CopyProgress::default();
        assert_eq!(p.remaining(), None);
        p.observe(10.0, 10.0);
        assert_eq!(p.remaining(), None, "one sample has no rate");
        p.observe(15.0, 10.0); // unchanged percentages are not new samples
        p.observe(20.0, 30.0);
        // 20 % in the last 10 s: 35 s to go.
        assert_eq!(p.remaining(), Some(35.0));
        assert_eq!(p.remaining_at(25.0), Some(30.0), "5 s later");
        // The line read may be up to a percent behind the copy (0.5 s at 2 %/s).
        assert_eq!(p.remaining_at_least(25.0), Some(29.5));
        // 10 % .. 30 % in 10 s: 50 s for the whole copy, which began at 20 - 30 / 2 = 5 s.
        assert_eq!(p.pace(5.0), Some((50.0, 5.0)));
        assert_eq!(p.pace(25.0), None, "not enough of the copy seen yet");
        // The next drive starts from 0 %: its own samples, its own rate.
        p.observe(30.0, 100.0);
        assert_eq!(p.pace(1.0), None, "a drive read at 100 % tells no pace");
        p.observe(31.0, 1.0);
        assert_eq!(p.remaining(), None);
        p.observe(41.0, 6.0);
        assert_eq!(p.remaining(), Some(188.0));
    }

    #[test]
    fn a_bounded_copy_is_polled_geometrically_then_every_two_seconds() {
        assert_eq!(next_poll_bounded(600.0, 10.0), 510.0);
        assert_eq!(
            next_poll_bounded(1.0, 700.0),
            2.0,
            "near the end of a long copy"
        );
        assert_eq!(
            next_poll_bounded(0.1, 5.0),
            0.5,
            "never more often than 0.5 s"
        );
    }

    #[test]
    fn polls_follow_the_prediction_and_back_off_without_one() {
        assert_eq!(next_poll(Some(20.0), 10.0, 1000.0, 0.5), 14.0);
        assert_eq!(
            next_poll(Some(100.0), 10.0, 1000.0, 0.5),
            50.0,
            "5% of the wait"
        );
        assert_eq!(next_poll(Some(100.0), 1.0, 10.0, 0.5), 5.0);
        assert_eq!(
            next_poll(Some(1000.0), 1.0, 400.0, 0.5),
            8.0,
            "grows 8x at most"
        );
        assert_eq!(next_poll(Some(0.1), 1.0, 10.0, 0.5), 0.5);
        // Within 1% of a long wait, not more often.
        assert_eq!(next_poll(Some(1.0), 1.0, 1000.0, 0.5), 10.0);
        assert_eq!(next_poll(None, 3.0, 200.0, 0.5), 6.0);
        assert_eq!(
            next_poll(None, 4.0, 12.0, 0.5),
            3.0,
            "a quarter of the wait"
        );
        assert_eq!(next_poll(None, 20.0, 22.0, 0.5), 5.0);
    }

    #[test]
    fn learned_quantiles() {
        let l = Learned::default();
        assert_eq!(l.quantile(Wait::Agent, 0.0), None);
        for s in [30.0, 10.0, 20.0] {
            l.record(Wait::Agent, s);
        }
        assert_eq!(l.quantile(Wait::Agent, 0.0), Some(10.0));
        assert_eq!(l.quantile(Wait::Agent, 1.0), Some(30.0));
        assert_eq!(l.quantile(Wait::Exec, 0.5), None);
        assert_eq!(
            l.first_wait(Wait::Agent, 0.0, 0.8),
            Some(Duration::from_secs(8))
        );
    }

    /// The rollout seconds at which a poller asks, for a thing done at the `done`-th ask.
    async fn asks(mut poll: Poller<'_>, clock: Clock, done: usize) -> Result<Vec<f64>, String> {
        let mut at = Vec::new();
        loop {
            poll.due().await?;
            at.push((clock.now_s() * 100.0).round() / 100.0);
            let attempt = if at.len() == done {
                Attempt::Done(())
            } else {
                Attempt::Pending(format!("ask {}", at.len()))
            };
            if let Some(()) = poll.answer(attempt, |last| Err(format!("timed out after {last}")))? {
                return Ok(at);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_to_its_cap_and_the_deadline_ends_it() {
        let clock = Clock::new(1.0);
        let backoff = Backoff::growing(Duration::from_secs(1), 2.0, Duration::from_secs(3));
        let poller = Poller::new(clock, clock.deadline(Duration::from_secs(60)), backoff);
        assert_eq!(
            asks(poller, clock, 5).await,
            Ok(vec![0.0, 1.0, 3.0, 6.0, 9.0])
        );
        let poller = Poller::new(clock, clock.deadline(Duration::from_secs(5)), backoff);
        assert_eq!(
            asks(poller, clock, 99).await,
            Err("timed out after ask 4".into()),
            "asks at 9, 10, 12, 15: past the deadline after the fourth"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn first_wait_comes_before_the_first_ask() {
        let clock = Clock::new(1.0);
        let backoff = Backoff::growing(Duration::from_secs(1), 2.0, Duration::from_secs(10));
        let deadline = clock.deadline(Duration::from_secs(60));
        // Fresh back-off after the first wait.
        let poller = Poller::new(clock, deadline, backoff).first_wait(Duration::from_secs(5));
        assert_eq!(asks(poller, clock, 3).await, Ok(vec![5.0, 6.0, 8.0]));
        // The back-off grows on from the first wait.
        let poller = Poller::new(clock, deadline, backoff).starting_at(Duration::from_secs(2));
        assert_eq!(asks(poller, clock, 3).await, Ok(vec![10.0, 14.0, 22.0]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_learning_poller_records_how_long_the_wait_took() {
        let clock = Clock::new(1.0);
        let learned = Learned::default();
        let backoff = Backoff::fixed(Duration::from_secs(2));
        let poller = Poller::new(clock, clock.deadline(Duration::from_secs(60)), backoff).learning(
            &learned,
            Wait::Ip,
            None,
        );
        asks(poller, clock, 3).await.unwrap();
        assert_eq!(learned.quantile(Wait::Ip, 0.0), Some(4.0));
    }

    /// A copy whose log is read rarely: the wait is cut to the stall limit, the ask there must
    /// read (`stall_due`), and only a read that finds the same percentage fails it; a read that
    /// failed there sets the copy's own pace again, not a spin.
    #[tokio::test(start_paused = true)]
    async fn a_stall_is_judged_only_on_a_fresh_read() {
        let clock = Clock::new(1.0);
        let backoff = Backoff::fixed(Duration::from_secs(5));
        let far = clock.deadline(Duration::from_secs(100_000));
        let long = |percent| Attempt::<()>::CopyingAtLeast {
            at_least: 3000.0,
            percent,
        };
        let timed_out = |why: String| -> Result<(), String> { Err(why) };
        // Read at the first ask; the next comes at the stall limit, not 0.85 x 3000 s later.
        let mut poll = Poller::new(clock, far, backoff).stalls_after(Duration::from_secs(600));
        assert_eq!(poll.answer(long(Some(5.0)), timed_out), Ok(None));
        assert!(!poll.stall_due());
        poll.due().await.unwrap();
        assert_eq!(clock.now_s().round(), 600.0);
        assert!(poll.stall_due(), "the ask at the limit must read the log");
        // That read failed: no verdict, and the wait is the copy's own (0.85 x 3000 s).
        assert_eq!(poll.answer(long(None), timed_out), Ok(None));
        poll.due().await.unwrap();
        assert_eq!(clock.now_s().round(), 3150.0);
        // The next read finds it where it stood: stalled.
        let verdict = poll.answer(long(Some(5.0)), timed_out);
        assert_eq!(
            verdict,
            Err("made no progress for 10m (stuck at 5.00%)".to_string())
        );
        // A read that finds it moved starts the limit afresh.
        let mut poll = Poller::new(clock, far, backoff).stalls_after(Duration::from_secs(600));
        assert_eq!(poll.answer(long(Some(5.0)), timed_out), Ok(None));
        poll.due().await.unwrap();
        assert_eq!(poll.answer(long(Some(6.0)), timed_out), Ok(None));
        assert!(!poll.stall_due());
    }

    #[tokio::test(start_paused = true)]
    async fn copying_follows_the_prediction() {
        let clock = Clock::new(1.0);
        let backoff = Backoff::growing(Duration::from_secs(1), 1.5, Duration::from_secs(10));
        let mut poll = Poller::new(clock, clock.deadline(Duration::from_secs(600)), backoff)
            .starting_at(Duration::from_secs(2));
        let mut at = Vec::new();
        loop {
            poll.due().await.unwrap();
            at.push(clock.now_s().round());
            // 100 s predicted at 2 s: 8x the last wait (2 s) at most, and 5 s at most this
            // early; then done.
            let attempt = match at.len() {
                1 => Attempt::Copying(Copy {
                    remaining: Some(100.0),
                    percent: Some(1.0),
                }),
                _ => Attempt::Done(()),
            };
            let answer: Result<_, String> = poll.answer(attempt, |_| Err("timed out".into()));
            if answer.unwrap().is_some() {
                break;
            }
        }
        assert_eq!(at, [2.0, 7.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn abort_ends_a_sleep() {
        let clock = Clock::new(1.0);
        let abort = CancellationToken::new();
        let poller = Poller::new(
            clock,
            clock.deadline(Duration::from_secs(600)),
            Backoff::fixed(Duration::from_secs(100)),
        )
        .abortable(&abort);
        let cancel = abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            cancel.cancel();
        });
        assert_eq!(asks(poller, clock, 5).await, Err("aborted".into()));
        assert_eq!(clock.now_s().round(), 3.0);
    }
}
