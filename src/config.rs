//! deploy.toml: schema, the seed's defaults, and validation that names the key, the line, the
//! bad value and what is allowed. Nothing is sent to Proxmox before this has passed.
//!
//! CONTRACT (the engine reads these fields; keep them, add freely).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

/// The whole, validated deploy.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub proxmox: ProxmoxConfig,
    pub rollout: RolloutConfig,
    pub defaults: VmSpec,
    /// Per-VM overrides in file order; when non-empty these names are the VMs.
    pub vm_configs: IndexMap<String, VmOverrides>,
    pub checks: ChecksConfig,
    pub output: OutputConfig,
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
    pub max_in_flight: usize,
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
    /// Clones in flight per storage at once (0 = no cap beyond the stagger).
    pub max_clones_per_storage: usize,
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
    pub bridge: String,
    pub secure_boot: bool,
    pub ciuser: Option<String>,
    /// Public keys, one per line (from `sshkeys` or `sshkeys_file`).
    pub sshkeys: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmOverrides {
    pub cores: Option<u32>,
    pub sockets: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u64>,
    pub storage: Option<String>,
    pub format: Option<String>,
    pub bridge: Option<String>,
    pub secure_boot: Option<bool>,
    pub ciuser: Option<String>,
    pub sshkeys: Option<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// The seed's order exactly: VM k's checks start after VM k-1's finished.
    Sequential,
    /// One VM at the guest agent at a time, but idle waits release the lane (default).
    Pipelined,
}

/// An address range such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChecksConfig {
    pub mode: CheckMode,
    pub ip_timeout: Duration,
    pub pings: u32,
    pub stabilization: Duration,
    pub cloud_init: bool,
    pub clone_timeout: Duration,
    pub boot_timeout: Duration,
    pub agent_timeout: Duration,
    pub verify_timeout: Duration,
    /// Preferred ranges (default RFC 1918).
    pub ip_prefer: Vec<Cidr>,
    /// Prefer IPv6 over IPv4.
    pub ipv6: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    pub dir: PathBuf,
}
