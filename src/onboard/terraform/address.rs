//! import-tf's `ipconfig0` with a static address and its `full_clone = false`: the deploy.toml
//! keys that say the same. A literal address serves one VM as `ip`; with several VMs (`count`,
//! or the `vm_configs` names) Terraform gave each that same address, so they take an `ip_pool`
//! of as many consecutive addresses starting there instead.

use std::net::Ipv4Addr;

use super::Importer;
use crate::pve::IpConfig;

impl Importer {
    /// Reads a non-DHCP `ipconfig0`; the address keys are written once the VM count is known.
    pub(super) fn static_ipconfig(&mut self, place: &str, key: &str, text: &str, from: &str) {
        if text.contains("ip6=") || text.contains("gw6=") {
            self.skip(
                place,
                format!("{key} (ip6, gw6)"),
                "the IPv6 part is not translated; set ip6 in deploy.toml by hand",
            );
        }
        match IpConfig::parse(text) {
            Some(IpConfig::Dhcp) => self.took("ipconfig0=ip=dhcp (what pve-rollout sets)", from),
            Some(config) => self.ipconfig0 = Some((config, from.to_string())),
            None => self.skip(
                place,
                key,
                format!("\"{text}\": not an ipconfig0 PVE accepts (ip=<address>/<prefix>,gw=<address>, or ip=dhcp)"),
            ),
        }
    }

    /// `ip` (one VM) or `ip_pool` (several), and `gateway`, from the static `ipconfig0`.
    pub(super) fn addresses(&mut self) {
        let Some((
            IpConfig::Static {
                address,
                prefix,
                gateway,
            },
            from,
        )) = self.ipconfig0.take()
        else {
            return;
        };
        let draft = &self.out.draft;
        let vms = match draft.vm_configs.len() {
            0 => draft.vm_count.unwrap_or(1).max(1),
            n => n,
        };
        if vms == 1 {
            self.out.draft.ip = Some(format!("{address}/{prefix}"));
            self.took("defaults.ip", &from);
        } else {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let first = u32::from(address);
            let broadcast = (first & mask) | !mask;
            let last = first.checked_add(vms as u32 - 1).filter(|l| *l < broadcast);
            let Some(last) = last else {
                self.skip(
                    "ipconfig0",
                    "ipconfig0",
                    format!(
                        "{address}/{prefix} leaves fewer than {vms} addresses in its subnet for the {vms} VMs; give them an ip_pool (and gateway) in [defaults] by hand"
                    ),
                );
                return;
            };
            let pool = format!("{address}-{}/{prefix}", Ipv4Addr::from(last));
            self.out.draft.note(
                "defaults.ip_pool",
                format!(
                    "From ipconfig0 = \"ip={address}/{prefix}\": Terraform gave all {vms} VMs that one address; here\nthey take {pool} in order."
                ),
            );
            self.out.draft.ip_pool = Some(pool);
            self.took("defaults.ip_pool", &from);
        }
        if let Some(gateway) = gateway {
            self.out.draft.gateway = Some(gateway.to_string());
            self.took("defaults.gateway", &from);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::import_dir;
    use crate::config::{AddressPool, Addressing, CloneMode, Config, HostAddress};

    /// A setup with `count` VMs, the given `ipconfig0` and a linked clone.
    fn import_setup(dir: &Path, count: usize, ipconfig0: &str) -> (Config, super::super::Import) {
        let tf = format!(
            "provider \"proxmox\" {{\n  pm_api_url = \"https://pve1.example.org:8006/api2/json\"\n  pm_api_token_id = \"root@pam!tf\"\n}}\n\
             resource \"proxmox_vm_qemu\" \"vm\" {{\n  count = {count}\n  target_node = \"pve1\"\n  clone = \"ubuntu\"\n  full_clone = false\n  ipconfig0 = \"{ipconfig0}\"\n  disk {{\n    slot = \"scsi0\"\n    storage = \"ssd\"\n    format = \"qcow2\"\n  }}\n}}\n"
        );
        std::fs::write(dir.join("main.tf"), tf).expect("write");
        let import = import_dir(dir).expect("import");
        let text = import.draft.render();
        let config = Config::parse(&text, "imported").unwrap_or_else(|e| panic!("{e}\n{text}"));
        (config, import)
    }

    #[test]
    fn a_static_ipconfig0_becomes_a_pool_for_several_vms_and_ip_for_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, import) = import_setup(dir.path(), 3, "ip=10.0.10.21/24,gw=10.0.10.1");
        let d = &config.defaults;
        assert_eq!(
            d.primary().address,
            Addressing::Pool(AddressPool {
                first: [10, 0, 10, 21].into(),
                last: [10, 0, 10, 23].into(),
                prefix: 24,
            })
        );
        assert_eq!(d.primary().gateway, Some([10, 0, 10, 1].into()));
        // full_clone = false: linked, without the storage and format PVE would refuse.
        assert_eq!(d.clone, CloneMode::Linked);
        let text = import.draft.render();
        assert!(!text.contains("storage = \"ssd\""), "{text}");
        assert!(
            text.contains("they take 10.0.10.21-10.0.10.23/24 in order"),
            "{text}"
        );
        assert!(
            !import
                .skipped
                .iter()
                .any(|s| s.what == "ipconfig0" || s.what == "full_clone"),
            "{:#?}",
            import.skipped
        );

        let (config, _) = import_setup(dir.path(), 1, "ip=10.0.10.21/24");
        assert_eq!(
            config.defaults.primary().address,
            Addressing::Static(HostAddress {
                ip: [10, 0, 10, 21].into(),
                prefix: 24
            })
        );
        assert_eq!(config.defaults.primary().gateway, None);
    }

    #[test]
    fn a_subnet_too_small_for_the_vms_and_ip6_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, import) = import_setup(dir.path(), 3, "ip=10.0.10.253/24,ip6=auto");
        assert_eq!(config.defaults.primary().address, Addressing::Dhcp);
        let reasons: Vec<&str> = import.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("leaves fewer than 3 addresses in its subnet")),
            "{reasons:#?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("IPv6 part is not translated")),
            "{reasons:#?}"
        );
    }
}
