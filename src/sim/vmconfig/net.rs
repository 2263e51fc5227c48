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

/// ipconfig0's static IPv4 address and prefix as the guest's cloud-init applies it: only with a
/// cloud-init drive (without one the guest never sees ipconfig0).
pub fn static_ipv4(conf: &super::Config) -> Option<(std::net::Ipv4Addr, u8)> {
    let has_drive = conf.iter().any(|(k, v)| {
        super::is_disk_key(k)
            && v.split(',')
                .next()
                .is_some_and(|vol| vol.contains("-cloudinit"))
    });
    if !has_drive {
        return None;
    }
    let ip = conf
        .get("ipconfig0")?
        .split(',')
        .find_map(|item| item.strip_prefix("ip="))?;
    let (addr, prefix) = ip.split_once('/')?;
    Some((addr.parse().ok()?, prefix.parse().ok()?))
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
