//! The `netN` property string (model, MAC, bridge and options), `ipconfigN`'s checks, and the
//! guest's IPv6 link-local address derived from a MAC.

use super::{NET_KEYS, NET_MODELS, invalid_key};

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
        // print_net: the default key first, the rest sorted.
        let mut opts: Vec<&(String, String)> = self.opts.iter().collect();
        opts.sort();
        for (k, v) in opts {
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

pub(super) fn check_ipconfig(v: &str) -> Result<(), String> {
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

/// `ipconfigN`'s static addresses as the guest's cloud-init applies them: only with a
/// cloud-init drive (without one the guest never sees `ipconfigN`).
pub fn static_addresses(conf: &super::Config, index: usize) -> StaticAddresses {
    let has_drive = conf.iter().any(|(k, v)| {
        super::is_disk_key(k)
            && v.split(',')
                .next()
                .is_some_and(|vol| vol.contains("-cloudinit"))
    });
    let Some(ipconfig) = conf.get(&format!("ipconfig{index}")).filter(|_| has_drive) else {
        return StaticAddresses::default();
    };
    let field = |key: &str| {
        ipconfig
            .split(',')
            .find_map(|item| item.strip_prefix(key)?.strip_prefix('='))
    };
    let cidr = |text: &str| -> Option<(String, u8)> {
        let (addr, prefix) = text.split_once('/')?;
        Some((addr.to_string(), prefix.parse().ok()?))
    };
    let ip6 = field("ip6");
    StaticAddresses {
        v4: field("ip")
            .and_then(cidr)
            .and_then(|(a, p)| Some((a.parse().ok()?, p))),
        v6: ip6
            .and_then(cidr)
            .and_then(|(a, p)| Some((a.parse().ok()?, p))),
        v6_auto: matches!(ip6, Some("auto" | "dhcp")),
    }
}

/// What cloud-init sets on one NIC from its `ipconfigN`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StaticAddresses {
    pub v4: Option<(std::net::Ipv4Addr, u8)>,
    pub v6: Option<(std::net::Ipv6Addr, u8)>,
    /// `ip6=auto` or `ip6=dhcp`: the guest takes an address from its router.
    pub v6_auto: bool,
}

/// PVE's checks of a `netN` value's option values (its keys are `parse_net`'s): errors under
/// `<key>.<option>`, as PVE's property-string check reports them.
pub(super) fn check_net(key: &str, v: &str) -> Result<(), String> {
    use crate::sim::params::{Kind, check_value};
    let net = parse_net(v)?;
    let int = |min, max| Kind::Int {
        min: Some(min),
        max: Some(max),
    };
    let errors: String = net
        .opts
        .iter()
        .filter_map(|(option, value)| {
            let kind = match option.as_str() {
                "tag" => int(1, 4094),
                "mtu" => int(1, 65520),
                "queues" => int(0, 64),
                "firewall" | "link_down" => Kind::Bool,
                _ => return None,
            };
            check_value(kind, value)
                .err()
                .map(|e| format!("{key}.{option}: {}\n", e.trim_end()))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid format - format error\n{errors}"))
    }
}

/// An IPv6 address in `prefix` (its first 64 bits) with the EUI-64 interface id of a MAC, as
/// SLAAC forms it.
pub fn slaac(prefix: [u16; 4], mac: &str) -> std::net::Ipv6Addr {
    let link: std::net::Ipv6Addr = link_local(mac)
        .parse()
        .unwrap_or(std::net::Ipv6Addr::LOCALHOST);
    let s = link.segments();
    std::net::Ipv6Addr::new(
        prefix[0], prefix[1], prefix[2], prefix[3], s[4], s[5], s[6], s[7],
    )
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
