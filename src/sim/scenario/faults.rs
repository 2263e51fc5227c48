//! The `[faults]` section: per-request failure probabilities, clone ordinals whose guest misbehaves,
//! and windows of simulated time (node outages, quorum loss, the template's backup).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeOutage {
    pub node: String,
    /// Simulated second the node drops off the network.
    pub at_s: f64,
    /// Simulated second it comes back (never, when absent).
    #[serde(default)]
    pub until_s: Option<f64>,
}

/// One NIC of one clone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicFault {
    /// The clone ordinal (1 = the first clone accepted).
    pub clone: usize,
    /// The NIC's index (0 = net0).
    pub nic: usize,
}

/// A window of simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub at_s: f64,
    /// End of the window (never, when absent).
    #[serde(default)]
    pub until_s: Option<f64>,
}

impl Window {
    pub fn contains(&self, t: f64) -> bool {
        t >= self.at_s && self.until_s.is_none_or(|u| t < u)
    }
}

/// Fault injection. Probabilities are per request (or per clone task) and drawn from the seeded RNG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// A protected request is never served: `596 Connection timed out` after the 30 s proxy timeout.
    pub p_596: f64,
    /// A node-bound request fails at once with `595 No route to host`.
    pub p_595: f64,
    /// A clone POST is performed, but its answer is lost: `596 Connection timed out`.
    pub p_clone_response_lost: f64,
    /// A protected request is answered `596` after the proxy timeout, but a pvedaemon worker
    /// still runs it afterwards: 596 does not mean "not executed".
    pub p_596_executed: f64,
    /// A config update waits 10 s for the config lock and fails `can't lock file … - got timeout`.
    pub p_config_lock_timeout: f64,
    /// A clone task waits 10 s for the storage allocation lock and fails.
    pub p_storage_lock_timeout: f64,
    /// A guest agent command (after a good ping) times out after 5 s.
    pub p_agent_timeout: f64,
    /// Clone ordinals (1 = the first clone accepted) whose guest agent never starts.
    pub agent_never_up: Vec<usize>,
    /// Clone ordinals whose guest never gets a DHCP lease.
    pub ip_never: Vec<usize>,
    /// NICs whose guest does not apply their static `ipconfigN` (a network config baked into
    /// the image wins): the NIC takes a DHCP lease from its bridge's subnet instead.
    pub static_ignored: Vec<NicFault>,
    /// Clone ordinals whose full copy freezes after a tenth: the task runs on, its log stops
    /// growing (a hung NFS mount, a dead iSCSI path).
    pub clone_freeze: Vec<usize>,
    /// Clone ordinals whose first boot's cloud-init ends in error (a failing `runcmd`):
    /// `cloud-init status` says `status: error` and exits 1; `--long` names the module.
    pub cloud_init_error: Vec<usize>,
    /// Nodes that go offline at a simulated time.
    pub node_offline: Vec<NodeOutage>,
    /// Windows without cluster quorum: clone and start fail `cluster not ready - no quorum?`.
    pub quorum_lost: Vec<Window>,
    /// Windows in which vzdump backs up the template (`lock: backup`: clones fail at once).
    pub template_backup: Vec<Window>,
}
