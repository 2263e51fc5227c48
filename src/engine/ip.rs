//! Which of the guest's addresses is "the" IP.
//!
//! 1. Interfaces: the one(s) whose MAC is net0's (case-insensitive); if none matches, or net0's
//!    MAC is unknown, all of them.
//! 2. Dropped: interfaces named like container, VM or VPN plumbing (see `IGNORED_PREFIXES`), and
//!    loopback, link-local, multicast, unspecified and broadcast addresses.
//! 3. Order: the wanted family first (IPv4 unless `checks.ipv6`), inside it addresses in
//!    `checks.ip_prefer` first (default RFC 1918), then the agent's own order.
//! 4. The chosen IP is the best address of the wanted family. An address of the other family
//!    is listed as a candidate but never chosen: IPv6 SLAAC often appears before the DHCPv4
//!    lease, and choosing it would end the wait early with an address the operator did not
//!    want. An IPv6-only guest needs `ipv6 = true`.

use std::net::IpAddr;

use crate::config::{ChecksConfig, Cidr};
use crate::pve::AgentInterface;

/// Interface name prefixes that never carry the VM's own address: container bridges and
/// overlays (docker0, br-<id>, veth*, cni0, flannel.1, cali*, cilium_*, weave, kube-ipvs0,
/// vxlan.calico, podman0, lxcbr0, lxdbr0), libvirt's virbr0, and tunnels (tun0, tap0, wg0,
/// tailscale0, zt*). A PVE VM's net0 is always a plain ethernet NIC (eth0, ens18, enp6s18, or a
/// guest bridge/bond over it such as br0 or bond0), so none of these can be it.
pub const IGNORED_PREFIXES: &[&str] = &[
    "docker",
    "br-",
    "veth",
    "cni",
    "flannel",
    "cali",
    "cilium",
    "weave",
    "kube-",
    "vxlan",
    "podman",
    "virbr",
    "lxc",
    "lxdbr",
    "tun",
    "tap",
    "wg",
    "tailscale",
    "zt",
];

/// The IP rules of `[checks]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpRules {
    pub prefer: Vec<Cidr>,
    /// Want IPv6 rather than IPv4.
    pub ipv6: bool,
}

/// The outcome of one look at the guest's interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpChoice {
    /// The address to use, if one of the wanted family survived the rules.
    pub ip: Option<IpAddr>,
    /// Every address that survived filtering, best first (both families).
    pub candidates: Vec<IpAddr>,
}

impl IpRules {
    pub fn from_checks(checks: &ChecksConfig) -> IpRules {
        IpRules {
            prefer: checks.ip_prefer.clone(),
            ipv6: checks.ipv6,
        }
    }

    pub fn select(&self, interfaces: &[AgentInterface], net0_mac: Option<&str>) -> IpChoice {
        let wanted_mac = net0_mac.map(normalize_mac);
        let on_net0: Vec<&AgentInterface> = match &wanted_mac {
            Some(mac) => interfaces
                .iter()
                .filter(|i| i.hardware_address.as_deref().map(normalize_mac).as_ref() == Some(mac))
                .collect(),
            None => Vec::new(),
        };
        let chosen: Vec<&AgentInterface> = if on_net0.is_empty() {
            interfaces.iter().collect()
        } else {
            on_net0
        };

        let mut candidates: Vec<IpAddr> = Vec::new();
        for interface in chosen
            .into_iter()
            .filter(|i| !is_ignored_interface(&i.name))
        {
            for address in &interface.ip_addresses {
                if let Some(ip) = parse_address(&address.ip_address)
                    && is_usable(ip)
                    && !candidates.contains(&ip)
                {
                    candidates.push(ip);
                }
            }
        }
        // Stable sort: the agent's order breaks ties.
        candidates.sort_by_key(|ip| (!self.is_wanted_family(*ip), !self.is_preferred(*ip)));
        IpChoice {
            ip: candidates
                .first()
                .copied()
                .filter(|ip| self.is_wanted_family(*ip)),
            candidates,
        }
    }

    fn is_wanted_family(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.ipv6
    }

    fn is_preferred(&self, ip: IpAddr) -> bool {
        self.prefer.iter().any(|range| range.contains(ip))
    }
}

