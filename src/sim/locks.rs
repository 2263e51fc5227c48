//! The per-VM flock `/var/lock/qemu-server/lock-<vmid>.conf`: shared (clone of a stopped source)
//! or exclusive (config, resize, start, stop, destroy, the clone target), each wait bounded by a
//! timeout. Like Linux flock, a new shared lock is granted while an exclusive waiter queues (no
//! writer preference), and a contended lock is announced with `trying to acquire lock...`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::clock::Clock;

/// `lock_config` waits this long (simulated s).
pub const CONFIG_LOCK_TIMEOUT_S: f64 = 10.0;
/// Clone's source and target locks wait this long.
pub const CLONE_LOCK_TIMEOUT_S: f64 = 1.0;
/// What `lock_file_full` prints when the lock is not free at once (then ` OK` once it is).
pub const CONTENDED_LINE: &str = "trying to acquire lock...";

#[derive(Default)]
struct State {
    readers: usize,
    writer: bool,
}

#[derive(Default)]
struct FileLock {
    state: Mutex<State>,
    released: Notify,
}

impl FileLock {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_take(&self, shared: bool) -> bool {
        let mut s = self.state();
        if s.writer || (!shared && s.readers > 0) {
            return false;
        }
        if shared {
            s.readers += 1;
        } else {
            s.writer = true;
        }
        true
    }

    async fn take(&self, shared: bool) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_take(shared) {
                return;
            }
            released.await;
        }
    }
}

/// A held flock; released on drop.
pub struct VmLockGuard {
    lock: Arc<FileLock>,
    shared: bool,
}

impl Drop for VmLockGuard {
    fn drop(&mut self) {
        {
            let mut s = self.lock.state();
            if self.shared {
                s.readers = s.readers.saturating_sub(1);
            } else {
                s.writer = false;
            }
        }
        self.lock.released.notify_waiters();
    }
}

#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<u32, Arc<FileLock>>>,
}

pub fn lock_timeout_message(vmid: u32) -> String {
    format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
}

impl Locks {
    fn lock_for(&self, vmid: u32) -> Arc<FileLock> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(vmid)
            .or_default()
            .clone()
    }

    /// Takes the lock, waiting at most `timeout_s`; `on_contended` runs once if the lock is not
    /// free at once (where PVE prints `trying to acquire lock...`). The error is PVE's text.
    pub async fn acquire(
        &self,
        clock: &Clock,
        vmid: u32,
        shared: bool,
        timeout_s: f64,
        on_contended: impl FnOnce(),
    ) -> Result<VmLockGuard, String> {
        let lock = self.lock_for(vmid);
        if !lock.try_take(shared) {
            on_contended();
            clock
                .timeout(timeout_s, lock.take(shared))
                .await
                .map_err(|_| lock_timeout_message(vmid))?;
        }
        Ok(VmLockGuard { lock, shared })
    }

    pub async fn exclusive(
        &self,
        clock: &Clock,
        vmid: u32,
        timeout_s: f64,
    ) -> Result<VmLockGuard, String> {
        self.acquire(clock, vmid, false, timeout_s, || {}).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shared_locks_coexist_and_block_exclusive() {
        let clock = Clock::new(0.001);
        let locks = Locks::default();
        let mut waited = false;
        let _a = locks
            .acquire(&clock, 9000, true, 1.0, || waited = true)
            .await;
        let _b = locks
            .acquire(&clock, 9000, true, 1.0, || waited = true)
            .await;
        assert!(!waited, "shared locks coexist");
        let err = locks
            .acquire(&clock, 9000, false, CONFIG_LOCK_TIMEOUT_S, || waited = true)
            .await
            .err()
            .expect("timeout");
        assert!(waited);
        assert_eq!(
            err,
            "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"
        );
        assert!(clock.now() >= CONFIG_LOCK_TIMEOUT_S);
    }

    #[tokio::test]
    async fn a_shared_lock_passes_a_queued_exclusive_waiter_like_flock() {
        let clock = Clock::new(0.001);
        let locks = Arc::new(Locks::default());
        let first = locks
            .acquire(&clock, 9000, true, 1.0, || {})
            .await
            .expect("shared");
        let waiter = {
            let (locks, clock) = (locks.clone(), clock.clone());
            tokio::spawn(async move { locks.exclusive(&clock, 9000, 30.0).await })
        };
        // Let the exclusive request start waiting (it cannot be granted while `first` is held).
        while Arc::strong_count(&first.lock) < 3 {
            tokio::task::yield_now().await;
        }
        let mut waited = false;
        let second = locks
            .acquire(&clock, 9000, true, 0.5, || waited = true)
            .await;
        assert!(
            second.is_ok() && !waited,
            "a new shared lock is granted at once"
        );
        assert!(!waiter.is_finished());
        drop(first);
        drop(second);
        waiter
            .await
            .expect("join")
            .expect("exclusive once both are gone");
    }
}
