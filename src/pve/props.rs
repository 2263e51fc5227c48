//! PVE's property strings as typed values: a `netN` device, the `tags` list, a disk's `size=`,
//! the storages a config's volumes live on, a task log's lines. Parsed and printed the way PVE
//! writes them, so the engine never splits PVE's text itself.

use std::fmt;

use super::{NodeInfo, Resource, TaskLogLine, VmConfig, VmStatus};

mod ipconfig;
pub use ipconfig::{Ip6Config, IpConfig};

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

    /// Sets option `key` (`tag`, `mtu`, `firewall`, ...) to `value` in place, or appends it.
    pub fn set_option(&mut self, key: &str, value: &str) {
        let item = format!("{key}={value}");
        match self
            .options
            .iter_mut()
            .find(|o| o.split_once('=').is_some_and(|(k, _)| k == key))
        {
            Some(existing) => *existing = item,
            None => self.options.push(item),
        }
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

/// A `cicustom` value: cloud-init files of the operator's own (`<storage>:snippets/<file>`)
/// replacing the generated ones, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiCustom {
    pub meta: Option<String>,
    pub network: Option<String>,
    pub user: Option<String>,
    pub vendor: Option<String>,
}

impl CiCustom {
    /// (kind, volume) of every file set, in PVE's key order.
    pub fn volumes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("meta", &self.meta),
            ("network", &self.network),
            ("user", &self.user),
            ("vendor", &self.vendor),
        ]
        .into_iter()
        .filter_map(|(kind, v)| v.as_deref().map(|v| (kind, v)))
    }

    /// `local:snippets/base.yml` -> `local`.
    pub fn storage_of(volume: &str) -> Option<&str> {
        volume.split_once(':').map(|(sid, _)| sid)
    }
}

impl fmt::Display for CiCustom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.volumes().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// A `startup` value: `order=2,up=30,down=60` (boot order among guests started on boot, and
/// seconds to wait after starting / before stopping it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Startup {
    pub order: Option<u32>,
    pub up: Option<u32>,
    pub down: Option<u32>,
}

impl Startup {
    /// PVE's `pve-startup-order`: `[[order=]\d+] [,up=\d+] [,down=\d+]`, each part once.
    pub fn parse(text: &str) -> Option<Startup> {
        let mut out = Startup::default();
        for (i, item) in text.split(',').enumerate() {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, v),
                None if i == 0 => ("order", item),
                None => return None,
            };
            let n: u32 = value.parse().ok()?;
            let slot = match key {
                "order" => &mut out.order,
                "up" => &mut out.up,
                "down" => &mut out.down,
                _ => return None,
            };
            if slot.replace(n).is_some() {
                return None;
            }
        }
        (out != Startup::default()).then_some(out)
    }
}

impl fmt::Display for Startup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [("order", self.order), ("up", self.up), ("down", self.down)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect();
        f.write_str(&parts.join(","))
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

/// A new volume for a disk slot: PVE's `<storage>:<size in GiB>` (fractions allowed), with
/// `format` when given (the storage's default otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDisk {
    pub storage: String,
    /// Bytes; a whole number of MiB renders exactly.
    pub size: u64,
    pub format: Option<String>,
}

