//! PVE's property strings as typed values: a `netN` device, the `tags` list, a disk's `size=`,
//! the storages a config's volumes live on, a task log's lines. Parsed and printed the way PVE
//! writes them, so the engine never splits PVE's text itself.

use std::fmt;

use super::{NodeInfo, Resource, TaskLogLine, VmConfig, VmStatus};

/// A `netN` value: `virtio=BC:24:11:4F:2A:9E,bridge=vmbr0,firewall=1` (the model key carries the
/// MAC), or the long form `model=virtio,macaddr=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    pub model: String,
    /// As written (PVE writes uppercase); `None` lets PVE generate one.
    pub mac: Option<String>,
    pub bridge: Option<String>,
    /// Every other `key=value` (firewall, tag, rate, ...), in their order.
    pub options: Vec<String>,
}

impl NetDevice {
    /// A device of `model` without a MAC (PVE generates one) or options.
    pub fn new(model: &str) -> Self {
        NetDevice {
            model: model.to_string(),
            mac: None,
            bridge: None,
            options: Vec::new(),
        }
    }

    /// Parses a `netN` value; `None` when it names no model.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(',').map(str::trim).filter(|p| !p.is_empty());
        // The first part is the model, alone or as `model=MAC` (the model is PVE's default key).
        let first = parts.next()?;
        let mut device = match first.split_once('=') {
            Some(("model", model)) => NetDevice::new(model),
            Some((model, mac)) if !is_known_key(model) => NetDevice {
                mac: Some(mac.to_string()),
                ..NetDevice::new(model)
            },
            Some(_) => return None,
            None => NetDevice::new(first),
        };
        for part in parts {
            match part.split_once('=') {
                Some(("macaddr", mac)) => device.mac = Some(mac.to_string()),
                Some(("bridge", bridge)) => device.bridge = Some(bridge.to_string()),
                _ => device.options.push(part.to_string()),
            }
        }
        Some(device)
    }

    /// The MAC, uppercase, when it is one.
    pub fn mac_address(&self) -> Option<String> {
        let mac = self.mac.as_deref()?.trim();
        is_mac(mac).then(|| mac.to_ascii_uppercase())
    }
}

/// The keys a `netN` value has besides the model (a first part with one of them has no model).
fn is_known_key(key: &str) -> bool {
    matches!(
        key,
        "macaddr"
            | "bridge"
            | "firewall"
            | "link_down"
            | "mtu"
            | "queues"
            | "rate"
            | "tag"
            | "trunks"
    )
}

impl fmt::Display for NetDevice {
    /// `model=MAC` (or the bare model), then `bridge=`, then the other options as they were.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mac {
            Some(mac) => write!(f, "{}={mac}", self.model)?,
            None => f.write_str(&self.model)?,
        }
        if let Some(bridge) = &self.bridge {
            write!(f, ",bridge={bridge}")?;
        }
        for option in &self.options {
            write!(f, ",{option}")?;
        }
        Ok(())
    }
}

pub(crate) fn is_mac(text: &str) -> bool {
    let octets: Vec<&str> = text.split(':').collect();
    octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()))
}

/// An `ipconfigN` value (cloud-init's network setup of the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// IPv4 by DHCP: `ip=dhcp`.
    Dhcp,
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpConfig::Dhcp => f.write_str("ip=dhcp"),
        }
    }
}

/// An `efidisk0` to allocate on `storage`: the 4 MiB OVMF vars disk, with or without
/// Microsoft's pre-enrolled Secure Boot keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEfiDisk {
    pub storage: String,
    pub pre_enrolled_keys: bool,
}

impl fmt::Display for NewEfiDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:1,efitype=4m,pre-enrolled-keys={}",
            self.storage,
            u8::from(self.pre_enrolled_keys)
        )
    }
}

/// A guest's `tags`: PVE writes them `;`-separated and accepts `,` and spaces too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    pub fn parse(text: &str) -> Self {
        Tags(
            text.split([';', ',', ' '])
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    pub fn contains(&self, tag: &str) -> bool {
        self.0.iter().any(|t| t == tag)
    }

    /// These tags and `tag`, which is added at the end unless present.
    pub fn with(mut self, tag: &str) -> Self {
        if !self.contains(tag) {
            self.0.push(tag.to_string());
        }
        self
    }
}

impl fmt::Display for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(";"))
    }
}

/// A disk size in bytes, written as PVE writes it: the largest binary unit (K, M, G, T) that
/// divides it, else plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiskSize(pub u64);

