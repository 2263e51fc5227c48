//! `[checks]`: how each VM is proven healthy and how long each phase may take.

use std::time::Duration;

use toml::de::DeTable;

use super::*;

pub(in crate::config) const CHECKS_KEYS: &[&str] = &[
    "mode",
    "ip_timeout",
    "pings",
    "stabilization",
    "cloud_init",
    "clone_timeout",
    "clone_stall_timeout",
    "boot_timeout",
    "agent_timeout",
    "verify_timeout",
    "ip_prefer",
    "ipv6",
    "exec",
];

impl Doc<'_> {
    pub(super) fn checks(&mut self, root: &DeTable<'_>) -> Option<ChecksConfig> {
        let s = self.section(root, "checks");
        self.unknown_keys(&s, CHECKS_KEYS);
        let before = self.problems.len();
        let mode = self.string_with(&s, "mode", "a check mode", |m| match m.parse() {
            Ok(mode) => Ok(mode),
            Err(_) => Err(bad(
                "not a check mode; allowed: \"pipelined\" (default) or \"sequential\" (the original wait_for_vm.sh flow's \
                 exact order)",
            )),
        });
        let ip_timeout = self.duration(&s, "ip_timeout", true);
        let pings = self.integer(&s, "pings", 1, 100, None);
        let stabilization = self.duration(&s, "stabilization", false);
        let cloud_init = self.boolean(&s, "cloud_init");
        let clone_timeout = self.duration(&s, "clone_timeout", true);
        let clone_stall_timeout = self.duration(&s, "clone_stall_timeout", true);
        let boot_timeout = self.duration(&s, "boot_timeout", true);
        let agent_timeout = self.duration(&s, "agent_timeout", true);
        let verify_timeout = self.duration(&s, "verify_timeout", true);
        let ip_prefer = self.field(&s, "ip_prefer", |v| {
            let DeValue::Array(items) = v else {
                return Err(expected(
                    "an array of address ranges such as [\"10.0.0.0/8\"]",
                    v,
                ));
            };
            items
                .iter()
                .map(|item| match item.get_ref().as_str() {
                    Some(text) => formats::parse_cidr(text).map_err(|allowed| {
                        bad(format!("\"{text}\" is not allowed; expected {allowed}"))
                    }),
                    None => Err(expected("address ranges (strings)", item.get_ref())),
                })
                .collect::<Result<Vec<Cidr>, Bad>>()
        });
        let ipv6 = self.boolean(&s, "ipv6");
        let exec = self.exec_checks(&s, "exec");
        if self.problems.len() > before {
            return None;
        }
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Some(ChecksConfig {
            mode: mode.unwrap_or(CheckMode::Pipelined),
            ip_timeout: ip_timeout.unwrap_or(minutes(30)),
            pings: pings.unwrap_or(3) as u32,
            stabilization: stabilization.unwrap_or(Duration::from_secs(30)),
            cloud_init: cloud_init.unwrap_or(false),
            clone_timeout,
            clone_stall_timeout: clone_stall_timeout.unwrap_or(minutes(10)),
            boot_timeout: boot_timeout.unwrap_or(minutes(5)),
            agent_timeout: agent_timeout.unwrap_or(minutes(15)),
            verify_timeout: verify_timeout.unwrap_or(minutes(10)),
            ip_prefer: ip_prefer.unwrap_or_else(Cidr::rfc1918),
            ipv6: ipv6.unwrap_or(false),
            exec: exec.unwrap_or_default(),
        })
    }
}
