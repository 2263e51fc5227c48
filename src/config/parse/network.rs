//! The network and cloud-init keys of `[defaults]` and `[vm_configs."name"]`: the NICs
//! (`networks`, or the single-NIC keys for net0: `bridge`, `vlan`, `ip` or `ip_pool` to take one
//! from, `gateway`, `ip6`, `gateway6`), `nameservers`, `searchdomain`, and `cicustom`'s snippet
//! files (whether they exist is the plan's check). Whether addresses fit their subnets and each
//! other is the plan's check too: a VM's `ip` and the defaults' `gateway` only meet there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use toml::de::DeValue;

use super::*;
use crate::config::{Addressing, Ip6Addressing, Ip6Host, MAX_NICS, Nic, NicOverrides};
use crate::pve::CiCustom;

/// The keys of one `networks` entry.
pub(in crate::config) const NIC_KEYS: &[&str] = &[
    "bridge", "vlan", "model", "mtu", "firewall", "ip", "ip_pool", "gateway", "ip6", "gateway6",
];
/// The keys that set net0 directly in a section (the single-NIC form).
pub(in crate::config) const NIC0_KEYS: &[&str] = &[
    "bridge", "vlan", "ip", "ip_pool", "gateway", "ip6", "gateway6",
];
/// PVE's NIC models.
const NIC_MODELS: &[&str] = &[
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

/// The network keys a section set.
pub(super) struct NetworkOverrides {
    pub networks: Option<Vec<Nic>>,
    pub nic0: NicOverrides,
    pub nameservers: Option<Vec<IpAddr>>,
    pub searchdomain: Option<String>,
    pub cicustom: Option<CiCustom>,
}

impl Doc<'_> {
    /// `None` when one of the keys was bad (the problem is recorded).
    pub(super) fn network(&mut self, s: &Section<'_, '_>) -> Option<NetworkOverrides> {
        let before = self.problems.len();
        let nic0 = self.nic_keys(s);
        let networks = self.field(s, "networks", |v| match v {
            DeValue::Array(items) if items.is_empty() => Err(bad_hint(
                "is empty",
                "list at least one NIC, such as networks = [{ bridge = \"vmbr1\" }], or leave networks out",
            )),
            DeValue::Array(items) if items.len() > MAX_NICS => Err(bad(format!(
                "has {} NICs; PVE allows net0 to net{} ({MAX_NICS} at most)",
                items.len(),
                MAX_NICS - 1
            ))),
            DeValue::Array(_) => Ok(()),
            other => Err(bad_hint(
                format!("expected an array of tables, found {}", type_name(other)),
                "write networks = [{ bridge = \"vmbr1\" }, { bridge = \"vmbr2\", vlan = 20 }]",
            )),
        });
        let networks = networks.and_then(|()| self.networks(s));
        if s.get("networks").is_some() {
            for key in NIC0_KEYS {
                if let Some(value) = s.get(key) {
                    self.at_value(
                        s.key_path(key),
                        value,
                        bad_hint(
                            "set together with networks",
                            format!("{key} here is net0's short form; move it into the first entry of networks (networks = [{{ {key} = ... }}, ...]), or drop networks"),
                        ),
                    );
                }
            }
        }
        let nameservers = self.field(s, "nameservers", |v| {
            let DeValue::Array(items) = v else {
                return Err(bad_hint(
                    format!("expected an array of addresses, found {}", type_name(v)),
                    "write nameservers = [\"10.0.10.2\", \"1.1.1.1\"]",
                ));
            };
            let mut out = Vec::new();
            for item in items.iter() {
                let Some(text) = item.get_ref().as_str() else {
                    return Err(expected("addresses (strings)", item.get_ref()));
                };
                let ip = text.parse::<IpAddr>().map_err(|_| {
                    bad_hint(
                        format!("\"{text}\" is not an IP address"),
                        "list the DNS servers' addresses, such as \"10.0.10.2\"",
                    )
                })?;
                out.push(ip);
            }
            if out.is_empty() {
                return Err(bad_hint(
                    "is empty",
                    "list at least one DNS server, or leave nameservers out to keep the host's",
                ));
            }
            Ok(out)
        });
        let searchdomain =
            self.checked_string(s, "searchdomain", "a DNS domain", formats::check_dns_name);
        let cicustom = self.field(s, "cicustom", cicustom);
        if self.problems.len() > before {
            return None;
        }
        Some(NetworkOverrides {
            networks,
            nic0,
            nameservers,
            searchdomain,
            cicustom,
        })
    }

    /// `networks = [{ bridge = "vmbr1", ... }, ...]`: every entry names its bridge.
    fn networks(&mut self, s: &Section<'_, '_>) -> Option<Vec<Nic>> {
        let Some(DeValue::Array(items)) = s.get("networks").map(|v| v.get_ref()) else {
            return None;
        };
        let before = self.problems.len();
        let mut nics = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", s.key_path("networks"));
            let DeValue::Table(table) = item.get_ref() else {
                self.at_value(
                    path,
                    item,
                    bad_hint(
                        format!("expected a table, found {}", type_name(item.get_ref())),
                        "write each NIC as { bridge = \"vmbr1\", vlan = 20 }",
                    ),
                );
                continue;
            };
            let entry = Section {
                path,
                table: Some(table),
                line: Some(self.line(item.span().start)),
            };
            self.unknown_keys(&entry, NIC_KEYS);
            let o = self.nic_keys(&entry);
            if o.bridge.is_none() && entry.get("bridge").is_none() {
                self.missing(
                    entry.key_path("bridge"),
                    entry.line,
                    format!("name the bridge net{i} is on, such as bridge = \"vmbr1\""),
                );
            }
            if let Some(bridge) = &o.bridge {
                nics.push(Nic::on(bridge).merged(&o));
            }
        }
        (self.problems.len() == before).then_some(nics)
    }

    /// The NIC keys present in `s` (a section, or one `networks` entry).
    fn nic_keys(&mut self, s: &Section<'_, '_>) -> NicOverrides {
        let bridge = self.checked_string(s, "bridge", "a bridge name", formats::check_bridge);
        let vlan = self
            .integer(
                s,
                "vlan",
                1,
                4094,
                Some("a VLAN tag is 1 to 4094 (PVE's tag range)"),
            )
            .map(|n| n as u16);
        let model = self.string_with(s, "model", "a NIC model", |m| {
            if NIC_MODELS.contains(&m) {
                Ok(m.to_string())
            } else {
                Err(bad(format!(
                    "not a NIC model PVE knows; allowed: {}",
                    NIC_MODELS.join(", ")
                )))
            }
        });
        let mtu = self
            .integer(
                s,
                "mtu",
                1,
                65520,
                Some("PVE's mtu is 1 to 65520 (1: the bridge's own MTU)"),
            )
            .map(|n| n as u16);
        let firewall = self.boolean(s, "firewall");
        let ip = self.string_with(s, "ip", "an address such as \"10.0.10.21/24\"", |text| {
            if text == "dhcp" {
                return Ok(Addressing::Dhcp);
            }
            formats::parse_host_address(text)
                .map(Addressing::Static)
                .map_err(|allowed| {
                    bad_hint(
                        format!("not an address; expected {allowed}"),
                        "write ip = \"dhcp\", or the address with its subnet's prefix length",
                    )
                })
        });
        let pool = self.string_with(
            s,
            "ip_pool",
            "a range such as \"10.0.10.20-10.0.10.69/24\"",
            |text| {
                formats::parse_address_pool(text)
                    .map(Addressing::Pool)
                    .map_err(|allowed| bad(format!("not an address range; expected {allowed}")))
            },
        );
        if let (Some(_), Some(value)) = (s.get("ip"), s.get("ip_pool")) {
            self.at_value(
                s.key_path("ip_pool"),
                value,
                bad_hint(
                    "set together with ip",
                    "keep ip for a fixed address or ip_pool to take one from a range, not both",
                ),
            );
        }
        let gateway = self.string_with(s, "gateway", "an IPv4 address", |text| {
            text.parse::<Ipv4Addr>().map_err(|_| {
                bad_hint(
                    "not an IPv4 address",
                    "write the router's address, such as gateway = \"10.0.10.1\"",
                )
            })
        });
        let ip6 = self.string_with(s, "ip6", "\"auto\", \"dhcp\" or an IPv6 CIDR", parse_ip6);
        let gateway6 = self.string_with(s, "gateway6", "an IPv6 address", |text| {
            text.parse::<Ipv6Addr>().map_err(|_| {
                bad_hint(
                    "not an IPv6 address (PVE: value does not look like a valid address)",
                    "write the router's address, such as gateway6 = \"2001:db8:10::1\"",
                )
            })
        });
        if let (Some(Ip6Addressing::Auto | Ip6Addressing::Dhcp), Some(value)) =
            (ip6, s.get("gateway6"))
        {
            self.at_value(
                s.key_path("gateway6"),
                value,
                bad_hint(
                    "set with an automatic ip6",
                    "the router advertises the IPv6 gateway with ip6 = \"auto\" or \"dhcp\"; drop gateway6, or give ip6 a static address",
                ),
            );
        }
        NicOverrides {
            bridge,
            vlan,
            model,
            mtu,
            firewall,
            address: ip.or(pool),
            gateway,
            ip6,
            gateway6,
        }
    }
}

