//! The VM config keys the simulator knows: their schema (so unknown keys and bad values get PVE's
//! messages), property-string parsing (net, drives, efidisk, memory, agent), typed JSON output
//! (integers and booleans as numbers, everything else as strings) and sizes.

use indexmap::IndexMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::params::{self, Kind};

mod drive;
mod net;

pub use drive::{Drive, format_size, human_bytes, parse_drive, parse_size};
pub use net::{Net, StaticAddresses, link_local, parse_net, slaac, static_addresses};
use net::{check_ipconfig, check_net};

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
    Tags,
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
        "tags" => Tags,
        "description" | "cpu" | "boot" | "vga" | "machine" | "smbios1" | "vmgenid" | "meta"
        | "hotplug" | "startup" | "ciuser" | "cipassword" | "nameserver" | "searchdomain"
        | "cicustom" | "hookscript" | "args" | "watchdog" | "rng0" | "audio0" => Text,
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

fn split_tags(v: &str) -> impl Iterator<Item = &str> {
    v.split([';', ',', ' ']).filter(|t| !t.is_empty())
}

/// PVE_TAG_RE: `[a-z0-9_][a-z0-9_\-\+\.]*`, case-insensitive.
fn is_tag(t: &str) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphanumeric() || c == '_' || (!first && matches!(c, '-' | '+' | '.'))
    };
    let mut chars = t.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// How PVE stores `tags`: lower-cased, sorted, without duplicates, `;`-joined.
pub fn normalize_tags(v: &str) -> String {
    let mut tags: Vec<String> = split_tags(v).map(|t| t.to_lowercase()).collect();
    tags.sort();
    tags.dedup();
    tags.join(";")
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
        KeyKind::Tags => split_tags(value)
            .find(|t| !is_tag(t))
            .map_or(Ok(()), |t| {
                Err(format!(
                    "invalid format - invalid characters in tag '{t}' (use letters, digits, '_', '-', '+', '.')\n"
                ))
            }),
        KeyKind::Net => check_net(key, value),
        KeyKind::IpConfig => check_ipconfig(value),
        KeyKind::Memory => check_memory(value),
        KeyKind::Agent => check_agent(value),
        KeyKind::Drive | KeyKind::EfiDisk => parse_drive(value).map(|_| ()),
        KeyKind::SshKeys => check_sshkeys_charset(value),
    }
}

pub(super) fn invalid_key(item: &str) -> String {
    format!("invalid format - invalid key in comma-separated list property: {item}\n")
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

/// The generated user-data upgrades packages on first boot: a cloud-init drive, `ciupgrade`
/// not 0 (PVE's default is 1), and no `cicustom` user file replacing the generated one.
pub fn upgrades_on_first_boot(conf: &Config) -> bool {
    let drive = conf
        .iter()
        .any(|(k, v)| is_disk_key(k) && v.contains("cloudinit"));
    let custom_user = conf
        .get("cicustom")
        .is_some_and(|c| c.split(',').any(|kv| kv.starts_with("user=")));
    drive && conf.get("ciupgrade").map(String::as_str) != Some("0") && !custom_user
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
        assert_eq!(
            slaac([0xfd00, 1, 0, 0], "BC:24:11:4F:2A:9E").to_string(),
            "fd00:1::be24:11ff:fe4f:2a9e"
        );
    }

    #[test]
    fn net_option_values_are_checked_like_pve() {
        assert!(check_key_value("net1", "virtio,bridge=vmbr1,tag=20,mtu=9000,firewall=1").is_ok());
        assert_eq!(
            check_key_value("net1", "virtio,bridge=vmbr1,tag=4095").unwrap_err(),
            "invalid format - format error\nnet1.tag: value must have a maximum value of 4094\n"
        );
        assert_eq!(
            check_key_value("net0", "virtio,bridge=vmbr1,tag=0,mtu=70000").unwrap_err(),
            "invalid format - format error\nnet0.tag: value must have a minimum value of 1\n\
             net0.mtu: value must have a maximum value of 65520\n"
        );
        assert_eq!(
            check_key_value("net2", "e1000,bridge=vmbr1,firewall=yes").unwrap_err(),
            "invalid format - format error\nnet2.firewall: type check ('boolean') failed - got 'yes'\n"
        );
        assert!(check_key_value("net32", "virtio,bridge=vmbr1").is_err());
        assert!(check_key_value("ipconfig1", "ip=dhcp,ip6=auto").is_ok());
        assert!(check_key_value("ipconfig1", "ip6=fd00::5/64,gw6=fd00::1").is_ok());
        assert!(
            check_key_value("ipconfig1", "ip6=fd00::5")
                .unwrap_err()
                .contains("ip6: invalid format - value does not look like a valid address")
        );
        assert!(check_key_value("ipconfig1", "gw6=10.0.0.1").is_err());
    }

    #[test]
    fn cloud_init_applies_each_nics_ipconfig_only_with_a_drive() {
        let mut conf = Config::new();
        conf.insert(
            "ipconfig1".into(),
            "ip=10.0.20.5/24,ip6=fd00:20::5/64".into(),
        );
        conf.insert("ipconfig2".into(), "ip=dhcp,ip6=auto".into());
        assert_eq!(static_addresses(&conf, 1), StaticAddresses::default());
        conf.insert(
            "ide2".into(),
            "local-lvm:vm-100-cloudinit,media=cdrom".into(),
        );
        let one = static_addresses(&conf, 1);
        assert_eq!(one.v4, Some(([10, 0, 20, 5].into(), 24)));
        assert_eq!(one.v6, Some(("fd00:20::5".parse().unwrap(), 64)));
        let two = static_addresses(&conf, 2);
        assert_eq!((two.v4, two.v6, two.v6_auto), (None, None, true));
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
