//! Clones in flight per target storage (`max_clones_per_storage`).
//!
//! Clones onto one storage share its throughput, so all of them started at once copy at 1/n of it
//! each and every VM waits for the last byte; a few at a time copy the same bytes in the same
//! total time (the storage is busy either way) while the first VMs finish far sooner. A slot is
//! taken before the clone POST and given back when the clone task ends, lowest VM index first.
//!
//! `auto` lets the first clone onto a storage run alone, reads the storage's pace from its
//! progress (`transferred ... (p%)`: the copy time alone, and the time before the copy began) and
//! then plays the rollout's remaining clones through a model of that storage (equal sharing, the
//! stagger) for each limit, keeping the one with the smallest mean clone end whose last clone
//! ends at most 2% later than with no limit. A clone that ends before its pace is known was
//! short: then there is no limit.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::config::ClonesPerStorage;

/// How much later than with no limit the last clone may end.
const MAKESPAN_SLACK: f64 = 0.02;
/// The limits `auto` weighs, besides none.
const AUTO_LIMITS: std::ops::RangeInclusive<usize> = 1..=16;

/// One storage's slots.
#[derive(Debug, Default)]
struct Storage {
    /// `None`: no limit.
    limit: Option<usize>,
    /// `auto` has not measured this storage yet (the limit is 1 meanwhile).
    measuring: bool,
    busy: usize,
    waiting: BTreeSet<usize>,
    /// Where each VM cloning onto this storage stands in the rollout's clone order.
    order: Vec<usize>,
}

#[derive(Debug)]
pub struct CloneSlots {
    storages: Mutex<HashMap<String, Storage>>,
    notify: Notify,
    stagger_s: f64,
}

/// A clone's place on its storage; dropping it frees the place.
#[derive(Debug)]
pub struct CloneSlot {
    slots: Arc<CloneSlots>,
    storage: String,
}

impl Drop for CloneSlot {
    fn drop(&mut self) {
        let mut storages = self.slots.lock();
        if let Some(s) = storages.get_mut(&self.storage) {
            s.busy = s.busy.saturating_sub(1);
            if s.measuring {
                // Over before its pace was read: clones onto this storage are short.
                s.measuring = false;
                s.limit = None;
            }
        }
        drop(storages);
        self.slots.notify.notify_waiters();
    }
}

/// What the first clone onto a storage showed, in rollout seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoragePace {
    /// Its copy from 0 to 100 % with the storage to itself.
    pub copy_s: f64,
    /// From its POST to the start of the copy (allocation, preparation).
    pub overhead_s: f64,
}