/// `auto`, `dhcp`, or an IPv6 host address with its prefix length.
fn parse_ip6(text: &str) -> Result<Ip6Addressing, Bad> {
    match text {
        "auto" => return Ok(Ip6Addressing::Auto),
        "dhcp" => return Ok(Ip6Addressing::Dhcp),
        _ => {}
    }
    const HINT: &str = "write ip6 = \"auto\" (SLAAC), \"dhcp\", or an address with its prefix length such as \"2001:db8:10::21/64\"";
    let host = text.split_once('/').and_then(|(ip, prefix)| {
        Some(Ip6Host {
            ip: ip.parse().ok()?,
            prefix: prefix.parse().ok().filter(|p| (1..=128).contains(p))?,
        })
    });
    match host {
        Some(host)
            if host.ip.is_unspecified() || host.ip.is_loopback() || host.ip.is_multicast() =>
        {
            Err(bad_hint(format!("{} is not a host address", host.ip), HINT))
        }
        Some(host) => Ok(Ip6Addressing::Static(host)),
        None => Err(bad_hint(
            "not \"auto\", \"dhcp\" or an IPv6 CIDR (PVE: value does not look like a valid address)",
            HINT,
        )),
    }
}

/// `{ user = "local:snippets/base.yml", vendor = ..., network = ..., meta = ... }`.
fn cicustom(v: &DeValue<'_>) -> Result<CiCustom, Bad> {
    const HINT: &str = "write cicustom = { user = \"local:snippets/base.yml\" } (kinds: user, vendor, network, meta)";
    let DeValue::Table(table) = v else {
        return Err(bad_hint(
            format!("expected a table, found {}", type_name(v)),
            HINT,
        ));
    };
    let mut out = CiCustom::default();
    for (key, value) in table.iter() {
        let kind: &str = key.get_ref();
        let Some(volume) = value.get_ref().as_str() else {
            return Err(bad_hint(format!("{kind}: expected a volume string"), HINT));
        };
        let well_formed = volume.split_once(":snippets/").is_some_and(|(sid, file)| {
            formats::check_storage_id(sid).is_ok()
                && !file.is_empty()
                && !file.contains(['/', ',', '=', ' '])
        });
        if !well_formed {
            return Err(bad_hint(
                format!("{kind}: \"{volume}\" is not a snippet volume"),
                "name it <storage>:snippets/<file>, such as \"local:snippets/base.yml\"",
            ));
        }
        let slot = match kind {
            "user" => &mut out.user,
            "vendor" => &mut out.vendor,
            "network" => &mut out.network,
            "meta" => &mut out.meta,
            _ => {
                return Err(bad_hint(
                    format!("\"{kind}\" is not a cloud-init file kind"),
                    HINT,
                ));
            }
        };
        *slot = Some(volume.to_string());
    }
    if out.volumes().next().is_none() {
        return Err(bad_hint("is empty", HINT));
    }
    Ok(out)
}
