//! A VM's network devices in deploy.toml: `networks = [{ bridge, vlan, model, mtu, firewall,
//! ip | ip_pool, gateway, ip6, gateway6 }, ...]` (net0, net1, ...), or the single-NIC keys
//! (`bridge`, `vlan`, `ip`, `ip_pool`, `gateway`, `ip6`, `gateway6`) that set net0.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Addressing;

/// PVE's limit: `net0` to `net31` (and `ipconfig0` to `ipconfig31`).
pub const MAX_NICS: usize = 32;

/// One NIC: `netN` (bridge, VLAN tag, model, MTU, firewall) and `ipconfigN` (its addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub bridge: String,
    /// The VLAN tag (`tag=` on `netN`), 1 to 4094.
    pub vlan: Option<u16>,
    /// The NIC model (`virtio`, `e1000`, ...); unset keeps the template's (virtio for a new NIC).
    pub model: Option<String>,
    /// 1 to 65520 (1: the bridge's MTU).
    pub mtu: Option<u16>,
    pub firewall: Option<bool>,
    /// IPv4 (`ip` / `ip_pool`; DHCP by default). The plan turns a pool into the static address
    /// it assigned.
    pub address: Addressing,
    /// IPv4 gateway (static addresses only).
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 (`ip6`); unset leaves IPv6 to the guest.
    pub ip6: Option<Ip6Addressing>,
    /// IPv6 gateway (a static `ip6` only).
    pub gateway6: Option<Ipv6Addr>,
}

impl Nic {
    /// A DHCP NIC on `bridge`, everything else as the template has it.
    pub fn on(bridge: &str) -> Nic {
        Nic {
            bridge: bridge.to_string(),
            vlan: None,
            model: None,
            mtu: None,
            firewall: None,
            address: Addressing::Dhcp,
            gateway: None,
            ip6: None,
            gateway6: None,
        }
    }

    /// `self` with every key `over` sets taken from it.
    pub fn merged(&self, over: &NicOverrides) -> Nic {
        Nic {
            bridge: over.bridge.clone().unwrap_or_else(|| self.bridge.clone()),
            vlan: over.vlan.or(self.vlan),
            model: over.model.clone().or_else(|| self.model.clone()),
            mtu: over.mtu.or(self.mtu),
            firewall: over.firewall.or(self.firewall),
            address: over.address.unwrap_or(self.address),
            gateway: over.gateway.or(self.gateway),
            ip6: over.ip6.or(self.ip6),
            gateway6: over.gateway6.or(self.gateway6),
        }
    }

    /// The static IPv6 address, if any.
    pub fn static_ip6(&self) -> Option<Ip6Host> {
        match self.ip6 {
            Some(Ip6Addressing::Static(host)) => Some(host),
            _ => None,
        }
    }
}

/// The NIC keys one section (or one `networks` entry) set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicOverrides {
    pub bridge: Option<String>,
    pub vlan: Option<u16>,
    pub model: Option<String>,
    pub mtu: Option<u16>,
    pub firewall: Option<bool>,
    pub address: Option<Addressing>,
    pub gateway: Option<Ipv4Addr>,
    pub ip6: Option<Ip6Addressing>,
    pub gateway6: Option<Ipv6Addr>,
}

impl NicOverrides {
    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == NicOverrides::default()
    }
}

/// `ip6 = "auto" | "dhcp" | "<CIDR>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip6Addressing {
    /// SLAAC (router advertisements).
    Auto,
    Dhcp,
    Static(Ip6Host),
}

impl std::fmt::Display for Ip6Addressing {
    /// `auto`, `dhcp`, or `2001:db8:10::21/64`, as written in deploy.toml.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ip6Addressing::Auto => f.write_str("auto"),
            Ip6Addressing::Dhcp => f.write_str("dhcp"),
            Ip6Addressing::Static(host) => host.fmt(f),
        }
    }
}

/// An IPv6 host address with its prefix length: `2001:db8:10::21/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ip6Host {
    pub ip: Ipv6Addr,
    pub prefix: u8,
}

impl Ip6Host {
    pub fn subnet(&self) -> super::Cidr {
        super::Cidr {
            addr: self.ip.into(),
            prefix: self.prefix,
        }
    }
}

impl std::fmt::Display for Ip6Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}