const UNITS: [(char, u64); 4] = [
    ('K', 1 << 10),
    ('M', 1 << 20),
    ('G', 1 << 30),
    ('T', 1 << 40),
];

impl DiskSize {
    /// The `size=` of a disk line such as `ssd:vm-101-disk-0,iothread=1,size=128G`.
    pub fn of_volume(line: &str) -> Option<DiskSize> {
        let size = line
            .split(',')
            .find_map(|p| p.trim().strip_prefix("size="))?;
        DiskSize::parse(size)
    }

    /// `128G`, `512M`, `1073741824`.
    pub fn parse(text: &str) -> Option<DiskSize> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let factor = match unit {
            "" => 1,
            unit => {
                let mut chars = unit.chars();
                let (Some(letter), None) = (chars.next(), chars.next()) else {
                    return None;
                };
                UNITS
                    .iter()
                    .find(|(u, _)| *u == letter.to_ascii_uppercase())?
                    .1
            }
        };
        number.checked_mul(factor).map(DiskSize)
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &(unit, factor) in UNITS.iter().rev() {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl VmConfig {
    /// `net0`, parsed.
    pub fn net0(&self) -> Option<NetDevice> {
        NetDevice::parse(self.get("net0")?)
    }

    /// The MAC of `net0` (as configured, uppercase), if any.
    pub fn net0_mac(&self) -> Option<String> {
        self.net0()?.mac_address()
    }

    pub fn tags(&self) -> Tags {
        Tags::parse(self.get("tags").unwrap_or(""))
    }

    /// The `size=` of the disk `key` (`scsi0`), when the config has that disk.
    pub fn disk_size(&self, key: &str) -> Option<DiskSize> {
        DiskSize::of_volume(self.get(key)?)
    }

    /// The description as text: PVE stores it as given, and some clients send it URL-encoded.
    pub fn description(&self) -> Option<String> {
        let text = self.get("description")?;
        Some(
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned(),
        )
    }

    /// Storage ids of every volume the config uses (disks, EFI/TPM state, cloud-init, CD-ROMs).
    pub fn volume_storages(&self) -> Vec<String> {
        const DISK_PREFIXES: [&str; 8] = [
            "scsi", "virtio", "sata", "ide", "efidisk", "tpmstate", "unused", "mp",
        ];
        self.values
            .iter()
            .filter(|(k, _)| {
                DISK_PREFIXES.iter().any(|p| {
                    k.strip_prefix(p)
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                }) && !k.starts_with("scsihw")
            })
            .filter_map(|(_, v)| {
                let volume = v.split(',').next()?;
                if volume == "none" || volume == "cdrom" {
                    return None;
                }
                let (sid, _) = volume.split_once(':')?;
                Some(sid.to_string())
            })
            .collect()
    }

    /// Locked by a clone still running (`lock: clone`).
    pub fn is_being_cloned(&self) -> bool {
        self.lock() == Some("clone")
    }
}

impl Resource {
    /// Locked by a clone still running (`lock: clone`).
    pub fn is_being_cloned(&self) -> bool {
        self.lock.as_deref() == Some("clone")
    }

    /// A virtual machine (not a container, storage or node).
    pub fn is_qemu(&self) -> bool {
        self.kind == "qemu"
    }

    /// A guest: a virtual machine or a container.
    pub fn is_guest(&self) -> bool {
        self.kind == "qemu" || self.kind == "lxc"
    }

    pub fn is_storage(&self) -> bool {
        self.kind == "storage"
    }
}

impl NodeInfo {
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
}

impl VmStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    pub fn is_stopped(&self) -> bool {
        self.status == "stopped"
    }
}

impl TaskLogLine {
    /// `TASK OK`, `TASK ERROR: ...`, `TASK WARNINGS: n`: the task is over.
    pub fn is_end(&self) -> bool {
        self.t.starts_with("TASK ")
    }

    /// PVE's stand-in when a log has no lines yet.
    pub fn is_placeholder(&self) -> bool {
        self.t == "no content"
    }

    /// The percentage of a copy's `transferred 1.0 GiB of 32.0 GiB (3.13%)` line.
    pub fn copy_percent(&self) -> Option<f64> {
        let rest = self.t.trim().strip_prefix("transferred ")?;
        let open = rest.rfind('(')?;
        rest[open + 1..].strip_suffix("%)")?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str) -> TaskLogLine {
        TaskLogLine {
            n: 1,
            t: t.to_string(),
        }
    }

