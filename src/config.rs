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

mod error;
mod formats;
mod parse;
mod secrets;
#[cfg(test)]
mod tests;

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
    /// MiB
    pub memory: Option<u64>,
    /// Bytes.
    pub disk_size: Option<u64>,
    pub disk: Option<String>,
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
    /// The original wait_for_vm.sh flow's order exactly: VM k's checks start after VM k-1's
    /// finished.
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
    /// Want an IPv6 address as the VM's IP (default: IPv4). The other family is listed among
    /// the candidates but never chosen (see `engine::ip`).
    pub ipv6: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    pub dir: PathBuf,
}

impl Cidr {
    /// The range's first address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(u32::from(self.prefix)))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(u32::from(self.prefix)))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// Is `ip` inside this range (same family)?
    pub fn contains(&self, ip: IpAddr) -> bool {
        let same_family = ip.is_ipv4() == self.addr.is_ipv4();
        same_family
            && Cidr {
                addr: ip,
                prefix: self.prefix,
            }
            .network()
                == self.network()
    }

    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16: the original wait_for_vm.sh flow's "192.x, 10.x,
    /// 172.x".
    pub fn rfc1918() -> Vec<Cidr> {
        [
            ([10, 0, 0, 0], 8),
            ([172, 16, 0, 0], 12),
            ([192, 168, 0, 0], 16),
        ]
        .into_iter()
        .map(|(octets, prefix)| Cidr {
            addr: IpAddr::from(octets),
            prefix,
        })
        .collect()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        formats::parse_cidr(text)
    }
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
            bridge: overrides
                .bridge
                .clone()
                .unwrap_or_else(|| self.bridge.clone()),
            secure_boot: overrides.secure_boot.unwrap_or(self.secure_boot),
            ciuser: overrides.ciuser.clone().or_else(|| self.ciuser.clone()),
            sshkeys: overrides.sshkeys.clone().or_else(|| self.sshkeys.clone()),
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

    /// The line a key was written on, if it was.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.source.key_lines.get(key).copied()
    }
}
