//! The per-VM flock `/var/lock/qemu-server/lock-<vmid>.conf`: shared (clone of a stopped source)
//! or exclusive (config, resize, start, stop, destroy), each wait bounded by a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::clock::Clock;

/// `lock_config` waits this long (simulated s).
pub const CONFIG_LOCK_TIMEOUT_S: f64 = 10.0;
/// Clone's source and target locks wait this long.
pub const CLONE_LOCK_TIMEOUT_S: f64 = 1.0;

pub enum VmLockGuard {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<u32, Arc<RwLock<()>>>>,
}

pub fn lock_timeout_message(vmid: u32) -> String {
    format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
}

impl Locks {
    fn lock_for(&self, vmid: u32) -> Arc<RwLock<()>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(vmid)
            .or_default()
            .clone()
    }

    pub async fn exclusive(
        &self,
        clock: &Clock,
        vmid: u32,
        timeout_s: f64,
    ) -> Result<VmLockGuard, String> {
        let l = self.lock_for(vmid);
        clock
            .timeout(timeout_s, l.write_owned())
            .await
            .map(VmLockGuard::Exclusive)
            .map_err(|_| lock_timeout_message(vmid))
    }

    pub async fn shared(
        &self,
        clock: &Clock,
        vmid: u32,
        timeout_s: f64,
    ) -> Result<VmLockGuard, String> {
        let l = self.lock_for(vmid);
        clock
            .timeout(timeout_s, l.read_owned())
            .await
            .map(VmLockGuard::Shared)
            .map_err(|_| lock_timeout_message(vmid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shared_locks_coexist_and_block_exclusive() {
        let clock = Clock::new(0.001);
        let locks = Locks::default();
        let a = locks.shared(&clock, 9000, 1.0).await.expect("shared 1");
        let _b = locks.shared(&clock, 9000, 1.0).await.expect("shared 2");
        let err = locks
            .exclusive(&clock, 9000, CONFIG_LOCK_TIMEOUT_S)
            .await
            .err()
            .expect("timeout");
        assert_eq!(
            err,
            "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"
        );
        assert!(clock.now() >= CONFIG_LOCK_TIMEOUT_S);
        drop(a);
    }
}
