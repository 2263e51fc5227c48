//! Scheduling shared by every VM task: the clone stagger and the guest-agent lane.
//!
//! The lane lets one VM talk to the guest agent at a time, lowest VM index first. In `sequential`
//! mode (the seed's order) VM k also waits until every VM before it has passed the lane (verified,
//! failed or skipped) and holds the lane for its whole check sequence. In `pipelined` mode a VM
//! holds the lane only for a call, so one VM's waits (stabilisation, poll back-off) overlap the
//! next VM's calls.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::clock::Clock;

#[derive(Debug, Default)]
struct LaneState {
    busy: Option<usize>,
    waiting: BTreeSet<usize>,
    /// VMs that have passed (settled) in sequential order; `passed[k]` for VM k.
    passed: Vec<bool>,
}

#[derive(Debug)]
pub struct Lane {
    ordered: bool,
    state: Mutex<LaneState>,
    notify: Notify,
}

/// Holding the lane; dropping it lets the next VM in.
#[derive(Debug)]
pub struct LaneGuard {
    lane: Arc<Lane>,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.lane.lock().busy = None;
        self.lane.notify.notify_waiters();
    }
}

impl Lane {
    pub fn new(vms: usize, ordered: bool) -> Arc<Lane> {
        Arc::new(Lane {
            ordered,
            state: Mutex::new(LaneState {
                passed: vec![false; vms],
                ..Default::default()
            }),
            notify: Notify::new(),
        })
    }

    /// Whether VM k must wait for the VMs before it (sequential mode).
    pub fn ordered(&self) -> bool {
        self.ordered
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        // A panic while holding this tiny lock cannot leave it inconsistent; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn acquire(self: &Arc<Self>, vm: usize) -> LaneGuard {
        self.lock().waiting.insert(vm);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                let first = s.waiting.first().copied() == Some(vm);
                let turn = !self.ordered || s.passed.iter().take(vm).all(|p| *p);
                if s.busy.is_none() && first && turn {
                    s.busy = Some(vm);
                    s.waiting.remove(&vm);
                    return LaneGuard { lane: self.clone() };
                }
                // In ordered mode a VM not yet allowed in must not block those behind it
                // that are (there are none: all behind it wait for it), so `first` suffices.
            }
            notified.await;
        }
    }

    /// Withdraws a waiter (its task was cancelled while waiting).
    pub fn withdraw(&self, vm: usize) {
        self.lock().waiting.remove(&vm);
        self.notify.notify_waiters();
    }

    /// VM `vm` is done with its checks (verified, failed or skipped): later VMs may go.
    pub fn pass(&self, vm: usize) {
        if let Some(p) = self.lock().passed.get_mut(vm) {
            *p = true;
        }
        self.notify.notify_waiters();
    }
}

/// Cancel-safe waiting in the lane: withdraws the waiter if the future is dropped.
pub struct Waiter<'a> {
    pub lane: &'a Arc<Lane>,
    pub vm: usize,
    pub done: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.lane.withdraw(self.vm);
        }
    }
}

impl Lane {
    /// `acquire`, safe to drop while waiting.
    pub async fn enter(self: &Arc<Self>, vm: usize) -> LaneGuard {
        let mut w = Waiter {
            lane: self,
            vm,
            done: false,
        };
        let guard = self.acquire(vm).await;
        w.done = true;
        guard
    }
}

/// What a wait is for, so the durations the first VMs took can time the later VMs' first poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// A task (clone, start, resize) from its UPID to `stopped`.
    CloneTask,
    StartTask,
    ResizeTask,
    /// From the VM's start to its agent's first answer.
    Agent,
    /// From the agent's first answer to a usable IP.
    Ip,
    /// From a guest-exec to its `exited`.
    Exec,
}

/// Durations observed in this rollout (rollout seconds), per kind of wait. Polling blind costs
/// requests (and, for a VM whose agent is still down, a pvedaemon worker for 3 s per ping); the
/// VMs of one rollout come from one template on one cluster, so the first ones tell when to ask
/// about the later ones.
#[derive(Debug, Default)]
pub struct Learned {
    seen: Mutex<std::collections::HashMap<Wait, Vec<f64>>>,
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

    fn lock(&self) -> MutexGuard<'_, std::collections::HashMap<Wait, Vec<f64>>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Progress of a task that copies data, from its log's `transferred X of Y (p%)` lines.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// (rollout second first seen, percent) each time the percentage moved.
    samples: Vec<(f64, f64)>,
}

impl Progress {
    /// The percentage of a `transferred 1.0 GiB of 32.0 GiB (3.13%)` line.
    pub fn percent_of(line: &str) -> Option<f64> {
        let rest = line.trim().strip_prefix("transferred ")?;
        let open = rest.rfind('(')?;
        rest[open + 1..].strip_suffix("%)")?.trim().parse().ok()
    }

    pub fn observe(&mut self, at: f64, percent: f64) {
        if self.samples.last().is_none_or(|(_, p)| percent > *p) {
            self.samples.push((at, percent));
        }
    }

