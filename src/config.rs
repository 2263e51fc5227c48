//! deploy.toml: schema, the original wait_for_vm.sh flow's defaults, and validation that names
//! the key, the line, the bad value and what is allowed. Nothing is sent to Proxmox before this
//! has passed. `parse` walks the document (one file per section under `parse/`), `formats`
//! checks single values (durations, sizes, ids, CIDRs), `secrets` builds the API client's
//! settings (the secret from env or a private file).
//!
//! CONTRACT (the engine reads these fields; keep them, add freely).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

pub use address::{AddressPool, Addressing, Cidr, HostAddress};
pub use disk::ExtraDisk;
pub use nic::{Ip6Addressing, Ip6Host, MAX_NICS, Nic, NicOverrides};

mod address;
mod command;
mod discover;
mod disk;
mod error;
mod formats;
mod nic;
mod parse;
mod secrets;
#[cfg(test)]
mod tests;

pub use command::{Placeholder, ProgramLookup, check_placeholders, expand, find_program};
pub use discover::{CONFIG_ENV, CONFIG_FILE, Lookup, resolve_config_path};
pub use error::{ConfigError, Problem};
pub use formats::{format_duration, format_size, parse_duration, parse_size};
pub use secrets::{PASSWORD_ENV, TOKEN_SECRET_ENV};

/// The whole, validated deploy.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub proxmox: ProxmoxConfig,
    pub rollout: RolloutConfig,
    pub defaults: VmSpec,
    /// Per-VM overrides in file order; when non-empty these names are the VMs.
    pub vm_configs: IndexMap<String, VmOverrides>,
    pub checks: ChecksConfig,
    pub hooks: HooksConfig,
    pub output: OutputConfig,
    /// Where the config came from, for messages that point at a line after parsing.
    pub source: ConfigSource,
}

/// Where each key was written, and what parsing noticed but let pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSource {
    /// A path, or a name such as `<demo>`.
    pub origin: String,
    /// Dotted key path (`proxmox.token_secret_file`) -> 1-based line.
    pub key_lines: BTreeMap<String, usize>,
    /// Things worth telling the operator that are not errors (e.g. `vm_count` ignored because
    /// `vm_configs` names the VMs, or `insecure = true`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxmoxConfig {
    /// `https://host:8006`
    pub url: String,
    pub token_id: Option<String>,
    pub token_secret_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub fingerprint: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    /// Requests in flight at once over all nodes.
    pub max_in_flight: usize,
    /// Requests in flight at once served by one node (cluster-wide calls: the entry node).
    pub max_in_flight_per_node: usize,
}

/// A template given by name or by vmid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    Name(String),
    Id(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutConfig {
    /// Names this rollout (marks its VMs, names the journal); defaults to the prefix.
    pub name: String,
    pub template: TemplateRef,
    pub vm_count: usize,
    pub vm_name_prefix: String,
    pub deployment_delay: Duration,
    pub nodes: Vec<String>,
    /// First vmid to use, or an inclusive range; `None` = ask `/cluster/nextid`.
    pub vmid_range: Option<(u32, u32)>,
    /// Clones in flight per target storage at once.
    pub max_clones_per_storage: ClonesPerStorage,
    /// How unpinned VMs are spread over the nodes.
    pub placement: Placement,
    /// The VMs placed on a node may ask for up to this many times its free memory (1.0: no
    /// overcommit; KSM and ballooning make more possible on purpose).
    pub memory_overcommit: f64,
}

/// `rollout.placement`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// Each VM on the node with the most free memory left (default).
    #[default]
    MostFreeMemory,
    /// Round robin: each VM on the node with the fewest of this rollout's VMs so far, in
    /// `nodes` order.
    Spread,
}

/// How many clones may copy onto one storage at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClonesPerStorage {
    /// Measured: the first clone's progress tells the storage's throughput, and the limit that
    /// verifies the VMs soonest on average without lengthening the rollout by more than 2% wins.
    #[default]
    Auto,
    /// At most this many (0 = no cap beyond the stagger).
    Limit(usize),
}

impl std::fmt::Display for ClonesPerStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClonesPerStorage::Auto => f.write_str("auto"),
            ClonesPerStorage::Limit(0) => f.write_str("no limit"),
            ClonesPerStorage::Limit(n) => write!(f, "{n}"),
        }
    }
}