impl CloneSlots {
    /// `clones`: each VM that will clone, in clone order (VM index, target storage key).
    pub fn new(
        setting: ClonesPerStorage,
        stagger_s: f64,
        clones: &[(usize, String)],
    ) -> Arc<CloneSlots> {
        let mut storages: HashMap<String, Storage> = HashMap::new();
        for (position, (_, key)) in clones.iter().enumerate() {
            let s = storages.entry(key.clone()).or_default();
            s.order.push(position);
            (s.limit, s.measuring) = match setting {
                ClonesPerStorage::Limit(0) => (None, false),
                ClonesPerStorage::Limit(n) => (Some(n), false),
                ClonesPerStorage::Auto => (Some(1), true),
            };
        }
        Arc::new(CloneSlots {
            storages: Mutex::new(storages),
            notify: Notify::new(),
            stagger_s,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Storage>> {
        // Counters only; a panic elsewhere cannot leave them inconsistent.
        self.storages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until VM `vm` may clone onto `storage` (its turn among the waiters, lowest index
    /// first, and a free slot). Safe to drop while waiting.
    pub async fn take(self: &Arc<Self>, vm: usize, storage: &str) -> CloneSlot {
        let mut waiter = Waiter {
            slots: self,
            storage,
            vm,
            done: false,
        };
        self.lock()
            .entry(storage.to_string())
            .or_default()
            .waiting
            .insert(vm);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut storages = self.lock();
                let s = storages.entry(storage.to_string()).or_default();
                let first = s.waiting.first() == Some(&vm);
                if first && s.limit.is_none_or(|limit| s.busy < limit) {
                    s.waiting.remove(&vm);
                    s.busy += 1;
                    waiter.done = true;
                    drop(storages);
                    // The next waiter may fit too.
                    self.notify.notify_waiters();
                    return CloneSlot {
                        slots: self.clone(),
                        storage: storage.to_string(),
                    };
                }
            }
            notified.await;
        }
    }

    /// Clones of this rollout copying onto `storage` now (at least 1): a copy's rate can grow
    /// at most this many times when the others end.
    pub fn copying(&self, storage: &str) -> usize {
        self.lock().get(storage).map_or(1, |s| s.busy.max(1))
    }

    /// Whether `auto` still waits for the pace of `storage`'s first clone.
    pub fn measuring(&self, storage: &str) -> bool {
        self.lock().get(storage).is_some_and(|s| s.measuring)
    }

    /// The first clone onto `storage` showed its pace: choose the limit. Returns what was
    /// decided, for the log; `None` when the storage was not being measured.
    pub fn measured(&self, storage: &str, pace: StoragePace) -> Option<String> {
        let mut storages = self.lock();
        let s = storages.get_mut(storage).filter(|s| s.measuring)?;
        let ready: Vec<f64> = s
            .order
            .iter()
            .map(|p| (p - s.order[0]) as f64 * self.stagger_s)
            .collect();
        let choice = choose_limit(&ready, pace);
        s.measuring = false;
        s.limit = choice.limit;
        drop(storages);
        self.notify.notify_waiters();
        Some(format!(
            "storage {storage}: a clone alone copies in {:.0} s after {:.0} s of preparation; {} \
             clone(s) onto it: {} (modelled mean clone end {:.0} s, last {:.0} s; with no \
             limit {:.0} s and {:.0} s)",
            pace.copy_s,
            pace.overhead_s,
            ready.len(),
            match choice.limit {
                Some(n) => format!("at most {n} at a time"),
                None => "no limit".to_string(),
            },
            choice.mean_s,
            choice.last_s,
            choice.unlimited_mean_s,
            choice.unlimited_last_s,
        ))
    }
}

/// Withdraws a waiter whose `take` was dropped.
struct Waiter<'a> {
    slots: &'a CloneSlots,
    storage: &'a str,
    vm: usize,
    done: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(s) = self.slots.lock().get_mut(self.storage) {
                s.waiting.remove(&self.vm);
            }
            self.slots.notify.notify_waiters();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitChoice {
    pub limit: Option<usize>,
    pub mean_s: f64,
    pub last_s: f64,
    pub unlimited_mean_s: f64,
    pub unlimited_last_s: f64,
}

/// The limit with the smallest mean clone end whose last clone ends at most 2% later than with
/// no limit (ties go to the larger limit: it leans less on the model). `ready`: when each clone
/// may start at the earliest (the stagger), ascending.
pub fn choose_limit(ready: &[f64], pace: StoragePace) -> LimitChoice {
    let summary = |ends: Vec<f64>| {
        let last = ends.iter().copied().fold(0.0, f64::max);
        (ends.iter().sum::<f64>() / ends.len().max(1) as f64, last)
    };
    let (unlimited_mean_s, unlimited_last_s) = summary(clone_ends(ready, pace, None));
    let mut best = LimitChoice {
        limit: None,
        mean_s: unlimited_mean_s,
        last_s: unlimited_last_s,
        unlimited_mean_s,
        unlimited_last_s,
    };
    for limit in AUTO_LIMITS.rev().filter(|l| *l < ready.len()) {
        let (mean_s, last_s) = summary(clone_ends(ready, pace, Some(limit)));
        let in_time = last_s <= unlimited_last_s * (1.0 + MAKESPAN_SLACK);
        // Better by more than rounding noise.
        if in_time && mean_s < best.mean_s * (1.0 - 1e-6) {
            best = LimitChoice {
                limit: Some(limit),
                mean_s,
                last_s,
                ..best
            };
        }
    }
    best
}

/// When each clone ends under `limit`: a clone waits for its ready time and a slot (in order),
/// prepares for `overhead_s`, then copies; those copying share the storage equally (a clone
/// alone copies in `copy_s`).
pub fn clone_ends(ready: &[f64], pace: StoragePace, limit: Option<usize>) -> Vec<f64> {
    let n = ready.len();
    let limit = limit.unwrap_or(n).max(1);
    let mut ends = vec![f64::NAN; n];
    // Per clone in flight: (index, preparation ends at, copy work left in seconds-alone).
    let mut flight: Vec<(usize, f64, f64)> = Vec::new();
    let mut next = 0;
    let mut now = ready.first().copied().unwrap_or(0.0);
    while next < n || !flight.is_empty() {
        while next < n && flight.len() < limit && ready[next] <= now {
            flight.push((next, now + pace.overhead_s, pace.copy_s));
            next += 1;
        }
        let copying = flight.iter().filter(|f| f.1 <= now).count();
        // The next event: a start, a preparation done, or a copy done.
        let mut step = f64::INFINITY;
        if next < n && flight.len() < limit {
            step = step.min(ready[next] - now);
        }
        for f in &flight {
            if f.1 > now {
                step = step.min(f.1 - now);
            } else {
                step = step.min(f.2 * copying as f64);
            }
        }
        if !step.is_finite() {
            break;
        }
        let step = step.max(0.0);
        for f in flight.iter_mut().filter(|f| f.1 <= now) {
            f.2 -= step / copying as f64;
        }
        now += step;
        flight.retain(|f| {
            let done = f.1 <= now && f.2 <= 1e-9;
            if done {
                ends[f.0] = now;
            }
            !done
        });
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PACE: StoragePace = StoragePace {
        copy_s: 690.0,
        overhead_s: 3.0,
    };

    fn staggered(n: usize, every: f64) -> Vec<f64> {
        (0..n).map(|k| k as f64 * every).collect()
    }

    #[test]
    fn equal_sharing_is_modelled() {
        // Two clones at once, each alone 100 s: both copy at half speed, ending together.
        let pace = StoragePace {
            copy_s: 100.0,
            overhead_s: 0.0,
        };
        assert_eq!(clone_ends(&[0.0, 0.0], pace, None), [200.0, 200.0]);
        assert_eq!(clone_ends(&[0.0, 0.0], pace, Some(1)), [100.0, 200.0]);
        // The second starts 50 s in: the first has 50 s of work left, shared from then.
        let ends = clone_ends(&[0.0, 50.0], pace, None);
        assert!(
            (ends[0] - 150.0).abs() < 1e-6 && (ends[1] - 200.0).abs() < 1e-6,
            "{ends:?}"
        );
    }

    /// Fifty 128 GiB clones on one storage (~690 s each alone), 30 s apart: one at a time ends
    /// the last at about the same time and halves the mean.
    #[test]
    fn storage_bound_clones_go_one_at_a_time() {
        let choice = choose_limit(&staggered(50, 30.0), PACE);
        assert_eq!(choice.limit, Some(1), "{choice:?}");
        assert!(
            choice.last_s <= choice.unlimited_last_s * 1.02,
            "{choice:?}"
        );
        assert!(choice.mean_s < 0.6 * choice.unlimited_mean_s, "{choice:?}");
    }

    /// Short clones never overlap under a 30 s stagger: no limit is needed (and none is set).
    #[test]
    fn short_clones_need_no_limit() {
        let pace = StoragePace {
            copy_s: 10.0,
            overhead_s: 2.0,
        };
        assert_eq!(choose_limit(&staggered(50, 30.0), pace).limit, None);
    }

    /// When preparation is long compared with the copy, one at a time would stretch the
    /// rollout past 2%: a larger limit is chosen.
    #[test]
    fn long_preparation_keeps_more_in_flight() {
        let pace = StoragePace {
            copy_s: 60.0,
            overhead_s: 120.0,
        };
        let choice = choose_limit(&staggered(40, 5.0), pace);
        assert!(choice.limit.is_some_and(|l| l > 1), "{choice:?}");
        assert!(
            choice.last_s <= choice.unlimited_last_s * 1.02,
            "{choice:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_in_vm_order_and_come_back_when_dropped() {
        let clones: Vec<(usize, String)> = (0..3).map(|i| (i, "ssd".to_string())).collect();
        let slots = CloneSlots::new(ClonesPerStorage::Limit(1), 30.0, &clones);
        let first = slots.take(0, "ssd").await;
        let (s1, s2) = (slots.clone(), slots.clone());
        let third = tokio::spawn(async move { s2.take(2, "ssd").await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let second = tokio::spawn(async move { s1.take(1, "ssd").await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!second.is_finished() && !third.is_finished());
        drop(first);
        let second = second.await.expect("join");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!third.is_finished(), "VM 2 waits for VM 1's slot");
        drop(second);
        let _third = third.await.expect("join");
        // Another storage is not held up.
        let _other = slots.take(0, "hdd").await;
    }

    #[tokio::test(start_paused = true)]
    async fn auto_holds_one_until_measured_then_opens() {
        let clones: Vec<(usize, String)> = (0..3).map(|i| (i, "ssd".to_string())).collect();
        let slots = CloneSlots::new(ClonesPerStorage::Auto, 30.0, &clones);
        let _first = slots.take(0, "ssd").await;
        assert!(slots.measuring("ssd"));
        let s1 = slots.clone();
        let second = tokio::spawn(async move { s1.take(1, "ssd").await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!second.is_finished(), "one clone while measuring");
        // Short clones: no limit.
        let text = slots
            .measured(
                "ssd",
                StoragePace {
                    copy_s: 5.0,
                    overhead_s: 1.0,
                },
            )
            .expect("decided");
        assert!(text.contains("no limit"), "{text}");
        let _second = second.await.expect("join");
        let _third = slots.take(2, "ssd").await;
        assert!(slots.measured("ssd", PACE).is_none(), "decided once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_does_not_block_the_next() {
        let clones: Vec<(usize, String)> = (0..3).map(|i| (i, "ssd".to_string())).collect();
        let slots = CloneSlots::new(ClonesPerStorage::Limit(1), 30.0, &clones);
        let first = slots.take(0, "ssd").await;
        let s1 = slots.clone();
        let gone = tokio::spawn(async move { s1.take(1, "ssd").await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        gone.abort();
        let _ = gone.await;
        drop(first);
        let _third = slots.take(2, "ssd").await;
    }
}
