//! What an operator keeps after a rollout: `summary.json`, `summary.md`, `inventory.ini` and the
//! seed's `vm_<VMID>_ip.txt` / `vm_<VMID>_summary.txt`, all written atomically (temp + rename).
//! Never a secret in any of them: the types below hold none.

use indexmap::IndexMap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub rollout: RolloutInfo,
    pub vms: Vec<VmSummary>,
}

/// The rollout's settings as run (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutInfo {
    /// Stable id of this rollout (marks its VMs).
    pub id: String,
    pub proxmox_url: String,
    pub template: String,
    pub mode: String,
    pub vm_count: usize,
    pub deployment_delay: String,
    pub nodes: Vec<String>,
    #[serde(with = "ms")]
    pub started: Timestamp,
    #[serde(with = "ms::option", default)]
    pub finished: Option<Timestamp>,
    /// True when the operator aborted (or quit) before every VM settled.
    pub aborted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSummary {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// `verified`, `failed`, `skipped`, `paused`, or the phase it stopped in.
    pub state: String,
    pub ip: Option<String>,
    pub ip_candidates: Vec<String>,
    pub uname: Option<String>,
    pub os: Option<String>,
    pub attempts: u32,
    pub error: Option<String>,
    /// Phase name (`cloning`, `configuring`, `booting`, `awaiting-agent`, `ip-found`,
    /// `verifying`) -> when it started and finished.
    pub phases: IndexMap<String, PhaseTimes>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimes {
    #[serde(with = "ms::option", default)]
    pub started: Option<Timestamp>,
    #[serde(with = "ms::option", default)]
    pub finished: Option<Timestamp>,
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T17:09:45.123Z`.
pub mod ms {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    pub mod option {
        use jiff::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            text.map(|t| t.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}
