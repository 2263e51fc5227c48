//! How many requests may be in flight at once: per serving node, and overall.
//!
//! Each node serves its own `/nodes/{node}/...` calls (pveproxy on the entry node forwards them,
//! and a protected call holds one of that node's 3 pvedaemon workers); cluster-wide calls
//! (`/version`, `/nodes`, `/cluster/...`, the login) are served by the entry node. So the cap that
//! protects a node is per node: a global cap of 2 lets one slow node (596s, a lock wait) stall
//! every other node's calls and keeps an 8-node rollout at 2 requests. A global ceiling stays,
//! for the entry node's pveproxy (every call passes through it) and for this process.
//!
//! A call takes its node's permit first and the global one second, so a call queued for a busy
//! node never holds a global permit another node could use.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The key of cluster-wide calls (served by the node the URL points at) in the per-node figures.
pub const ENTRY_NODE: &str = "(entry node)";

pub(crate) struct InFlightCaps {
    global: Arc<Semaphore>,
    per_node: usize,
    state: Mutex<CapState>,
}

#[derive(Default)]
struct CapState {
    nodes: HashMap<String, Arc<Semaphore>>,
    in_flight: HashMap<String, usize>,
    total: usize,
    peak_total: usize,
    peak_by_node: BTreeMap<String, usize>,
}

/// One request's right to be in flight; dropping it frees both permits.
pub(crate) struct InFlight<'a> {
    caps: &'a InFlightCaps,
    node: String,
    _node_permit: OwnedSemaphorePermit,
    _global_permit: OwnedSemaphorePermit,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.caps.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.in_flight.get_mut(&self.node) {
            *n = n.saturating_sub(1);
        }
    }
}

impl InFlightCaps {
    /// `global` and `per_node` are at least 1 (the client checks its settings first).
    pub(crate) fn new(global: usize, per_node: usize) -> InFlightCaps {
        InFlightCaps {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_node: per_node.max(1),
            state: Mutex::new(CapState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CapState> {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a place for a call served by `node` (`None`: a cluster-wide call).
    pub(crate) async fn acquire(&self, node: Option<&str>) -> InFlight<'_> {
        let key = node.unwrap_or(ENTRY_NODE);
        let node_permits = self
            .lock()
            .nodes
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_node)))
            .clone();
        // Never closed, so acquiring cannot fail; the fallback keeps that an invariant, not a
        // panic.
        let node_permit = match node_permits.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable_closed(),
        };
        let global_permit = match self.global.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable_closed(),
        };
        let mut state = self.lock();
        state.total += 1;
        state.peak_total = state.peak_total.max(state.total);
        let now = {
            let n = state.in_flight.entry(key.to_string()).or_default();
            *n += 1;
            *n
        };
        let peak = state.peak_by_node.entry(key.to_string()).or_default();
        *peak = (*peak).max(now);
        drop(state);
        InFlight {
            caps: self,
            node: key.to_string(),
            _node_permit: node_permit,
            _global_permit: global_permit,
        }
    }

    /// Most calls in flight at once, overall and per serving node.
    pub(crate) fn peaks(&self) -> (usize, BTreeMap<String, usize>) {
        let state = self.lock();
        (state.peak_total, state.peak_by_node.clone())
    }
}

/// The semaphores are owned here and never closed.
fn unreachable_closed() -> ! {
    unreachable!("in-flight semaphores are never closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Calls for one busy node queue behind it; the other nodes' calls go by.
    #[tokio::test(start_paused = true)]
    async fn a_busy_node_does_not_hold_up_the_others() {
        let caps = Arc::new(InFlightCaps::new(8, 2));
        let mut jobs = Vec::new();
        for (node, hold) in [("pve1", 100), ("pve1", 100), ("pve1", 100), ("pve2", 1)] {
            let caps = caps.clone();
            jobs.push(tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let _permit = caps.acquire(Some(node)).await;
                let waited = started.elapsed();
                tokio::time::sleep(Duration::from_secs(hold)).await;
                waited
            }));
        }
        let mut waits = Vec::new();
        for job in jobs {
            waits.push(job.await.expect("join"));
        }
        assert_eq!(waits[0], Duration::ZERO);
        assert_eq!(waits[1], Duration::ZERO);
        assert_eq!(waits[2], Duration::from_secs(100), "third pve1 call waits");
        assert_eq!(waits[3], Duration::ZERO, "pve2 is not held up by pve1");
        let (total, by_node) = caps.peaks();
        assert_eq!(total, 3);
        assert_eq!(by_node["pve1"], 2);
        assert_eq!(by_node["pve2"], 1);
    }

    /// The global ceiling holds over all nodes, and cluster-wide calls count against the entry
    /// node.
    #[tokio::test(start_paused = true)]
    async fn the_global_ceiling_holds_across_nodes() {
        let caps = Arc::new(InFlightCaps::new(3, 2));
        let mut jobs = Vec::new();
        for node in [None, None, Some("pve1"), Some("pve2"), Some("pve3")] {
            let caps = caps.clone();
            jobs.push(tokio::spawn(async move {
                let _permit = caps.acquire(node).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            }));
        }
        for job in jobs {
            job.await.expect("join");
        }
        let (total, by_node) = caps.peaks();
        assert_eq!(total, 3);
        assert_eq!(by_node[ENTRY_NODE], 2);
        assert!(by_node.values().all(|peak| *peak <= 2), "{by_node:?}");
    }
}
