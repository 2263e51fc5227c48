//! The network keys of `[defaults]` and `[vm_configs."name"]`: net0's IPv4 address (`ip`, or
//! `ip_pool` to take one from), `gateway`, `nameservers` and `searchdomain`. Whether addresses
//! fit their subnets and each other is the plan's check: a VM's `ip` and the defaults'
//! `gateway` only meet there.

use std::net::{IpAddr, Ipv4Addr};

use toml::de::DeValue;

use super::*;
use crate::config::Addressing;

/// The network keys a section set.
pub(super) struct NetworkOverrides {
    pub address: Option<Addressing>,
    pub gateway: Option<Ipv4Addr>,
    pub nameservers: Option<Vec<IpAddr>>,
    pub searchdomain: Option<String>,
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
        if self.problems.len() > before {
            return None;
        }
        Some(NetworkOverrides {
            address: ip.or(pool),
            gateway,
            nameservers,
            searchdomain,
        })
    }
}