/// Resources and settings of one VM (defaults merged with its overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub cores: u32,
    pub sockets: u32,
    /// MiB
    pub memory: u64,
    /// Bytes.
    pub disk_size: u64,
    /// The disk to resize (default `scsi0`).
    pub disk: String,
    pub storage: String,
    pub format: String,
    pub secure_boot: bool,
    pub ciuser: Option<String>,
    /// Public keys, one per line (from `sshkeys` or `sshkeys_file`).
    pub sshkeys: Option<String>,
    /// net0, net1, ... in order (never empty): `networks`, or the single-NIC keys for net0.
    pub networks: Vec<Nic>,
    /// `nameservers`: the guest's DNS servers (cloud-init `nameserver`).
    pub nameservers: Vec<IpAddr>,
    /// `searchdomain`: the guest's DNS search domain.
    pub searchdomain: Option<String>,
    /// `clone`: a full copy, or a linked clone sharing the template's base volumes.
    pub clone: CloneMode,
    /// `cicustom`: snippet files replacing the generated cloud-init files.
    pub cicustom: Option<crate::pve::CiCustom>,
    /// `ciupgrade`, `pool`, `tags`, `description`, `onboot`, `startup`, `cpu`, `balloon`.
    pub guest: GuestSettings,
    /// `disks`: extra disks allocated after the clone.
    pub disks: Vec<ExtraDisk>,
}

/// Guest settings; each left as the template has it when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestSettings {
    /// Upgrade packages on first boot (PVE's default is yes).
    pub ciupgrade: Option<bool>,
    /// The resource pool the clone joins (must exist).
    pub pool: Option<String>,
    /// Tags added to the rollout's marker tag.
    pub tags: Vec<String>,
    /// Text above the rollout's marker line.
    pub description: Option<String>,
    pub onboot: Option<bool>,
    pub startup: Option<crate::pve::Startup>,
    /// CPU type (`host`, `x86-64-v2-AES`, ...).
    pub cpu: Option<String>,
    /// Balloon target in MiB (0 disables the balloon device).
    pub balloon: Option<u64>,
}

impl GuestSettings {
    /// `self` with every key `over` sets taken from it.
    pub fn merged(&self, over: &GuestSettings) -> GuestSettings {
        GuestSettings {
            ciupgrade: over.ciupgrade.or(self.ciupgrade),
            pool: over.pool.clone().or_else(|| self.pool.clone()),
            tags: if over.tags.is_empty() {
                self.tags.clone()
            } else {
                over.tags.clone()
            },
            description: over
                .description
                .clone()
                .or_else(|| self.description.clone()),
            onboot: over.onboot.or(self.onboot),
            startup: over.startup.or(self.startup),
            cpu: over.cpu.clone().or_else(|| self.cpu.clone()),
            balloon: over.balloon.or(self.balloon),
        }
    }
}

/// `clone = "full" | "linked"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CloneMode {
    /// A full copy onto `storage` in `format` (default).
    #[default]
    Full,
    /// A linked clone: on the template's own storage, sharing its base volumes (PVE refuses
    /// `storage` and `format` for it).
    Linked,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmOverrides {
    pub cores: Option<u32>,
    pub sockets: Option<u32>,
    /// MiB
    pub memory: Option<u64>,
    /// Bytes.
    pub disk_size: Option<u64>,
    pub disk: Option<String>,
    pub storage: Option<String>,
    pub format: Option<String>,
    pub secure_boot: Option<bool>,
    pub ciuser: Option<String>,
    pub sshkeys: Option<String>,
    /// `networks`: every NIC, replacing the inherited ones.
    pub networks: Option<Vec<Nic>>,
    /// The single-NIC keys (`bridge`, `vlan`, `ip`, `ip_pool`, `gateway`, `ip6`, `gateway6`):
    /// changes to net0 of the inherited NICs.
    pub nic0: NicOverrides,
    pub nameservers: Option<Vec<IpAddr>>,
    pub searchdomain: Option<String>,
    pub clone: Option<CloneMode>,
    pub cicustom: Option<crate::pve::CiCustom>,
    pub guest: GuestSettings,
    /// `disks`: replaces the defaults' list as a whole.
    pub disks: Option<Vec<ExtraDisk>>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    /// `checks_exec_add` / `checks_exec_replace`: this VM's own guest checks.
    pub checks_exec: Option<ExecChecksOverride>,
}

