//! Scenarios: the cluster's shape, the latency model and the faults, from documented TOML files
//! (`assets/scenarios/*.toml`, built in) or a user's file. Every field is public so tests can
//! tweak a built-in scenario before starting a simulator.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SimError;

mod faults;
mod tokens;

pub use faults::{Faults, NicFault, NodeOutage, Window};
pub use tokens::{AclSpec, AuthSpec, TokenSpec};

const BUILTIN: &[(&str, &str)] = &[
    ("fast", include_str!("../../../assets/scenarios/fast.toml")),
    (
        "realistic",
        include_str!("../../../assets/scenarios/realistic.toml"),
    ),
    (
        "realistic-thick",
        include_str!("../../../assets/scenarios/realistic-thick.toml"),
    ),
    (
        "flaky",
        include_str!("../../../assets/scenarios/flaky.toml"),
    ),
    (
        "stuck",
        include_str!("../../../assets/scenarios/stuck.toml"),
    ),
    (
        "cluster",
        include_str!("../../../assets/scenarios/cluster.toml"),
    ),
];

const NAMES: &[&str] = &[
    "fast",
    "realistic",
    "realistic-thick",
    "flaky",
    "stuck",
    "cluster",
];

/// The PVE release the simulator answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PveVersion {
    /// pve-manager 8.4.1, qemu-server 8.3: `qmp command` timeouts, agent calls need `VM.Monitor`,
    /// the clone log starts with its first drive.
    #[default]
    #[serde(rename = "8.4")]
    V8_4,
    /// pve-manager 9.1.1, qemu-server 9.1: `qga command` timeouts, `VM.GuestAgent.*`
    /// privileges, the clone log starts `creating a clone of VM X with ID Y`.
    #[serde(rename = "9.1")]
    V9_1,
}

impl PveVersion {
    /// `VM N qmp command 'guest-x' failed - got timeout` (qga from qemu-server 9.0.26).
    pub fn agent_timeout(self, vmid: u32, command: &str) -> String {
        let via = match self {
            PveVersion::V8_4 => "qmp",
            PveVersion::V9_1 => "qga",
        };
        format!("VM {vmid} {via} command '{command}' failed - got timeout")
    }

    /// `(version, release, repoid)` as `GET /version` reports them.
    pub fn strings(self) -> (&'static str, &'static str, &'static str) {
        match self {
            PveVersion::V8_4 => ("8.4.1", "8.4", "2a5fa54a8503f96d"),
            PveVersion::V9_1 => ("9.1.1", "9.1", "42db4a6cf33dac83"),
        }
    }
}

/// A duration range in simulated seconds, drawn uniformly: `[min, max]` or a single number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SpanRepr", into = "SpanRepr")]
pub struct Span {
    pub min: f64,
    pub max: f64,
}

