//! The network and cloud-init keys of `[defaults]` and `[vm_configs."name"]`: net0's IPv4
//! address (`ip`, or `ip_pool` to take one from), `gateway`, `nameservers`, `searchdomain`, and
//! `cicustom`'s snippet files (whether they exist is the plan's check). Whether addresses
//! fit their subnets and each other is the plan's check: a VM's `ip` and the defaults'
//! `gateway` only meet there.

use std::net::{IpAddr, Ipv4Addr};

use toml::de::DeValue;

use super::*;
use crate::config::Addressing;
use crate::pve::CiCustom;

/// The network keys a section set.
pub(super) struct NetworkOverrides {
    pub address: Option<Addressing>,
    pub gateway: Option<Ipv4Addr>,
    pub nameservers: Option<Vec<IpAddr>>,
    pub searchdomain: Option<String>,
    pub cicustom: Option<CiCustom>,
}

impl Doc<'_> {
    /// `None` when one of the keys was bad (the problem is recorded).
    pub(super) fn network(&mut self, s: &Section<'_, '_>) -> Option<NetworkOverrides> {
        let before = self.problems.len();
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
            address: ip.or(pool),
            gateway,
            nameservers,
            searchdomain,
            cicustom,
        })
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