/// How one VM's guest checks differ from `[[checks.exec]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecChecksOverride {
    /// Run these after the ones every VM runs.
    Add(Vec<ExecCheck>),
    /// Run these instead (empty: no custom check on this VM).
    Replace(Vec<ExecCheck>),
}

/// An operator's own check, run in the guest through the agent after the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCheck {
    pub name: String,
    /// argv, run as written (no shell unless it says `sh -c`; no placeholders).
    pub command: Vec<String>,
    pub expect_exit: i64,
    /// Must match somewhere in stdout.
    pub expect_output: Option<OutputPattern>,
    /// For one run of the command.
    pub timeout: Duration,
    /// Runs again after a failure, with the engine's poll back-off between runs.
    pub retries: u32,
}

/// A validated regular expression (compared by its text).
#[derive(Debug, Clone)]
pub struct OutputPattern(regex::Regex);

impl OutputPattern {
    pub fn new(pattern: &str) -> Result<OutputPattern, String> {
        regex::Regex::new(pattern)
            .map(OutputPattern)
            .map_err(|e| e.to_string())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl PartialEq for OutputPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for OutputPattern {}

/// `[hooks]`: local commands run on the operator's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// Per VM, as soon as it is verified (argv with placeholders; the program resolved).
    pub on_verified: Option<Vec<String>>,
    /// Once, after the outputs are written.
    pub on_finished: Option<Vec<String>>,
    /// `on_verified` hooks running at once.
    pub max_parallel: usize,
    /// For one run of a hook (wall-clock).
    pub timeout: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            on_verified: None,
            on_finished: None,
            max_parallel: 2,
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// The original wait_for_vm.sh flow's order exactly: VM k's checks start after VM k-1's
    /// finished.
    Sequential,
    /// One VM at the guest agent at a time, but idle waits release the lane (default).
    Pipelined,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChecksConfig {
    pub mode: CheckMode,
    pub ip_timeout: Duration,
    pub pings: u32,
    pub stabilization: Duration,
    pub cloud_init: bool,
    /// A hard ceiling on a clone, however it progresses; none by default (a thick template on
    /// slow shared storage legitimately copies for hours).
    pub clone_timeout: Option<Duration>,
    /// A clone (any task whose log reports progress), and the lock waits around it, fail when
    /// nothing moved for this long.
    pub clone_stall_timeout: Duration,
    pub boot_timeout: Duration,
    pub agent_timeout: Duration,
    pub verify_timeout: Duration,
    /// Preferred ranges (default RFC 1918).
    pub ip_prefer: Vec<Cidr>,
    /// `[[checks.exec]]`: the operator's checks every VM runs (a VM can add or replace them).
    pub exec: Vec<ExecCheck>,
    /// Want an IPv6 address as the VM's IP (default: IPv4). The other family is listed among
    /// the candidates but never chosen (see `engine::ip`).
    pub ipv6: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    pub dir: PathBuf,
}

impl CheckMode {
    /// Every mode, as deploy.toml and `--mode` spell them.
    pub const ALL: [CheckMode; 2] = [CheckMode::Pipelined, CheckMode::Sequential];

    /// The name deploy.toml, the journal and the summaries use.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckMode::Sequential => "sequential",
            CheckMode::Pipelined => "pipelined",
        }
    }
}

impl std::fmt::Display for CheckMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CheckMode {
    type Err = String;
    fn from_str(text: &str) -> Result<CheckMode, String> {
        CheckMode::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| format!("not a check mode: {text:?}"))
    }
}

impl std::fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateRef::Name(name) => f.write_str(name),
            TemplateRef::Id(vmid) => write!(f, "{vmid}"),
        }
    }
}

/// One VM of the rollout as the config describes it (before ids and nodes are assigned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    pub name: String,
    /// Defaults merged with this VM's overrides.
    pub spec: VmSpec,
    /// Pinned by `vm_configs."name".node`.
    pub node: Option<String>,
    /// Pinned by `vm_configs."name".vmid`.
    pub vmid: Option<u32>,
}

