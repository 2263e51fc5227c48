//! The VM config keys the simulator knows: their schema (so unknown keys and bad values get PVE's
//! messages), property-string parsing (net, drives, efidisk, memory, agent), typed JSON output
//! (integers and booleans as numbers, everything else as strings) and sizes.

use indexmap::IndexMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::params::{self, Kind};

pub type Config = IndexMap<String, String>;

pub const NET_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];
const NET_KEYS: &[&str] = &[
    "macaddr",
    "bridge",
    "tag",
    "firewall",
    "link_down",
    "mtu",
    "queues",
    "rate",
    "trunks",
];
const OSTYPES: &[&str] = &[
    "other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24",
    "l26", "solaris",
];
const SCSIHW: &[&str] = &[
    "lsi",
    "lsi53c810",
    "virtio-scsi-pci",
    "virtio-scsi-single",
    "megasas",
    "pvscsi",
];
const BIOS: &[&str] = &["seabios", "ovmf"];
const CITYPE: &[&str] = &["configdrive2", "nocloud", "opennebula"];

/// Config keys written as JSON numbers (integer and boolean schema types).
const NUMERIC_KEYS: &[&str] = &[
    "cores",
    "sockets",
    "vcpus",
    "numa",
    "onboot",
    "protection",
    "template",
    "balloon",
    "kvm",
    "acpi",
    "tablet",
    "shares",
    "cpuunits",
    "ciupgrade",
    "reboot",
    "localtime",
    "freeze",
];

/// Keys a running VM applies at once (the rest stays pending until the next start).
pub fn is_hot_key(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "description"
            | "tags"
            | "onboot"
            | "protection"
            | "startup"
            | "lock"
            | "hookscript"
    ) || key.starts_with("net")
        || (is_disk_key(key) && key != "efidisk0" && key != "tpmstate0")
}

fn numbered(key: &str, prefix: &str, max: u32) -> bool {
    key.strip_prefix(prefix)
        .and_then(|n| {
            if n.len() > 1 && n.starts_with('0') {
                None
            } else {
                n.parse::<u32>().ok()
            }
        })
        .is_some_and(|n| n <= max)
}

pub fn is_disk_key(key: &str) -> bool {
    numbered(key, "scsi", 30)
        || numbered(key, "virtio", 15)
        || numbered(key, "sata", 5)
        || numbered(key, "ide", 3)
        || key == "efidisk0"
        || key == "tpmstate0"
}

pub fn drive_names() -> Vec<String> {
    let mut v = Vec::new();
    v.extend((0..=3).map(|i| format!("ide{i}")));
    v.extend((0..=5).map(|i| format!("sata{i}")));
    v.extend((0..=30).map(|i| format!("scsi{i}")));
    v.extend((0..=15).map(|i| format!("virtio{i}")));
    v.push("efidisk0".into());
    v.push("tpmstate0".into());
    v
}

/// How a config key is validated.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Simple(Kind),
    Net,
    IpConfig,
    Memory,
    Agent,
    Drive,
    EfiDisk,
    SshKeys,
    Text,
}

pub fn key_kind(key: &str) -> Option<KeyKind> {
    use KeyKind::*;
    let int = |min: i64, max: i64| {
        Simple(Kind::Int {
            min: Some(min),
            max: Some(max),
        })
    };
    Some(match key {
        "name" => Simple(Kind::DnsName),
        "description" | "tags" | "cpu" | "boot" | "vga" | "machine" | "smbios1" | "vmgenid"
        | "meta" | "hotplug" | "startup" | "ciuser" | "cipassword" | "nameserver"
        | "searchdomain" | "cicustom" | "hookscript" | "args" | "watchdog" | "rng0" | "audio0" => {
            Text
        }
        "ostype" => Simple(Kind::Enum(OSTYPES)),
        "scsihw" => Simple(Kind::Enum(SCSIHW)),
        "bios" => Simple(Kind::Enum(BIOS)),
        "citype" => Simple(Kind::Enum(CITYPE)),
        "cores" => int(1, 1024),
        "sockets" => int(1, 4),
        "vcpus" => int(1, 4096),
        "balloon" => int(0, 4_194_304),
        "cpuunits" => int(1, 262_144),
        "shares" => int(0, 50_000),
        "numa" | "onboot" | "protection" | "template" | "kvm" | "acpi" | "tablet" | "ciupgrade"
        | "reboot" | "localtime" | "freeze" => Simple(Kind::Bool),
        "memory" => Memory,
        "agent" => Agent,
        "sshkeys" => SshKeys,
        "efidisk0" => EfiDisk,
        k if numbered(k, "net", 31) => Net,
        k if numbered(k, "ipconfig", 31) => IpConfig,
        k if numbered(k, "serial", 3) || numbered(k, "usb", 4) || numbered(k, "hostpci", 15) => {
            Text
        }
        k if is_disk_key(k) => Drive,
        _ => return None,
    })
}