/// What the guest's NIC with a static address reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticSeen {
    /// The NIC with that MAC carries the address.
    Found,
    /// The NIC carries other addresses of the same family and not the wanted one.
    Other(Vec<IpAddr>),
    /// No such NIC yet, or no address of that family on it.
    Nothing,
}

/// Looks for `want` on the interface whose MAC is `mac`: only that NIC counts, since the same
/// address on another NIC would mean the guest's cloud-init applied it to the wrong device.
pub fn static_address_seen(interfaces: &[AgentInterface], mac: &str, want: IpAddr) -> StaticSeen {
    let seen = addresses_on(interfaces, mac);
    if seen.contains(&want) {
        return StaticSeen::Found;
    }
    let others: Vec<IpAddr> = (seen.into_iter())
        .filter(|ip| ip.is_ipv4() == want.is_ipv4())
        .collect();
    if others.is_empty() {
        StaticSeen::Nothing
    } else {
        StaticSeen::Other(others)
    }
}

/// The usable addresses (no loopback, link-local, multicast) on the interface whose MAC is
/// `mac`, in the agent's order, each once.
pub fn addresses_on(interfaces: &[AgentInterface], mac: &str) -> Vec<IpAddr> {
    let mac = normalize_mac(mac);
    let mut out = Vec::new();
    for interface in interfaces
        .iter()
        .filter(|i| i.hardware_address.as_deref().map(normalize_mac) == Some(mac.clone()))
    {
        for address in &interface.ip_addresses {
            if let Some(ip) = parse_address(&address.ip_address)
                && is_usable(ip)
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        }
    }
    out
}

