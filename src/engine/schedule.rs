//! Scheduling shared by every VM task: the clone stagger and the guest-agent lane.
//!
//! The agent lane lets one VM talk to the guest agent at a time, lowest VM index first. In
//! `sequential` mode (the order of the original wait_for_vm.sh flow) VM k also waits until every
//! VM before it has passed the lane (verified, failed or skipped) and holds the lane for its whole
//! check sequence. In `pipelined` mode a VM holds the lane only for a call, so one VM's waits
//! (stabilisation, poll back-off) overlap the next VM's calls.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::clock::Clock;

#[derive(Debug, Default)]
struct AgentLaneState {
    busy: Option<usize>,
    waiting: BTreeSet<usize>,
    /// VMs that have passed (settled) in sequential order; `passed[k]` for VM k.
    passed: Vec<bool>,
}

/// The guest-agent lane: one VM at a time talks to the guest agent (see the module doc).
#[derive(Debug)]
pub struct AgentLane {
    ordered: bool,
    state: Mutex<AgentLaneState>,
    notify: Notify,
}

/// Holding the lane; dropping it lets the next VM in.
#[derive(Debug)]
pub struct AgentLaneGuard {
    lane: Arc<AgentLane>,
}

impl Drop for AgentLaneGuard {
    fn drop(&mut self) {
        self.lane.lock().busy = None;
        self.lane.notify.notify_waiters();
    }
}

impl AgentLane {
    pub fn new(vms: usize, ordered: bool) -> Arc<AgentLane> {
        Arc::new(AgentLane {
            ordered,
            state: Mutex::new(AgentLaneState {
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

    fn lock(&self) -> MutexGuard<'_, AgentLaneState> {
        // A panic while holding this tiny lock cannot leave it inconsistent; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn acquire(self: &Arc<Self>, vm: usize) -> AgentLaneGuard {
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
                    return AgentLaneGuard { lane: self.clone() };
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
pub struct AgentLaneWaiter<'a> {
    pub lane: &'a Arc<AgentLane>,
    pub vm: usize,
    pub done: bool,
}

impl Drop for AgentLaneWaiter<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.lane.withdraw(self.vm);
        }
    }
}

impl AgentLane {
    /// `acquire`, safe to drop while waiting.
    pub async fn enter(self: &Arc<Self>, vm: usize) -> AgentLaneGuard {
        let mut w = AgentLaneWaiter {
            lane: self,
            vm,
            done: false,
        };
        let guard = self.acquire(vm).await;
        w.done = true;
        guard
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
    /// When the previous turn was due (or taken, when it came late): the next is due a delay
    /// after it.
    last_start: Option<Instant>,
    /// VMs past `next` that gave up their turn early (their tasks end in any order).
    released: std::collections::BTreeSet<usize>,
}

impl StaggerState {
    /// The turn after `vm`'s, skipping the VMs that already gave theirs up.
    fn pass(&mut self, vm: usize) {
        self.next = self.next.max(vm + 1);
        while self.released.remove(&self.next) {
            self.next += 1;
        }
        self.released.retain(|v| *v > self.next);
    }
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
            let delay = clock.wall(self.delay);
            let (wait, due) = {
                let s = self.lock();
                if s.next == vm {
                    let due = s.last_start.map(|t| t + delay);
                    let wait = due
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or_default();
                    (Some(wait), due)
                } else {
                    (None, None)
                }
            };
            match wait {
                Some(d) if d.is_zero() => {
                    let now = Instant::now();
                    // A turn taken on time anchors the next at its due time, so the timer's
                    // wake-up lag does not add up over 50 clones; one taken late (a VM that
                    // came to its turn after it was due) anchors at now.
                    let anchor = match due {
                        Some(due) if now.saturating_duration_since(due) < delay / 20 => due,
                        _ => now,
                    };
                    let mut s = self.lock();
                    s.pass(vm);
                    s.last_start = Some(anchor);
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
            s.pass(vm);
        } else if vm > s.next {
            s.released.insert(vm);
        }
        drop(s);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A turn taken a moment late (a timer's wake-up lag) keeps the schedule: the next is due
    /// a delay after the due time. One taken well after it was due spaces the next from then.
    #[tokio::test(start_paused = true)]
    async fn wake_up_lag_does_not_add_up_but_a_late_vm_moves_the_schedule() {
        let clock = Clock::new(1.0);
        let stagger = Stagger::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let at = || t0.elapsed().as_secs();
        stagger.wait_turn(0, &clock).await;
        tokio::time::sleep(Duration::from_secs(31)).await;
        stagger.wait_turn(1, &clock).await;
        assert_eq!(at(), 31);
        stagger.wait_turn(2, &clock).await;
        assert_eq!(
            at(),
            60,
            "due 30 s after VM 1's due time, not after its late start"
        );
        tokio::time::sleep(Duration::from_secs(40)).await;
        stagger.wait_turn(3, &clock).await;
        stagger.wait_turn(4, &clock).await;
        assert_eq!(at(), 130, "VM 3 came 10 s late: VM 4 goes 30 s after it");
    }

    /// Two adopted VMs (a resume) release their turns in the order their tasks end, which need
    /// not be plan order: the next VM must not wait for a turn that already went by.
    #[tokio::test(start_paused = true)]
    async fn releases_out_of_order_still_let_the_next_vm_go() {
        let clock = Clock::new(1.0);
        let stagger = Stagger::new(Duration::from_secs(30));
        stagger.release(1);
        stagger.release(0);
        tokio::time::timeout(Duration::from_secs(3600), stagger.wait_turn(2, &clock))
            .await
            .expect("VM 2's turn came");
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
        let lane = AgentLane::new(3, true);
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
        let lane = AgentLane::new(3, false);
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
