//! Storage I/O: clones writing to one storage share its throughput equally (processor sharing,
//! recomputed whenever a transfer starts or ends), and volume allocation takes the storage lock
//! (`/var/lock/pve-manager/pve-storage-<id>`, or a cfs lock for shared storage) with a 10 s timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;

/// Storage allocation lock timeout (simulated s).
pub const STORAGE_LOCK_TIMEOUT_S: f64 = 10.0;

pub fn storage_lock_message(sid: &str, shared: bool) -> String {
    if shared {
        format!("cfs-lock 'storage-{sid}' error: got lock request timeout")
    } else {
        format!("can't lock file '/var/lock/pve-manager/pve-storage-{sid}' - got timeout")
    }
}

/// Which physical storage a volume lives on: shared storages are one for the cluster.
pub fn storage_key(sid: &str, node: &str, shared: bool) -> String {
    if shared {
        sid.to_string()
    } else {
        format!("{node}/{sid}")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Interrupted;

/// Processor sharing in "virtual time": `served` is what every active transfer has received so
/// far, so a transfer is done when `served` reaches its target; every update is O(1).
struct IoState {
    last: f64,
    served: f64,
    /// Transfer id → value of `served` at which it completes.
    active: HashMap<u64, f64>,
    next_id: u64,
}

impl IoState {
    fn remaining(&self, id: u64) -> f64 {
        self.active
            .get(&id)
            .map(|t| (t - self.served).max(0.0))
            .unwrap_or(0.0)
    }
}

pub struct StorageIo {
    bytes_per_s: f64,
    state: Mutex<IoState>,
    changed: watch::Sender<u64>,
    alloc_lock: Arc<tokio::sync::Mutex<()>>,
}

impl StorageIo {
    fn new(bytes_per_s: f64) -> StorageIo {
        StorageIo {
            bytes_per_s,
            state: Mutex::new(IoState {
                last: 0.0,
                served: 0.0,
                active: HashMap::new(),
                next_id: 0,
            }),
            changed: watch::channel(0).0,
            alloc_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn with<R>(&self, now: f64, f: impl FnOnce(&mut IoState) -> R) -> R {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = st.active.len();
        if n > 0 && now > st.last {
            st.served += self.bytes_per_s * (now - st.last) / n as f64;
        }
        st.last = st.last.max(now);
        f(&mut st)
    }

    fn notify(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Copies `bytes`, sharing the throughput; `on_progress(done)` is called on every wake-up,
    /// at least at each whole percent of the transfer.
    pub async fn transfer(
        &self,
        clock: &Clock,
        bytes: f64,
        cancel: &CancellationToken,
        on_progress: &mut (dyn FnMut(f64) + Send),
    ) -> Result<(), Interrupted> {
        let mut rx = self.changed.subscribe();
        let id = self.with(clock.now(), |st| {
            let id = st.next_id;
            st.next_id += 1;
            let target = st.served + bytes.max(0.0);
            st.active.insert(id, target);
            id
        });
        self.notify();
        let result = loop {
            let (remaining, n) = self.with(clock.now(), |st| (st.remaining(id), st.active.len()));
            on_progress(bytes - remaining);
            let rate = self.bytes_per_s / n.max(1) as f64;
            let eta = remaining / rate;
            if remaining < 1.0 {
                break Ok(());
            }
            // Wake at the next percent for the task log, or when the sharing changes.
            let step = (bytes / 100.0).max(1.0);
            let done = bytes - remaining;
            let next_mark = ((done / step).floor() + 1.0) * step;
            let to_mark = ((next_mark - done) / rate).max(0.0);
            let nap = eta.min(to_mark.max(eta / 100.0));
            tokio::select! {
                _ = clock.sleep_full(nap) => {}
                _ = rx.changed() => {}
                _ = cancel.cancelled() => break Err(Interrupted),
            }
        };
        self.with(clock.now(), |st| st.active.remove(&id));
        self.notify();
        if result.is_ok() {
            on_progress(bytes);
        }
        result
    }

    /// Allocates a volume: waits for the storage lock (10 s), then holds it for `hold_s`.
    pub async fn allocate(
        &self,
        clock: &Clock,
        hold_s: f64,
        cancel: &CancellationToken,
    ) -> Result<Result<(), ()>, Interrupted> {
        let guard = tokio::select! {
            g = clock.timeout(STORAGE_LOCK_TIMEOUT_S, self.alloc_lock.clone().lock_owned()) => g,
            _ = cancel.cancelled() => return Err(Interrupted),
        };
        let Ok(guard) = guard else { return Ok(Err(())) };
        tokio::select! {
            _ = clock.sleep(hold_s) => {}
            _ = cancel.cancelled() => return Err(Interrupted),
        }
        drop(guard);
        Ok(Ok(()))
    }
}

#[derive(Default)]
pub struct IoRegistry {
    map: Mutex<HashMap<String, Arc<StorageIo>>>,
}

impl IoRegistry {
    pub fn get(&self, key: &str, throughput_mb_s: f64) -> Arc<StorageIo> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(StorageIo::new(throughput_mb_s * 1e6)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_transfers_share_the_throughput() {
        let clock = Clock::new(0.02);
        let io = Arc::new(StorageIo::new(100e6));
        let cancel = CancellationToken::new();
        let alone_start = clock.now();
        io.transfer(&clock, 200e6, &cancel, &mut |_| {})
            .await
            .expect("alone");
        let alone = clock.now() - alone_start;
        assert!(
            (1.9..2.6).contains(&alone),
            "one 200 MB copy at 100 MB/s: {alone}"
        );

        let start = clock.now();
        let (a, b) = (io.clone(), io.clone());
        let (c1, c2) = (clock.clone(), clock.clone());
        let (k1, k2) = (cancel.clone(), cancel.clone());
        let t1 = tokio::spawn(async move { a.transfer(&c1, 200e6, &k1, &mut |_| {}).await });
        let t2 = tokio::spawn(async move { b.transfer(&c2, 200e6, &k2, &mut |_| {}).await });
        t1.await.expect("join").expect("t1");
        t2.await.expect("join").expect("t2");
        let both = clock.now() - start;
        assert!(
            both > 3.6,
            "two concurrent copies take about twice as long: {both}"
        );
    }
}
