//! `ipconfigN` (cloud-init's network setup of one NIC) as typed values: its IPv4 part and its
//! IPv6 part, parsed and printed with PVE's keys (`ip`, `gw`, `ip6`, `gw6`).

use std::fmt;

/// An `ipconfigN` value (cloud-init's network setup of the guest): IPv4 by DHCP, or a static
/// address with its prefix length and an optional gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// IPv4 by DHCP: `ip=dhcp`.
    Dhcp,
    /// `ip=10.0.10.21/24,gw=10.0.10.1`.
    Static {
        address: std::net::Ipv4Addr,
        prefix: u8,
        gateway: Option<std::net::Ipv4Addr>,
    },
}

impl IpConfig {
    /// Reads PVE's `ipconfigN` text (IPv6 keys ignored); `None` without an IPv4 `ip=` or with
    /// one PVE would not have accepted.
    pub fn parse(text: &str) -> Option<IpConfig> {
        let mut ip = None;
        let mut gateway = None;
        for item in text.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once('=')?;
            match key {
                "ip" => ip = Some(value),
                "gw" => gateway = Some(value.parse().ok()?),
                _ => {}
            }
        }
        match ip? {
            "dhcp" => Some(IpConfig::Dhcp),
            cidr => {
                let (address, prefix) = cidr.split_once('/')?;
                let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
                Some(IpConfig::Static {
                    address: address.parse().ok()?,
                    prefix,
                    gateway,
                })
            }
        }
    }

    /// The static address, if any.
    pub fn static_address(&self) -> Option<std::net::Ipv4Addr> {
        match self {
            IpConfig::Dhcp => None,
            IpConfig::Static { address, .. } => Some(*address),
        }
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpConfig::Dhcp => f.write_str("ip=dhcp"),
            IpConfig::Static {
                address,
                prefix,
                gateway,
            } => {
                write!(f, "ip={address}/{prefix}")?;
                match gateway {
                    Some(gw) => write!(f, ",gw={gw}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `ipconfigN`'s IPv6 part: `ip6=auto` (SLAAC), `ip6=dhcp`, or a static address with its
/// prefix length and an optional `gw6=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip6Config {
    Auto,
    Dhcp,
    Static {
        address: std::net::Ipv6Addr,
        prefix: u8,
        gateway: Option<std::net::Ipv6Addr>,
    },
}

impl Ip6Config {
    /// Reads the `ip6=` and `gw6=` of PVE's `ipconfigN` text; `None` without an `ip6=` or with
    /// one PVE would not have accepted.
    pub fn parse(text: &str) -> Option<Ip6Config> {
        let field = |key: &str| {
            text.split(',')
                .find_map(|item| item.strip_prefix(key)?.strip_prefix('='))
        };
        match field("ip6")? {
            "auto" => Some(Ip6Config::Auto),
            "dhcp" => Some(Ip6Config::Dhcp),
            cidr => {
                let (address, prefix) = cidr.split_once('/')?;
                Some(Ip6Config::Static {
                    address: address.parse().ok()?,
                    prefix: prefix.parse().ok().filter(|p| *p <= 128)?,
                    gateway: field("gw6").and_then(|gw| gw.parse().ok()),
                })
            }
        }
    }
}

impl fmt::Display for Ip6Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ip6Config::Auto => f.write_str("ip6=auto"),
            Ip6Config::Dhcp => f.write_str("ip6=dhcp"),
            Ip6Config::Static {
                address,
                prefix,
                gateway,
            } => {
                write!(f, "ip6={address}/{prefix}")?;
                match gateway {
                    Some(gw) => write!(f, ",gw6={gw}"),
                    None => Ok(()),
                }
            }
        }
    }
}