    /// Seconds until 100 % at the rate between the last two moves seen, once there are two
    /// (before the copy starts the task allocates and prepares, so a rate measured from the
    /// task's start would predict far too late).
    pub fn remaining(&self) -> Option<f64> {
        let [.., (t0, p0), (t1, p1)] = self.samples[..] else {
            return None;
        };
        let rate = (p1 - p0) / (t1 - t0);
        (rate.is_finite() && rate > 0.0).then(|| ((100.0 - p1) / rate).max(0.0))
    }
}

/// The next poll of something that will finish: `factor` of the predicted remaining time when
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

/// Clone k starts no earlier than `delay` after clone k-1 started, in VM order.
#[derive(Debug)]
pub struct Stagger {
    delay: Duration,
    state: Mutex<StaggerState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct StaggerState {
    /// Next VM index allowed to start its first clone.
    next: usize,
    last_start: Option<Instant>,
}

impl Stagger {
    pub fn new(delay: Duration) -> Arc<Stagger> {
        Arc::new(Stagger {
            delay,
            state: Mutex::new(StaggerState::default()),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, StaggerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for VM `vm`'s turn and the delay since the previous start; returns when it may clone.
    pub async fn wait_turn(&self, vm: usize, clock: &Clock) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let s = self.lock();
                if s.next == vm {
                    Some(
                        s.last_start
                            .map(|t| {
                                (t + clock.wall(self.delay))
                                    .saturating_duration_since(Instant::now())
                            })
                            .unwrap_or_default(),
                    )
                } else {
                    None
                }
            };
            match wait {
                Some(d) if d.is_zero() => {
                    let mut s = self.lock();
                    s.next = vm + 1;
                    s.last_start = Some(Instant::now());
                    drop(s);
                    self.notify.notify_waiters();
                    return;
                }
                Some(d) => tokio::time::sleep(d).await,
                None => notified.await,
            }
        }
    }

    /// VM `vm` will not clone (adopted, skipped, failed before its turn): let the next one go
    /// without waiting a delay for it.
    pub fn release(&self, vm: usize) {
        let mut s = self.lock();
        if s.next == vm {
            s.next = vm + 1;
        }
        drop(s);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_predict_the_rest_of_a_copy() {
        assert_eq!(
            Progress::percent_of("transferred 1.0 GiB of 32.0 GiB (3.13%)"),
            Some(3.13)
        );
        assert_eq!(
            Progress::percent_of("create full clone of drive scsi0"),
            None
        );
        let mut p = Progress::default();
        assert_eq!(p.remaining(), None);
        p.observe(10.0, 10.0);
        assert_eq!(p.remaining(), None, "one sample has no rate");
        p.observe(15.0, 10.0); // unchanged percentages are not new samples
        p.observe(20.0, 30.0);
        // 20 % in the last 10 s: 35 s to go.
        assert_eq!(p.remaining(), Some(35.0));
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
    }

    #[tokio::test(start_paused = true)]
    async fn stagger_spaces_clone_starts_in_vm_order() {
        let clock = Clock::new(1.0);
        let stagger = Stagger::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for vm in (0..3).rev() {
            let s = stagger.clone();
            handles.push(tokio::spawn(async move {
                s.wait_turn(vm, &clock).await;
                (vm, t0.elapsed().as_secs())
            }));
        }
        let mut starts = Vec::new();
        for h in handles {
            starts.push(h.await.unwrap());
        }
        starts.sort();
        assert_eq!(starts, vec![(0, 0), (1, 30), (2, 60)]);
    }

    #[tokio::test(start_paused = true)]
    async fn released_vm_does_not_cost_a_delay() {
        let clock = Clock::new(1.0);
        let stagger = Stagger::new(Duration::from_secs(30));
        let t0 = Instant::now();
        stagger.wait_turn(0, &clock).await;
        stagger.release(1);
        stagger.wait_turn(2, &clock).await;
        assert_eq!(t0.elapsed().as_secs(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn ordered_lane_waits_for_earlier_vms_to_pass() {
        let lane = Lane::new(3, true);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for vm in [2usize, 1, 0] {
            let lane = lane.clone();
            let order = order.clone();
            handles.push(tokio::spawn(async move {
                let _g = lane.enter(vm).await;
                order.lock().unwrap().push(vm);
                tokio::time::sleep(Duration::from_secs(1)).await;
                lane.pass(vm);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn unordered_lane_is_exclusive_and_prefers_low_index() {
        let lane = Lane::new(3, false);
        let first = lane.enter(2).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for vm in [1usize, 0] {
            let lane = lane.clone();
            let order = order.clone();
            handles.push(tokio::spawn(async move {
                let _g = lane.enter(vm).await;
                order.lock().unwrap().push(vm);
            }));
        }
        while lane.lock().waiting.len() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(order.lock().unwrap().is_empty(), "lane is held by VM 2");
        drop(first);
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
    }
}