/// Validates a value written to `key`; `Err` is PVE's message for that parameter.
pub fn check_key_value(key: &str, value: &str) -> Result<(), String> {
    let Some(kind) = key_kind(key) else {
        return Err(
            "property is not defined in schema and the schema does not allow additional properties"
                .into(),
        );
    };
    match kind {
        KeyKind::Simple(k) => params::check_value(k, value),
        KeyKind::Text => Ok(()),
        KeyKind::Net => parse_net(value).map(|_| ()),
        KeyKind::IpConfig => check_ipconfig(value),
        KeyKind::Memory => check_memory(value),
        KeyKind::Agent => check_agent(value),
        KeyKind::Drive | KeyKind::EfiDisk => parse_drive(value).map(|_| ()),
        KeyKind::SshKeys => check_sshkeys_charset(value),
    }
}

fn invalid_key(item: &str) -> String {
    format!("invalid format - invalid key in comma-separated list property: {item}\n")
}

/// `net0`: `<model>[=<mac>],bridge=<br>[,…]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    pub model: String,
    pub mac: Option<String>,
    pub opts: Vec<(String, String)>,
}

impl Net {
    pub fn bridge(&self) -> Option<&str> {
        self.opts
            .iter()
            .find(|(k, _)| k == "bridge")
            .map(|(_, v)| v.as_str())
    }
    pub fn render(&self) -> String {
        let mut s = match &self.mac {
            Some(m) => format!("{}={m}", self.model),
            None => self.model.clone(),
        };
        for (k, v) in &self.opts {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

pub fn parse_net(v: &str) -> Result<Net, String> {
    let mut model = None;
    let mut mac = None;
    let mut opts = Vec::new();
    for item in v.split(',').filter(|s| !s.is_empty()) {
        let (k, val) = match item.split_once('=') {
            Some((k, val)) => (k, Some(val)),
            None => ("model", Some(item)),
        };
        if NET_MODELS.contains(&k) {
            model = Some(k.to_string());
            if let Some(m) = val {
                if !is_mac(m) {
                    return Err(format!(
                        "invalid format - value '{m}' does not look like a valid MAC address\n"
                    ));
                }
                mac = Some(m.to_uppercase());
            }
        } else if k == "model" {
            let m = val.unwrap_or("");
            if !NET_MODELS.contains(&m) {
                return Err(format!(
                    "invalid format - value '{m}' does not have a value in the enumeration '{}'\n",
                    NET_MODELS.join(", ")
                ));
            }
            model = Some(m.to_string());
        } else if k == "macaddr" {
            let m = val.unwrap_or("");
            if !is_mac(m) {
                return Err(format!(
                    "invalid format - value '{m}' does not look like a valid MAC address\n"
                ));
            }
            mac = Some(m.to_uppercase());
        } else if NET_KEYS.contains(&k) {
            opts.push((k.to_string(), val.unwrap_or("").to_string()));
        } else {
            return Err(invalid_key(k));
        }
    }
    let Some(model) = model else {
        return Err("invalid format - property 'model' is missing\n".into());
    };
    Ok(Net { model, mac, opts })
}

pub fn is_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn check_ipconfig(v: &str) -> Result<(), String> {
    for item in v.split(',').filter(|s| !s.is_empty()) {
        let Some((k, val)) = item.split_once('=') else {
            return Err(invalid_key(item));
        };
        match k {
            "ip" if val == "dhcp" || is_cidr(val, false) => {}
            "ip6" if matches!(val, "dhcp" | "auto") || is_cidr(val, true) => {}
            "gw" if val.parse::<std::net::Ipv4Addr>().is_ok() => {}
            "gw6" if val.parse::<std::net::Ipv6Addr>().is_ok() => {}
            "ip" | "ip6" | "gw" | "gw6" => {
                return Err(format!(
                    "invalid format - {k}: invalid format - value does not look like a valid address: {val}\n"
                ));
            }
            _ => return Err(invalid_key(k)),
        }
    }
    Ok(())
}

fn is_cidr(v: &str, v6: bool) -> bool {
    let Some((a, p)) = v.split_once('/') else {
        return false;
    };
    let Ok(p) = p.parse::<u8>() else { return false };
    if v6 {
        a.parse::<std::net::Ipv6Addr>().is_ok() && p <= 128
    } else {
        a.parse::<std::net::Ipv4Addr>().is_ok() && p <= 32
    }
}

pub fn memory_mib(v: &str) -> Option<u64> {
    let cur = v.strip_prefix("current=").unwrap_or(v);
    cur.split(',').next()?.parse().ok()
}

fn check_memory(v: &str) -> Result<(), String> {
    match memory_mib(v) {
        None => Err(format!(
            "invalid format - type check ('integer') failed - got '{v}'\n"
        )),
        Some(m) if m < 16 => {
            Err("invalid format - current: value must have a minimum value of 16\n".into())
        }
        Some(_) => Ok(()),
    }
}

pub fn agent_enabled(v: Option<&String>) -> bool {
    let Some(v) = v else { return false };
    v.split(',')
        .next()
        .map(|first| first.strip_prefix("enabled=").unwrap_or(first))
        .is_some_and(|e| e == "1")
}

fn check_agent(v: &str) -> Result<(), String> {
    for (i, item) in v.split(',').enumerate() {
        let (k, val) = match item.split_once('=') {
            Some(kv) => kv,
            None if i == 0 => ("enabled", item),
            None => return Err(invalid_key(item)),
        };
        match k {
            "enabled" | "fstrim_cloned_disks" | "freeze-fs-on-backup" | "freeze-fs" => {
                if val != "0" && val != "1" {
                    return Err(format!(
                        "invalid format - type check ('boolean') failed - got '{val}'\n"
                    ));
                }
            }
            "type" if matches!(val, "virtio" | "isa") => {}
            _ => return Err(invalid_key(k)),
        }
    }
    Ok(())
}

/// A drive property string: the volume (or a new-disk request `<storage>:<GiB>`) and options.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    pub volume: String,
    pub opts: Vec<(String, String)>,
}

const DRIVE_KEYS: &[&str] = &[
    "file",
    "media",
    "size",
    "iothread",
    "cache",
    "discard",
    "ssd",
    "backup",
    "replicate",
    "aio",
    "format",
    "efitype",
    "pre-enrolled-keys",
    "ms-cert",
    "serial",
    "wwn",
    "ro",
    "snapshot",
    "werror",
    "rerror",
    "detect_zeroes",
    "cyls",
    "heads",
    "secs",
    "trans",
    "import-from",
    "mbps",
    "iops",
    "shared",
    "product",
    "vendor",
    "queues",
    "scsiblock",
];

impl Drive {
    pub fn opt(&self, k: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn set_opt(&mut self, k: &str, v: String) {
        match self.opts.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => self.opts.push((k.to_string(), v)),
        }
    }
    pub fn is_cdrom(&self) -> bool {
        self.opt("media") == Some("cdrom")
    }
    pub fn is_cloudinit(&self) -> bool {
        self.volume.contains("-cloudinit")
    }
    /// `storage` of `storage:volname`.
    pub fn storage(&self) -> Option<&str> {
        self.volume.split_once(':').map(|(s, _)| s)
    }
    pub fn size(&self) -> Option<u64> {
        self.opt("size").and_then(parse_size)
    }
    /// `Some((storage, GiB))` for a new-disk request such as `ssd:32`.
    pub fn new_disk(&self) -> Option<(String, f64)> {
        let (sid, size) = self.volume.split_once(':')?;
        if size.is_empty() || !size.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return None;
        }
        Some((sid.to_string(), size.parse().ok()?))
    }
    pub fn render(&self) -> String {
        let mut s = self.volume.clone();
        for (k, v) in &self.opts {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

pub fn parse_drive(v: &str) -> Result<Drive, String> {
    let mut volume = None;
    let mut opts = Vec::new();
    for (i, item) in v.split(',').enumerate() {
        match item.split_once('=') {
            None if i == 0 => volume = Some(item.to_string()),
            None => return Err(invalid_key(item)),
            Some(("file", f)) => volume = Some(f.to_string()),
            Some((k, val)) if DRIVE_KEYS.contains(&k) => {
                if k == "size" && parse_size(val).is_none() {
                    return Err(format!(
                        "invalid format - size: value '{val}' does not look like a valid disk size\n"
                    ));
                }
                opts.push((k.to_string(), val.to_string()));
            }
            Some((k, _)) => return Err(invalid_key(k)),
        }
    }
    match volume {
        Some(volume) if !volume.is_empty() => Ok(Drive { volume, opts }),
        _ => Err("invalid format - property 'file' is missing\n".into()),
    }
}

/// `sshkeys` must already be URL-encoded (checked after form decoding).
pub fn check_sshkeys_charset(v: &str) -> Result<(), String> {
    let ok = v
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-%_.!~*'()".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid format - invalid urlencoded string: {v}\n"))
    }
}

/// Validates URI-unescaped keys as `ssh-keygen -l` would (type, base64 blob naming its type).
pub fn sshkeys_valid(decoded: &str) -> bool {
    use base64::Engine;
    decoded
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .all(|line| {
            let mut parts = line.split_whitespace();
            // Optional options field before the key type (authorized_keys format).
            let mut kind = parts.next().unwrap_or("");
            if !kind.starts_with("ssh-") && !kind.starts_with("ecdsa-") && !kind.starts_with("sk-")
            {
                kind = parts.next().unwrap_or("");
            }
            let Some(blob) = parts.next() else {
                return false;
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
                return false;
            };
            if bytes.len() < 4 {
                return false;
            }
            let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            bytes.len() >= 4 + n && &bytes[4..4 + n] == kind.as_bytes()
        })
}

/// `128G`, `+10G`, `4M`, `528K`, `1024` (bytes); units are powers of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    Some((n * mult as f64).round() as u64)
}

/// PVE's `format_size`: the largest unit that divides evenly.
pub fn format_size(bytes: u64) -> String {
    for (unit, m) in [
        ('T', 1u64 << 40),
        ('G', 1 << 30),
        ('M', 1 << 20),
        ('K', 1 << 10),
    ] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

/// `transferred 1.3 GiB of 128.0 GiB` style: one decimal, binary units.
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

/// The JSON form of a config: numbers for integer/boolean keys, strings for the rest.
pub fn render(conf: &Config) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in conf {
        let val = if NUMERIC_KEYS.contains(&k.as_str()) {
            v.parse::<i64>()
                .map(|n| json!(n))
                .unwrap_or_else(|_| json!(v))
        } else if k == "cipassword" {
            json!("**********")
        } else {
            json!(v)
        };
        out.insert(k.clone(), val);
    }
    out
}

/// Stand-in for the SHA-1 of the config file: 40 hex digits that change with the content.
pub fn digest(conf: &Config) -> String {
    let mut h = Sha256::new();
    for (k, v) in conf {
        h.update(k.as_bytes());
        h.update(b": ");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// IPv6 link-local address (EUI-64) of a MAC.
pub fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    if b.len() != 6 {
        return "fe80::1".into();
    }
    let groups = [
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    ];
    let addr = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, groups[0], groups[1], groups[2], groups[3]);
    addr.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_in_pve_notation() {
        assert_eq!(parse_size("128G"), Some(128 << 30));
        assert_eq!(parse_size("528K"), Some(528 << 10));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(format_size(128 << 30), "128G");
        assert_eq!(format_size(4 << 20), "4M");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn net_parsing_reports_unknown_keys_like_pve() {
        let n = parse_net("virtio,bridge=vmbr1").expect("net");
        assert_eq!(
            (n.model.as_str(), n.mac.as_deref(), n.bridge()),
            ("virtio", None, Some("vmbr1"))
        );
        let n = parse_net("virtio=bc:24:11:4f:2a:9e,bridge=vmbr1,firewall=1").expect("net");
        assert_eq!(
            n.render(),
            "virtio=BC:24:11:4F:2A:9E,bridge=vmbr1,firewall=1"
        );
        assert_eq!(
            parse_net("virtio,bridg=vmbr1").unwrap_err(),
            "invalid format - invalid key in comma-separated list property: bridg\n"
        );
    }

    #[test]
    fn link_local_is_eui64() {
        assert_eq!(link_local("BC:24:11:4F:2A:9E"), "fe80::be24:11ff:fe4f:2a9e");
    }

    #[test]
    fn sshkeys_charset_and_key_check() {
        assert!(check_sshkeys_charset("ssh-ed25519%20AAAA%2B%2F").is_ok());
        assert!(check_sshkeys_charset("ssh-ed25519 AAAA").is_err());
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqxeyx9k1Hj4Iu6aW0QZmZ7ZWl3b2NqZmJ6eGJ0YWJjZGVm deploy@ci";
        assert!(sshkeys_valid(key));
        assert!(!sshkeys_valid("ssh-ed25519 notbase64!! x"));
        assert!(!sshkeys_valid(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOqxeyx9k1Hj4Iu6aW0QZmZ7ZWl3b2NqZmJ6eGJ0YWJjZGVm"
        ));
    }

    #[test]
    fn numeric_keys_render_as_numbers() {
        let mut c = Config::new();
        c.insert("cores".into(), "4".into());
        c.insert("memory".into(), "2048".into());
        c.insert("agent".into(), "1".into());
        let r = render(&c);
        assert_eq!(r["cores"], json!(4));
        assert_eq!(r["memory"], json!("2048"));
        assert_eq!(r["agent"], json!("1"));
    }
}
