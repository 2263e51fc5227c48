//! Addresses in deploy.toml: a VM's IPv4 addressing (DHCP, a static address, a pool), and the
//! CIDR ranges the IP rules prefer.

use std::net::{IpAddr, Ipv4Addr};

use super::formats;

/// How a VM's net0 gets its IPv4 address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Addressing {
    #[default]
    Dhcp,
    /// `ip = "10.0.10.21/24"`.
    Static(HostAddress),
    /// `ip_pool = "10.0.10.20-10.0.10.69/24"`: the plan hands out its addresses in order.
    Pool(AddressPool),
}

impl std::fmt::Display for Addressing {
    /// `dhcp`, `10.0.10.21/24`, or the pool `10.0.10.20-10.0.10.69/24`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addressing::Dhcp => f.write_str("dhcp"),
            Addressing::Static(host) => host.fmt(f),
            Addressing::Pool(pool) => pool.fmt(f),
        }
    }
}

/// A host address with its subnet's prefix length: `10.0.10.21/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostAddress {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl HostAddress {
    /// The subnet it lies in.
    pub fn subnet(&self) -> Cidr {
        Cidr {
            addr: IpAddr::V4(self.ip),
            prefix: self.prefix,
        }
    }
}

impl std::fmt::Display for HostAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// An inclusive range of IPv4 host addresses inside one subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub prefix: u8,
}

impl AddressPool {
    /// How many addresses it holds.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Its addresses in order.
    pub fn addresses(&self) -> impl Iterator<Item = HostAddress> + '_ {
        (u32::from(self.first)..=u32::from(self.last)).map(|ip| HostAddress {
            ip: ip.into(),
            prefix: self.prefix,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&ip)
    }
}

impl std::fmt::Display for AddressPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}/{}", self.first, self.last, self.prefix)
    }
}

/// An address range such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
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