impl VmSpec {
    /// net0: the primary NIC (its address is the VM's in `inventory.ini`).
    pub fn primary(&self) -> &Nic {
        &self.networks[0]
    }

    /// This spec with `overrides` applied on top.
    pub fn merged(&self, overrides: &VmOverrides) -> VmSpec {
        VmSpec {
            cores: overrides.cores.unwrap_or(self.cores),
            sockets: overrides.sockets.unwrap_or(self.sockets),
            memory: overrides.memory.unwrap_or(self.memory),
            disk_size: overrides.disk_size.unwrap_or(self.disk_size),
            disk: overrides.disk.clone().unwrap_or_else(|| self.disk.clone()),
            storage: overrides
                .storage
                .clone()
                .unwrap_or_else(|| self.storage.clone()),
            format: overrides
                .format
                .clone()
                .unwrap_or_else(|| self.format.clone()),
            secure_boot: overrides.secure_boot.unwrap_or(self.secure_boot),
            ciuser: overrides.ciuser.clone().or_else(|| self.ciuser.clone()),
            sshkeys: overrides.sshkeys.clone().or_else(|| self.sshkeys.clone()),
            networks: {
                let mut nics = overrides
                    .networks
                    .clone()
                    .unwrap_or_else(|| self.networks.clone());
                if let Some(net0) = nics.first_mut() {
                    *net0 = net0.merged(&overrides.nic0);
                }
                nics
            },
            nameservers: overrides
                .nameservers
                .clone()
                .unwrap_or_else(|| self.nameservers.clone()),
            searchdomain: overrides
                .searchdomain
                .clone()
                .or_else(|| self.searchdomain.clone()),
            clone: overrides.clone.unwrap_or(self.clone),
            cicustom: overrides.cicustom.clone().or_else(|| self.cicustom.clone()),
            guest: self.guest.merged(&overrides.guest),
            disks: overrides
                .disks
                .clone()
                .unwrap_or_else(|| self.disks.clone()),
        }
    }
}

impl Config {
    /// Reads and validates `path`. Relative file paths inside it (`token_secret_file`,
    /// `password_file`, `ca_cert`, `sshkeys_file`) are taken relative to the file's directory;
    /// `output.dir` stays relative to the working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(
                &origin,
                Problem {
                    key: None,
                    line: None,
                    value: None,
                    message: format!("cannot read the config file: {e}"),
                    hint: Some(
                        "pass the path of your deploy.toml with -c (deploy.toml.example documents every key)"
                            .to_string(),
                    ),
                },
            )
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        parse::parse(&text, &origin, base)
    }

    /// Validates config text; `origin` names it in messages. Relative paths are taken relative
    /// to the working directory.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        parse::parse(text, origin, None)
    }

    /// The VMs in plan order: the `vm_configs` names in file order when there are any, else
    /// `<prefix>-1` .. `<prefix>-N`.
    pub fn vms(&self) -> Vec<VmEntry> {
        if self.vm_configs.is_empty() {
            (1..=self.rollout.vm_count)
                .map(|i| VmEntry {
                    name: format!("{}-{i}", self.rollout.vm_name_prefix),
                    spec: self.defaults.clone(),
                    node: None,
                    vmid: None,
                })
                .collect()
        } else {
            self.vm_configs
                .iter()
                .map(|(name, overrides)| VmEntry {
                    name: name.clone(),
                    spec: self.defaults.merged(overrides),
                    node: overrides.node.clone(),
                    vmid: overrides.vmid,
                })
                .collect()
        }
    }

    /// The guest checks VM `name` runs after the built-in ones: `[[checks.exec]]`, with its
    /// `vm_configs` entry's additions or replacement.
    pub fn exec_checks_for(&self, name: &str) -> Vec<ExecCheck> {
        match self
            .vm_configs
            .get(name)
            .and_then(|o| o.checks_exec.as_ref())
        {
            None => self.checks.exec.clone(),
            Some(ExecChecksOverride::Replace(own)) => own.clone(),
            Some(ExecChecksOverride::Add(more)) => {
                self.checks.exec.iter().chain(more).cloned().collect()
            }
        }
    }

    /// The line a key was written on, if it was.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.source.key_lines.get(key).copied()
    }
}