impl Span {
    pub const fn fixed(v: f64) -> Span {
        Span { min: v, max: v }
    }
    pub const fn new(min: f64, max: f64) -> Span {
        Span { min, max }
    }
    pub fn draw(&self, rng: &mut impl rand::Rng) -> f64 {
        super::clock::uniform(rng, self.min, self.max)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SpanRepr {
    One(f64),
    Two([f64; 2]),
}

impl TryFrom<SpanRepr> for Span {
    type Error = String;
    fn try_from(r: SpanRepr) -> Result<Span, String> {
        let (min, max) = match r {
            SpanRepr::One(v) => (v, v),
            SpanRepr::Two([a, b]) => (a, b),
        };
        if !(min.is_finite() && max.is_finite()) || min < 0.0 || max < min {
            return Err(format!(
                "range [{min}, {max}] is invalid: use [min, max] with 0 <= min <= max (seconds)"
            ));
        }
        Ok(Span { min, max })
    }
}

impl From<Span> for SpanRepr {
    fn from(s: Span) -> SpanRepr {
        if s.min == s.max {
            SpanRepr::One(s.min)
        } else {
            SpanRepr::Two([s.min, s.max])
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The PVE release simulated: its version strings and the texts that changed between them.
    #[serde(default)]
    pub pve_version: PveVersion,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default = "default_storages")]
    pub storages: Vec<StorageSpec>,
    #[serde(default)]
    pub template: TemplateSpec,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub guest: GuestSpec,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub auth: AuthSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Node names; the first is the node the API is served from.
    pub nodes: Vec<String>,
    /// Logical CPUs per node.
    pub node_cpus: u32,
    /// RAM per node, GiB.
    pub node_memory_gib: u64,
    /// Bridges present on every node.
    pub bridges: Vec<String>,
    /// Cluster name (shown in ticket responses); empty = standalone node.
    pub name: String,
    /// Resource pools that exist (a clone's `pool` must be one of them).
    pub pools: Vec<String>,
    /// Clone ordinals (1 = the first clone accepted) whose new VM is an HA resource: start and
    /// stop become `hastart`/`hastop` requests, delete needs `purge`.
    pub ha_managed: Vec<usize>,
    /// Simulated seconds the HA manager takes to act on a request.
    pub ha_delay_s: f64,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: vec!["pve1".into()],
            node_cpus: 32,
            node_memory_gib: 256,
            bridges: vec!["vmbr0".into(), "vmbr1".into()],
            name: String::new(),
            pools: Vec::new(),
            ha_managed: Vec::new(),
            ha_delay_s: 10.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// LVM-thin: raw volumes `vm-<id>-disk-<n>`, thin provisioned, node local.
    Lvmthin,
    /// Directory: qcow2/raw files under `<id>/`, node local.
    Dir,
    /// NFS: like a directory, but shared by all nodes.
    Nfs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: StorageKind,
    /// Content types; only storages with `images` hold VM disks.
    pub content: Vec<String>,
    /// Capacity, GiB.
    pub size_gib: u64,
    /// Write throughput shared by concurrent clones on this storage (MB/s, 10^6 bytes).
    pub throughput_mb_s: f64,
    /// Time one volume allocation holds the storage lock (simulated s).
    #[serde(default = "default_alloc")]
    pub alloc_s: Span,
    /// `disable` in storage.cfg: every use fails `storage 'x' is disabled`.
    #[serde(default)]
    pub disabled: bool,
    /// `nodes` in storage.cfg: where the storage exists (empty = every node).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Files under `snippets/` (listed as `<id>:snippets/<file>` when content has "snippets").
    #[serde(default)]
    pub snippets: Vec<String>,
}

fn default_alloc() -> Span {
    Span::new(0.05, 0.2)
}

impl StorageSpec {
    pub fn shared(&self) -> bool {
        self.kind == StorageKind::Nfs
    }
    pub fn has_images(&self) -> bool {
        self.content.iter().any(|c| c == "images")
    }
    pub fn on_node(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }
    /// `storage_check_enabled` on `node`: PVE's text when the storage cannot be used there.
    pub fn check_usable(&self, node: &str) -> Result<(), String> {
        if self.disabled {
            return Err(format!("storage '{}' is disabled", self.id));
        }
        if !self.on_node(node) {
            return Err(format!(
                "storage '{}' is not available on node '{node}'",
                self.id
            ));
        }
        Ok(())
    }
}

/// The `fast` scenario's storages (a scenario without `[[storages]]` gets these).
fn default_storages() -> Vec<StorageSpec> {
    vec![
        StorageSpec {
            id: "ssd".into(),
            kind: StorageKind::Lvmthin,
            content: vec!["images".into(), "rootdir".into()],
            size_gib: 3600,
            throughput_mb_s: 65536.0,
            alloc_s: default_alloc(),
            disabled: false,
            nodes: Vec::new(),
            snippets: Vec::new(),
        },
        StorageSpec {
            id: "local".into(),
            kind: StorageKind::Dir,
            content: vec![
                "iso".into(),
                "vztmpl".into(),
                "backup".into(),
                "snippets".into(),
            ],
            size_gib: 94,
            throughput_mb_s: 150.0,
            alloc_s: default_alloc(),
            disabled: false,
            nodes: Vec::new(),
            snippets: vec!["base.yml".into()],
        },
        StorageSpec {
            id: "shared".into(),
            kind: StorageKind::Nfs,
            content: vec!["images".into(), "iso".into()],
            size_gib: 16000,
            throughput_mb_s: 32768.0,
            alloc_s: default_alloc(),
            disabled: false,
            nodes: Vec::new(),
            snippets: Vec::new(),
        },
    ]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateSpec {
    pub vmid: u32,
    pub name: String,
    /// Storage of the template's disks (and so whether it may be cloned across nodes).
    pub storage: String,
    /// Node holding the template (default: the first node).
    pub node: String,
    /// Boot disk (`scsi0`) size, PVE notation (`128G`).
    pub disk_size: String,
    /// Data actually allocated in the boot disk (a cloud image: a few GiB of a large virtual
    /// disk). A full clone copies only this much. Empty = fully allocated (a thick raw disk).
    pub disk_allocated: String,
    pub memory_mib: u64,
    pub cores: u32,
    pub sockets: u32,
    pub bridge: String,
}

impl Default for TemplateSpec {
    fn default() -> Self {
        TemplateSpec {
            vmid: 9000,
            name: "ubuntu".into(),
            storage: "ssd".into(),
            node: String::new(),
            disk_size: "128G".into(),
            disk_allocated: String::new(),
            memory_mib: 2048,
            cores: 2,
            sockets: 1,
            bridge: "vmbr1".into(),
        }
    }
}

/// Every duration of the model, simulated seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// pvedaemon service time of an ordinary request (holds one of the node's 3 workers).
    pub api_service_s: Span,
    /// Extra service time of a clone POST (synchronous checks, fork).
    pub clone_post_s: Span,
    /// Fixed part of a full clone task besides copying (config, snapshots of metadata).
    pub clone_overhead_s: Span,
    /// Whole duration of a linked clone.
    pub linked_clone_s: Span,
    /// `qmstart` task duration (QEMU process start).
    pub start_s: Span,
    /// From start to the guest OS being up (firmware, kernel, systemd).
    pub boot_s: Span,
    /// From OS up to the guest agent answering.
    pub agent_s: Span,
    /// From agent up to the DHCP lease (IPv4 on the NIC).
    pub dhcp_s: Span,
    /// From agent up to cloud-init finishing (`cloud-init status --wait` returns).
    pub cloud_init_s: Span,
    /// Guest shutdown after an ACPI/agent request (once booted).
    pub shutdown_s: Span,
    /// `qmstop`, `qmdestroy`, `qmconfig`, `resize` task durations.
    pub task_s: Span,
    /// Runtime of a simulated guest command (guest-exec).
    pub exec_s: Span,
    /// pvestatd cycle: a new VM shows `status: unknown` in /cluster/resources until the next one.
    pub pvestatd_interval_s: f64,
    /// Migration network throughput, MB/s (a copy runs at the slowest of it and both storages).
    pub migrate_mb_s: f64,
    /// A first boot's package upgrade while `ciupgrade` is on (PVE's default): cloud-init ends
    /// that much later, and so does the agent's start unless `guest.agent_preinstalled`.
    pub ciupgrade_s: Span,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            api_service_s: Span::new(0.003, 0.015),
            clone_post_s: Span::new(0.05, 0.3),
            clone_overhead_s: Span::new(0.5, 1.0),
            linked_clone_s: Span::new(1.0, 3.0),
            start_s: Span::new(0.5, 1.5),
            boot_s: Span::new(1.5, 2.5),
            agent_s: Span::new(1.0, 2.0),
            dhcp_s: Span::new(0.5, 1.5),
            cloud_init_s: Span::new(1.0, 3.0),
            shutdown_s: Span::new(1.0, 3.0),
            task_s: Span::new(0.2, 0.5),
            exec_s: Span::new(0.05, 0.3),
            pvestatd_interval_s: 10.0,
            migrate_mb_s: 1100.0,
            ciupgrade_s: Span::new(1.0, 2.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuestSpec {
    /// Add a `docker0` interface with 172.17.0.1/16 (tests IP selection).
    pub docker0: bool,
    /// Guest NIC name as the agent reports it.
    pub nic_name: String,
    /// The image carries the guest agent: it starts while cloud-init's first-boot package
    /// upgrade runs. Otherwise cloud-init installs it after the upgrade (`ciupgrade_s` later).
    pub agent_preinstalled: bool,
}

impl Default for GuestSpec {
    fn default() -> Self {
        GuestSpec {
            docker0: false,
            nic_name: "ens18".into(),
            agent_preinstalled: false,
        }
    }
}

impl Scenario {
    /// A scenario shipped with the simulator (see [`Scenario::names`]).
    pub fn builtin(name: &str) -> Result<Scenario, SimError> {
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| SimError::UnknownScenario {
                name: name.to_string(),
                known: NAMES.join(", "),
            })?;
        Scenario::parse(text, &format!("built-in '{name}'"))
    }

    /// A scenario from a TOML file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ScenarioRead {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// A built-in name, or else a path.
    pub fn by_name_or_path(arg: &str) -> Result<Scenario, SimError> {
        if NAMES.contains(&arg) {
            return Scenario::builtin(arg);
        }
        let path = Path::new(arg);
        if path.exists() || arg.ends_with(".toml") {
            return Scenario::load(path);
        }
        Err(SimError::UnknownScenario {
            name: arg.to_string(),
            known: NAMES.join(", "),
        })
    }

    pub fn names() -> &'static [&'static str] {
        NAMES
    }

    pub fn parse(text: &str, origin: &str) -> Result<Scenario, SimError> {
        let sc: Scenario = toml::from_str(text).map_err(|e| SimError::ScenarioInvalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        sc.validate().map_err(|message| SimError::ScenarioInvalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(sc)
    }

    /// Consistency checks that serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster.nodes.is_empty() {
            return Err("cluster.nodes is empty: list at least one node, e.g. [\"pve1\"]".into());
        }
        for n in &self.cluster.nodes {
            if !super::params::is_node_name(n) {
                return Err(format!(
                    "cluster.nodes: '{n}' is not a valid node name (letters, digits, '-')"
                ));
            }
        }
        let sid = &self.template.storage;
        let Some(st) = self.storages.iter().find(|s| &s.id == sid) else {
            return Err(format!(
                "template.storage = '{sid}' is not one of the [[storages]] ids"
            ));
        };
        if !st.has_images() {
            return Err(format!(
                "template.storage = '{sid}': that storage has no 'images' content"
            ));
        }
        if !self.template.node.is_empty() && !self.cluster.nodes.contains(&self.template.node) {
            return Err(format!(
                "template.node = '{}' is not in cluster.nodes",
                self.template.node
            ));
        }
        if super::vmconfig::parse_size(&self.template.disk_size).is_none() {
            return Err(format!(
                "template.disk_size = '{}' is not a size like 128G",
                self.template.disk_size
            ));
        }
        let alloc = &self.template.disk_allocated;
        if !alloc.is_empty() {
            match super::vmconfig::parse_size(alloc) {
                None => {
                    return Err(format!(
                        "template.disk_allocated = '{alloc}' is not a size like 3G (or empty for fully allocated)"
                    ));
                }
                Some(a)
                    if super::vmconfig::parse_size(&self.template.disk_size)
                        .is_some_and(|d| a > d) =>
                {
                    return Err(format!(
                        "template.disk_allocated = '{alloc}' is larger than template.disk_size = '{}'",
                        self.template.disk_size
                    ));
                }
                Some(_) => {}
            }
        }
        if !(100..=999_999_999).contains(&self.template.vmid) {
            return Err(format!(
                "template.vmid = {} is outside 100..=999999999",
                self.template.vmid
            ));
        }
        for s in &self.storages {
            if s.throughput_mb_s.is_nan() || s.throughput_mb_s <= 0.0 {
                return Err(format!("storages '{}': throughput_mb_s must be > 0", s.id));
            }
        }
        for o in &self.faults.node_offline {
            if !self.cluster.nodes.contains(&o.node) {
                return Err(format!(
                    "faults.node_offline: node '{}' is not in cluster.nodes",
                    o.node
                ));
            }
        }
        for (k, p) in [
            ("p_596", self.faults.p_596),
            ("p_595", self.faults.p_595),
            ("p_clone_response_lost", self.faults.p_clone_response_lost),
            ("p_596_executed", self.faults.p_596_executed),
            ("p_config_lock_timeout", self.faults.p_config_lock_timeout),
            ("p_storage_lock_timeout", self.faults.p_storage_lock_timeout),
            ("p_agent_timeout", self.faults.p_agent_timeout),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("faults.{k} = {p} is not a probability in [0, 1]"));
            }
        }
        if self.timing.pvestatd_interval_s.is_nan() || self.timing.pvestatd_interval_s <= 0.0 {
            return Err("timing.pvestatd_interval_s must be > 0".into());
        }
        Ok(())
    }