/// `BC:24:11:4F:2A:9E`, `bc-24-11-4f-2a-9e` and `bc24114f2a9e` are the same MAC.
fn normalize_mac(mac: &str) -> String {
    mac.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn is_ignored_interface(name: &str) -> bool {
    IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The agent's text, without an IPv6 zone (`fe80::1%eth0`); IPv4-mapped IPv6 becomes IPv4.
fn parse_address(text: &str) -> Option<IpAddr> {
    let bare = text.split('%').next()?.trim();
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn is_usable(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::AgentIpAddress;

    fn iface(name: &str, mac: Option<&str>, ips: &[&str]) -> AgentInterface {
        AgentInterface {
            name: name.to_string(),
            hardware_address: mac.map(str::to_string),
            ip_addresses: ips
                .iter()
                .map(|ip| AgentIpAddress {
                    ip_address_type: if ip.contains(':') { "ipv6" } else { "ipv4" }.to_string(),
                    ip_address: ip.to_string(),
                    prefix: Some(if ip.contains(':') { 64 } else { 24 }),
                })
                .collect(),
        }
    }

    #[test]
    fn a_static_address_counts_only_on_its_own_nic() {
        let mac = "BC:24:11:00:00:01";
        let want: IpAddr = "10.0.10.21".parse().unwrap();
        let found = [iface(
            "ens18",
            Some("bc:24:11:00:00:01"),
            &["10.0.10.21", "fe80::1"],
        )];
        assert_eq!(static_address_seen(&found, mac, want), StaticSeen::Found);
        let v6: IpAddr = "2001:db8::21".parse().unwrap();
        let dual = [iface(
            "ens18",
            Some("bc:24:11:00:00:01"),
            &["10.0.10.21", "2001:db8::21", "fe80::1"],
        )];
        assert_eq!(static_address_seen(&dual, mac, v6), StaticSeen::Found);
        // An IPv4 address is no answer for an IPv6 one.
        assert_eq!(static_address_seen(&found, mac, v6), StaticSeen::Nothing);
        let elsewhere = [
            iface("ens18", Some("bc:24:11:00:00:01"), &["fe80::1"]),
            iface("ens19", Some("bc:24:11:00:00:02"), &["10.0.10.21"]),
        ];
        assert_eq!(
            static_address_seen(&elsewhere, mac, want),
            StaticSeen::Nothing
        );
        let other = [iface(
            "ens18",
            Some("BC-24-11-00-00-01"),
            &["10.20.0.5", "169.254.1.1"],
        )];
        assert_eq!(
            static_address_seen(&other, mac, want),
            StaticSeen::Other(vec!["10.20.0.5".parse().unwrap()])
        );
    }

    fn rules() -> IpRules {
        IpRules {
            prefer: Cidr::rfc1918(),
            ipv6: false,
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    /// What a typical Ubuntu guest with docker reports.
    fn guest() -> Vec<AgentInterface> {
        vec![
            iface("lo", Some("00:00:00:00:00:00"), &["127.0.0.1", "::1"]),
            iface(
                "ens18",
                Some("bc:24:11:4f:2a:9e"),
                &["192.168.1.50", "fe80::be24:11ff:fe4f:2a9e", "2001:db8::50"],
            ),
            iface("docker0", Some("02:42:ac:11:00:01"), &["172.17.0.1"]),
            iface(
                "veth1a2b3c",
                Some("aa:bb:cc:dd:ee:ff"),
                &["fe80::a8bb:ccff:fedd:eeff"],
            ),
        ]
    }

    #[test]
    fn the_net0_mac_picks_the_interface_case_insensitively() {
        let mut interfaces = guest();
        // Another NIC with a preferred address that is not net0.
        interfaces.push(iface("ens19", Some("bc:24:11:00:00:01"), &["10.9.9.9"]));
        let choice = rules().select(&interfaces, Some("BC:24:11:4F:2A:9E"));
        assert_eq!(choice.ip, Some("192.168.1.50".parse().unwrap()));
        assert_eq!(choice.candidates, ips(&["192.168.1.50", "2001:db8::50"]));
    }

    #[test]
    fn without_a_mac_match_container_and_link_local_addresses_are_dropped() {
        for mac in [None, Some("de:ad:be:ef:00:00")] {
            let choice = rules().select(&guest(), mac);
            assert_eq!(choice.ip, Some("192.168.1.50".parse().unwrap()), "{mac:?}");
            assert_eq!(
                choice.candidates,
                ips(&["192.168.1.50", "2001:db8::50"]),
                "{mac:?}"
            );
        }
    }

    #[test]
    fn every_plumbing_interface_is_ignored() {
        let names = [
            "docker0",
            "br-5f3a9c",
            "veth9",
            "cni0",
            "cni-podman0",
            "flannel.1",
            "cali12ab",
            "cilium_host",
            "weave",
            "kube-ipvs0",
            "vxlan.calico",
            "podman0",
            "virbr0",
            "lxcbr0",
            "lxdbr0",
            "tun0",
            "tap0",
            "wg0",
            "tailscale0",
            "ztabcdef",
        ];
        let interfaces: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| iface(n, None, &[&format!("10.0.{i}.1")]))
            .collect();
        assert_eq!(rules().select(&interfaces, None), IpChoice::default());
        // A guest bridge or bond over net0 is not plumbing.
        for name in ["br0", "bond0", "eth0.100", "enp6s18"] {
            let choice = rules().select(&[iface(name, None, &["10.1.1.1"])], None);
            assert_eq!(choice.ip, Some("10.1.1.1".parse().unwrap()), "{name}");
        }
    }

    #[test]
    fn unusable_addresses_are_dropped() {
        let interfaces = [iface(
            "eth0",
            None,
            &[
                "127.0.0.2",
                "169.254.10.1",
                "224.0.0.1",
                "0.0.0.0",
                "255.255.255.255",
                "::",
                "::1",
                "fe80::1%eth0",
                "ff02::1",
                "not-an-ip",
                "",
            ],
        )];
        assert_eq!(rules().select(&interfaces, None), IpChoice::default());
    }

    #[test]
    fn preferred_ranges_come_first_within_a_family() {
        let interfaces = [
            iface("eth0", None, &["203.0.113.7", "2001:db8::7"]),
            iface("eth1", None, &["fd00::7", "10.20.30.40"]),
        ];
        let choice = rules().select(&interfaces, None);
        assert_eq!(choice.ip, Some("10.20.30.40".parse().unwrap()));
        assert_eq!(
            choice.candidates,
            ips(&["10.20.30.40", "203.0.113.7", "2001:db8::7", "fd00::7"])
        );
        // A custom preference (a public range) overrides the default.
        let custom = IpRules {
            prefer: vec!["203.0.113.0/24".parse().unwrap()],
            ipv6: false,
        };
        assert_eq!(
            custom.select(&interfaces, None).ip,
            Some("203.0.113.7".parse().unwrap())
        );
        // No preference: the agent's order.
        let none = IpRules {
            prefer: vec![],
            ipv6: false,
        };
        assert_eq!(
            none.select(&interfaces, None).ip,
            Some("203.0.113.7".parse().unwrap())
        );
    }

    #[test]
    fn the_ipv6_option_wants_ipv6() {
        let interfaces = [iface(
            "eth0",
            None,
            &["192.168.1.5", "2001:db8::5", "fd00::5"],
        )];
        let v6 = IpRules {
            prefer: vec!["fd00::/8".parse().unwrap()],
            ipv6: true,
        };
        let choice = v6.select(&interfaces, None);
        assert_eq!(choice.ip, Some("fd00::5".parse().unwrap()));
        assert_eq!(
            choice.candidates,
            ips(&["fd00::5", "2001:db8::5", "192.168.1.5"])
        );
        // IPv4 wanted: a SLAAC address alone is listed but not chosen (keep waiting for DHCP).
        let slaac_only = [iface("eth0", None, &["2001:db8::5", "fe80::5"])];
        let choice = rules().select(&slaac_only, None);
        assert_eq!(choice.ip, None);
        assert_eq!(choice.candidates, ips(&["2001:db8::5"]));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let choice = rules().select(&[iface("eth0", None, &["::ffff:10.0.0.8"])], None);
        assert_eq!(choice.ip, Some("10.0.0.8".parse().unwrap()));
    }

    #[test]
    fn missing_hardware_addresses_and_empty_lists() {
        // The agent may omit hardware-address; then no MAC can match and all interfaces count.
        let interfaces = [
            iface("eth0", None, &["10.0.0.3"]),
            iface("lo", None, &["127.0.0.1"]),
        ];
        let choice = rules().select(&interfaces, Some("bc:24:11:4f:2a:9e"));
        assert_eq!(choice.ip, Some("10.0.0.3".parse().unwrap()));
        assert_eq!(
            rules().select(&[], Some("bc:24:11:4f:2a:9e")),
            IpChoice::default()
        );
        assert_eq!(
            rules().select(&[iface("eth0", None, &[])], None),
            IpChoice::default()
        );
    }

    #[test]
    fn net0_without_an_address_yet_means_no_ip_even_if_others_have_one() {
        // net0 matched but has no lease yet: docker0's 172.17.0.1 must not be taken instead.
        let interfaces = [
            iface("ens18", Some("bc:24:11:4f:2a:9e"), &["fe80::1"]),
            iface("eth1", Some("bc:24:11:00:00:02"), &["172.16.5.5"]),
        ];
        let choice = rules().select(&interfaces, Some("BC:24:11:4F:2A:9E"));
        assert_eq!(choice, IpChoice::default());
    }

    #[test]
    fn duplicates_are_listed_once() {
        let interfaces = [
            iface("br0", Some("bc:24:11:4f:2a:9e"), &["10.0.0.3"]),
            iface("eth0", Some("BC-24-11-4F-2A-9E"), &["10.0.0.3"]),
        ];
        let choice = rules().select(&interfaces, Some("bc:24:11:4f:2a:9e"));
        assert_eq!(choice.candidates, ips(&["10.0.0.3"]));
    }

    #[test]
    fn built_from_checks() {
        let config = crate::config::Config::parse(
            "[proxmox]\nurl = \"https://pve:8006\"\ntoken_id = \"root@pam!ab\"\n[rollout]\nnodes = [\"pve\"]\n[checks]\nipv6 = true\nip_prefer = [\"fd00::/8\"]\n",
            "t.toml",
        )
        .unwrap();
        let rules = IpRules::from_checks(&config.checks);
        assert!(rules.ipv6);
        assert_eq!(rules.prefer, vec!["fd00::/8".parse::<Cidr>().unwrap()]);
    }
}
