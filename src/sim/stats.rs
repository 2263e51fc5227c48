//! `/sim/stats`: what the simulator saw (requests per endpoint, pvedaemon worker time, peak
//! concurrency, clones per name) and each VM's timeline and drawn durations, so benchmarks can
//! compare a rollout with its critical-path lower bound.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::Shared;
use super::daemon::DaemonStats;

/// One VM's record. Times are simulated seconds since the simulator started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmStats {
    pub vmid: u32,
    pub name: String,
    pub node: String,
    /// 1-based order in which its clone POST was accepted.
    pub clone_index: Option<usize>,
    /// When the clone task finished successfully (= clone_finished_at).
    pub cloned_at: Option<f64>,
    pub clone_started_at: Option<f64>,
    pub clone_finished_at: Option<f64>,
    /// Latest start (qmstart task done).
    pub started_at: Option<f64>,
    pub agent_up_at: Option<f64>,
    pub ip_at: Option<f64>,
    /// First successful agent call after the latest start.
    pub first_agent_ok_at: Option<f64>,
    pub destroyed_at: Option<f64>,
    /// The first request about this VM after its clone finished: when the caller noticed.
    #[serde(default)]
    pub clone_noticed_at: Option<f64>,
    /// Uncontended clone duration (copy at the storage's full throughput + overhead).
    pub clone_s: f64,
    /// The part of `clone_s` that copies data (the allocated bytes at the storage's full
    /// throughput): clones on one storage share that throughput.
    #[serde(default)]
    pub copy_s: f64,
    /// The physical storage the clone copies onto (`sid`, or `node/sid` when not shared).
    #[serde(default)]
    pub copy_storage: String,
    /// qmstart task duration (before the guest starts booting).
    #[serde(default)]
    pub start_s: f64,
    pub boot_s: f64,
    pub agent_s: f64,
    pub dhcp_s: f64,
    /// The package upgrade of its latest start (first boot with `ciupgrade` on), before the
    /// agent comes up; 0 otherwise.
    #[serde(default)]
    pub ciupgrade_s: f64,
    /// Whether the scenario withholds its agent / its IP forever.
    pub agent_never: bool,
    pub ip_never: bool,
    #[serde(skip)]
    pub(crate) agent_up_plan: Option<f64>,
    #[serde(skip)]
    pub(crate) ip_plan: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    pub requests_total: u64,
    /// `"GET /nodes/{node}/qemu/{vmid}/status/current"` → count.
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Simulated seconds pvedaemon workers were busy, all nodes.
    pub worker_seconds: f64,
    /// Most HTTP requests being handled at once.
    pub peak_in_flight: u64,
    /// Clone name → clone POSTs accepted.
    pub clones_by_name: BTreeMap<String, u64>,
    pub vms: Vec<VmStats>,
    /// HTTP status → count.
    pub responses_by_status: BTreeMap<u16, u64>,
    pub nodes: BTreeMap<String, DaemonStats>,
    /// Per serving node (the one in `/nodes/{node}/...`, the entry node for cluster-wide
    /// calls): requests it served and the most it served at once.
    #[serde(default)]
    pub node_load: BTreeMap<String, NodeLoad>,
    pub now: f64,
    pub scenario: String,
    pub seed: u64,
    pub time_scale: f64,
}

/// What one node served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub requests: u64,
    /// Most requests it was serving at once (from pveproxy's arrival to the answer).
    pub peak_in_flight: u64,
    #[serde(skip)]
    in_flight: u64,
}

#[derive(Default)]
pub struct Counters {
    total: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    by_endpoint: Mutex<BTreeMap<String, u64>>,
    by_status: Mutex<BTreeMap<u16, u64>>,
    by_node: Mutex<BTreeMap<String, NodeLoad>>,
}

/// Counts one request in flight while alive.
pub struct InFlight<'a>(&'a Counters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one request in flight at its serving node while alive.
pub struct Serving<'a> {
    counters: &'a Counters,
    node: String,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        if let Some(load) = self.counters.nodes().get_mut(&self.node) {
            load.in_flight = load.in_flight.saturating_sub(1);
        }
    }
}

impl Counters {
    pub fn begin(&self) -> InFlight<'_> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlight(self)
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeLoad>> {
        self.by_node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request reached `node`, which serves it.
    pub fn serving(&self, node: &str) -> Serving<'_> {
        let mut nodes = self.nodes();
        let load = nodes.entry(node.to_string()).or_default();
        load.requests += 1;
        load.in_flight += 1;
        load.peak_in_flight = load.peak_in_flight.max(load.in_flight);
        Serving {
            counters: self,
            node: node.to_string(),
        }
    }

    pub fn endpoint(&self, key: String) {
        *self
            .by_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    pub fn status(&self, code: u16) {
        *self
            .by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }
}

/// A request about VM `vmid` arrived at `now`: the first after its clone finished marks when the
/// caller noticed the end.
pub fn note_vm_request(shared: &Shared, vmid: u32, now: f64) {
    let mut st = shared.state();
    if let Some(v) = st.vm_stats.get_mut(&vmid)
        && v.clone_noticed_at.is_none()
        && v.clone_finished_at.is_some_and(|end| end <= now)
    {
        v.clone_noticed_at = Some(now);
    }
}

pub fn snapshot(shared: &Shared) -> SimStats {
    let now = shared.clock.now();
    let c = &shared.counters;
    let nodes: BTreeMap<String, DaemonStats> = shared
        .daemons
        .iter()
        .map(|(n, d)| (n.clone(), d.stats()))
        .collect();
    let (vms, clones_by_name) = {
        let st = shared.state();
        let vms = st
            .vm_stats
            .values()
            .map(|v| {
                let mut v = v.clone();
                v.agent_up_at = v.agent_up_plan.filter(|t| *t <= now);
                v.ip_at = v.ip_plan.filter(|t| *t <= now);
                v
            })
            .collect();
        (vms, st.clones_by_name.clone())
    };
    SimStats {
        requests_total: c.total.load(Ordering::Relaxed),
        requests_by_endpoint: c
            .by_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        worker_seconds: nodes.values().map(|d| d.worker_seconds).sum(),
        peak_in_flight: c.peak.load(Ordering::Relaxed),
        clones_by_name,
        vms,
        responses_by_status: c
            .by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        nodes,
        node_load: c.nodes().clone(),
        now,
        scenario: shared.scenario.name.clone(),
        seed: shared.seed,
        time_scale: shared.clock.scale(),
    }
}