    /// Bytes allocated in the template's boot disk.
    pub fn template_allocated(&self) -> u64 {
        let disk = super::vmconfig::parse_size(&self.template.disk_size).unwrap_or(128 << 30);
        super::vmconfig::parse_size(&self.template.disk_allocated).map_or(disk, |a| a.min(disk))
    }

    pub fn template_node(&self) -> &str {
        if self.template.node.is_empty() {
            &self.cluster.nodes[0]
        } else {
            &self.template.node
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_scenario_parses() {
        for name in Scenario::names() {
            let sc = Scenario::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&sc.name, name);
        }
    }

    #[test]
    fn unknown_scenario_names_the_choices() {
        let err = Scenario::builtin("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("realistic"), "{err}");
    }

    #[test]
    fn bad_range_is_rejected_with_the_key() {
        let err = Scenario::parse("name = \"x\"\n[timing]\nboot_s = [5, 1]\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("boot_s") || err.contains("[5, 1]"), "{err}");
    }

    #[test]
    fn a_scenario_file_loads_by_path_and_missing_keys_take_fast_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "name = \"mine\"\n[faults]\nagent_never_up = [2]\n").expect("write");
        let sc = Scenario::by_name_or_path(path.to_str().expect("utf8")).expect("load");
        assert_eq!(
            (sc.name.as_str(), sc.faults.agent_never_up.as_slice()),
            ("mine", &[2][..])
        );
        let fast = Scenario::builtin("fast").expect("fast");
        assert_eq!(
            (sc.timing, sc.storages, sc.template),
            (fast.timing, fast.storages, fast.template)
        );
        let err = Scenario::by_name_or_path("/nonexistent/x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = Scenario::parse("name = \"x\"\n[timing]\nboot = 1\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("boot"), "{err}");
    }
}