impl fmt::Display for NewDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GIB: u64 = 1 << 30;
        if self.size.is_multiple_of(GIB) {
            write!(f, "{}:{}", self.storage, self.size / GIB)?;
        } else {
            write!(f, "{}:{}", self.storage, self.size as f64 / GIB as f64)?;
        }
        match &self.format {
            Some(format) => write!(f, ",format={format}"),
            None => Ok(()),
        }
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
    /// `netN`, parsed.
    pub fn net(&self, index: usize) -> Option<NetDevice> {
        NetDevice::parse(self.get(&format!("net{index}"))?)
    }

    /// `net0`, parsed.
    pub fn net0(&self) -> Option<NetDevice> {
        self.net(0)
    }

    /// The MAC of `net0` (as configured, uppercase), if any.
    pub fn net0_mac(&self) -> Option<String> {
        self.net0()?.mac_address()
    }

    /// `ipconfigN`, parsed.
    pub fn ip_config(&self, index: u8) -> Option<IpConfig> {
        IpConfig::parse(self.get(&format!("ipconfig{index}"))?)
    }

    /// `ipconfigN`'s IPv6 part, parsed.
    pub fn ip6_config(&self, index: u8) -> Option<Ip6Config> {
        Ip6Config::parse(self.get(&format!("ipconfig{index}"))?)
    }

    /// Has a cloud-init drive (a disk slot holding a `vm-<id>-cloudinit` volume): without one
    /// PVE stores `ipconfigN`, `ciuser` and the rest but no guest ever sees them.
    pub fn has_cloud_init_drive(&self) -> bool {
        const BUSES: [&str; 4] = ["ide", "sata", "scsi", "virtio"];
        self.values.iter().any(|(key, value)| {
            let bus = key.trim_end_matches(|c: char| c.is_ascii_digit());
            BUSES.contains(&bus)
                && bus.len() < key.len()
                && value.split(',').next().is_some_and(|volume| {
                    volume.ends_with("-cloudinit") || volume.contains("-cloudinit.")
                })
        })
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
        self.disk_volumes()
            .filter_map(|(_, volume, _)| Some(volume.split_once(':')?.0.to_string()))
            .collect()
    }

    /// The template disks a linked clone could not share: every disk volume (not the
    /// cloud-init drive, a CD-ROM or an unused volume) that is not a `base-` volume, as
    /// `key (volume)`. `qm template` renames a template's volumes to `base-<id>-disk-N` on
    /// storages that can share them; elsewhere they keep their `vm-` names.
    pub fn unlinkable_disks(&self) -> Vec<String> {
        self.disk_volumes()
            .filter(|(key, volume, options)| {
                let name = volume.split_once(':').map_or(*volume, |(_, n)| n);
                !key.starts_with("unused")
                    && !options.contains("media=cdrom")
                    && !name.contains("-cloudinit")
                    && !name.starts_with("base-")
                    && !name.contains("/base-")
            })
            .map(|(key, volume, _)| format!("{key} ({volume})"))
            .collect()
    }

    /// (key, volume, the options after it) of every disk slot holding a volume.
    fn disk_volumes(&self) -> impl Iterator<Item = (&str, &str, &str)> {
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
            .filter_map(|(k, v)| {
                let (volume, options) = v.split_once(',').unwrap_or((v, ""));
                if volume == "none" || volume == "cdrom" || !volume.contains(':') {
                    return None;
                }
                Some((k.as_str(), volume, options))
            })
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
    fn new_disks_in_pve_gib_notation() {
        let disk = |size: u64, format: Option<&str>| NewDisk {
            storage: "ssd".into(),
            size,
            format: format.map(str::to_string),
        };
        assert_eq!(disk(200 << 30, None).to_string(), "ssd:200");
        assert_eq!(
            disk(512 << 20, Some("raw")).to_string(),
            "ssd:0.5,format=raw"
        );
        assert_eq!(disk(1 << 20, None).to_string(), "ssd:0.0009765625");
        assert_eq!(disk(1536 << 20, None).to_string(), "ssd:1.5");
    }

    #[test]
    fn linked_clones_need_base_volumes() {
        let config = VmConfig {
            values: [
                ("scsi0", "ssd:base-9000-disk-1,size=32G"),
                ("efidisk0", "ssd:base-9000-disk-0,efitype=4m"),
                ("ide2", "ssd:vm-9000-cloudinit,media=cdrom"),
                ("ide0", "local:iso/ubuntu.iso,media=cdrom"),
                ("unused0", "ssd:vm-9000-disk-5"),
                ("scsihw", "virtio-scsi-single"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        assert!(config.unlinkable_disks().is_empty());
        assert!(config.has_cloud_init_drive());
        let mut plain = config.clone();
        plain.values.insert(
            "scsi1".into(),
            "local:9000/vm-9000-disk-2.raw,size=8G".into(),
        );
        plain.values.remove("ide2");
        assert_eq!(
            plain.unlinkable_disks(),
            ["scsi1 (local:9000/vm-9000-disk-2.raw)"]
        );
        assert!(!plain.has_cloud_init_drive());
    }

    #[test]
    fn net_options_are_replaced_in_place_or_appended() {
        let mut dev =
            NetDevice::parse("virtio=BC:24:11:4F:2A:9E,bridge=vmbr0,tag=5,rate=10").unwrap();
        dev.set_option("tag", "20");
        dev.set_option("mtu", "9000");
        assert_eq!(
            dev.to_string(),
            "virtio=BC:24:11:4F:2A:9E,bridge=vmbr0,tag=20,rate=10,mtu=9000"
        );
    }

    #[test]
    fn ip6_config_reads_and_writes_pves_keys() {
        let fixed = Ip6Config::Static {
            address: "2001:db8::21".parse().unwrap(),
            prefix: 64,
            gateway: Some("2001:db8::1".parse().unwrap()),
        };
        assert_eq!(fixed.to_string(), "ip6=2001:db8::21/64,gw6=2001:db8::1");
        assert_eq!(
            Ip6Config::parse("ip=dhcp,ip6=2001:db8::21/64,gw6=2001:db8::1"),
            Some(fixed)
        );
        assert_eq!(Ip6Config::parse("ip6=auto"), Some(Ip6Config::Auto));
        assert_eq!(Ip6Config::Dhcp.to_string(), "ip6=dhcp");
        // `ip=` is not `ip6=`, and a bad prefix is no address.
        assert_eq!(Ip6Config::parse("ip=10.0.0.5/24,gw=10.0.0.1"), None);
        assert_eq!(Ip6Config::parse("ip6=2001:db8::21/129"), None);
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
        let startup = Startup::parse("order=2,up=30").unwrap();
        assert_eq!(
            (startup.order, startup.up, startup.down),
            (Some(2), Some(30), None)
        );
        assert_eq!(startup.to_string(), "order=2,up=30");
        assert_eq!(
            Startup::parse("3,down=10").unwrap().to_string(),
            "order=3,down=10"
        );
        assert_eq!(Startup::parse("order=2,order=3"), None);
        assert_eq!(Startup::parse("first"), None);
        assert_eq!(Startup::parse("up=-1"), None);
        let custom = CiCustom {
            user: Some("local:snippets/base.yml".into()),
            vendor: Some("local:snippets/vendor.yml".into()),
            ..CiCustom::default()
        };
        assert_eq!(
            custom.to_string(),
            "user=local:snippets/base.yml,vendor=local:snippets/vendor.yml"
        );
        assert_eq!(
            CiCustom::storage_of("local:snippets/base.yml"),
            Some("local")
        );
        let fixed = IpConfig::Static {
            address: [10, 0, 10, 21].into(),
            prefix: 24,
            gateway: Some([10, 0, 10, 1].into()),
        };
        assert_eq!(fixed.to_string(), "ip=10.0.10.21/24,gw=10.0.10.1");
        assert_eq!(IpConfig::parse(&fixed.to_string()), Some(fixed));
        assert_eq!(
            IpConfig::parse("ip6=auto,ip=10.1.2.3/16"),
            Some(IpConfig::Static {
                address: [10, 1, 2, 3].into(),
                prefix: 16,
                gateway: None
            })
        );
        assert_eq!(IpConfig::parse("ip=dhcp,ip6=dhcp"), Some(IpConfig::Dhcp));
        assert_eq!(IpConfig::parse("ip6=auto"), None);
        assert_eq!(IpConfig::parse("ip=10.1.2.3/33"), None);
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