    #[test]
    fn disk_sizes_read_from_config_lines() {
        let of = |l| DiskSize::of_volume(l).map(|s| s.0);
        assert_eq!(
            of("ssd:vm-101-disk-0,iothread=1,size=128G"),
            Some(128 << 30)
        );
        assert_eq!(of("ssd:vm-101-disk-0,size=1073741824"), Some(1 << 30));
        assert_eq!(of("ssd:vm-101-disk-0"), None);
        assert_eq!(DiskSize(128 << 30).to_string(), "128G");
        assert_eq!(DiskSize(1536 << 20).to_string(), "1536M");
        assert_eq!(DiskSize(1000).to_string(), "1000");
    }

    #[test]
    fn net0_keeps_model_and_mac_and_sets_bridge() {
        let mut dev = NetDevice::parse("virtio=BC:24:11:4F:2A:9E,bridge=vmbr0,firewall=1").unwrap();
        assert_eq!(dev.model, "virtio");
        assert_eq!(dev.mac_address().as_deref(), Some("BC:24:11:4F:2A:9E"));
        dev.bridge = Some("vmbr1".into());
        assert_eq!(
            dev.to_string(),
            "virtio=BC:24:11:4F:2A:9E,bridge=vmbr1,firewall=1"
        );
        let fresh = NetDevice {
            bridge: Some("vmbr1".into()),
            ..NetDevice::new("virtio")
        };
        assert_eq!(fresh.to_string(), "virtio,bridge=vmbr1");
        let long = NetDevice::parse("model=e1000,macaddr=bc:24:11:00:00:01,tag=5").unwrap();
        assert_eq!(long.model, "e1000");
        assert_eq!(long.mac_address().as_deref(), Some("BC:24:11:00:00:01"));
        assert_eq!(long.options, ["tag=5"]);
        assert_eq!(
            NetDevice::parse("virtio=nonsense").unwrap().mac_address(),
            None
        );
        assert_eq!(NetDevice::parse("bridge=vmbr0"), None);
    }

    #[test]
    fn new_settings_print_as_pve_reads_them() {
        assert_eq!(IpConfig::Dhcp.to_string(), "ip=dhcp");
        let efi = NewEfiDisk {
            storage: "ssd".into(),
            pre_enrolled_keys: true,
        };
        assert_eq!(efi.to_string(), "ssd:1,efitype=4m,pre-enrolled-keys=1");
    }

    #[test]
    fn tags_gain_ours_once() {
        assert_eq!(
            Tags::parse("web;prod").with("pve-rollout").to_string(),
            "web;prod;pve-rollout"
        );
        assert_eq!(
            Tags::parse("pve-rollout").with("pve-rollout").to_string(),
            "pve-rollout"
        );
        assert_eq!(
            Tags::parse("").with("pve-rollout").to_string(),
            "pve-rollout"
        );
        assert!(Tags::parse("a, pve-rollout").contains("pve-rollout"));
        assert!(!Tags::parse("pve-rollout-old").contains("pve-rollout"));
    }

    #[test]
    fn volumes_lists_every_storage_a_vm_uses() {
        let c = VmConfig {
            values: [
                ("scsi0", "ssd:base-9000-disk-0,iothread=1,size=128G"),
                ("efidisk0", "ssd:base-9000-disk-1,efitype=4m,size=4M"),
                ("ide2", "local:9000/vm-9000-cloudinit.qcow2,media=cdrom"),
                ("ide0", "none,media=cdrom"),
                ("scsihw", "virtio-scsi-single"),
                ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let mut v = c.volume_storages();
        v.sort();
        assert_eq!(v, ["local", "ssd", "ssd"]);
        assert_eq!(c.disk_size("scsi0"), Some(DiskSize(128 << 30)));
        assert_eq!(c.net0_mac().as_deref(), Some("BC:24:11:00:00:01"));
    }

    #[test]
    fn task_log_lines_tell_progress_and_end() {
        assert_eq!(
            line("transferred 1.0 GiB of 32.0 GiB (3.13%)").copy_percent(),
            Some(3.13)
        );
        assert_eq!(
            line("create full clone of drive scsi0").copy_percent(),
            None
        );
        assert!(line("TASK OK").is_end());
        assert!(line("TASK ERROR: clone failed").is_end());
        assert!(!line("transferred 0 B of 1 GiB (0.00%)").is_end());
        assert!(line("no content").is_placeholder());
    }
}
