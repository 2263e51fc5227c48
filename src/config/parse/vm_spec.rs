//! `[defaults]` and `[vm_configs."name"]`: the VM spec keys (cores, memory, disk, network,
//! cloud-init user) and the per-VM pins (node, vmid).

use std::collections::HashMap;

use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

use super::*;
use crate::config::Nic;

pub(in crate::config) const SPEC_KEYS: &[&str] = &[
    "cores",
    "sockets",
    "memory",
    "disk_size",
    "disk",
    "storage",
    "format",
    "secure_boot",
    "ciuser",
    "sshkeys",
    "sshkeys_file",
    "clone",
    "cicustom",
    // Guest settings (parsed in guest.rs).
    "ciupgrade",
    "pool",
    "tags",
    "description",
    "onboot",
    "startup",
    "cpu",
    "balloon",
    // Extra disks (parsed in disks.rs).
    "disks",
    // Network (parsed in network.rs).
    "bridge",
    "vlan",
    "ip",
    "ip_pool",
    "gateway",
    "ip6",
    "gateway6",
    "networks",
    "nameservers",
    "searchdomain",
];
pub(in crate::config) const VM_ONLY_KEYS: &[&str] =
    &["node", "vmid", "checks_exec_add", "checks_exec_replace"];

impl Doc<'_> {
    /// The spec keys of `[defaults]` (every key optional; the original wait_for_vm.sh flow's values fill the rest).
    pub(super) fn defaults(&mut self, s: &Section<'_, '_>) -> Option<VmSpec> {
        self.unknown_keys(s, SPEC_KEYS);
        let o = self.overrides(s)?;
        let original = VmSpec {
            cores: 4,
            sockets: 2,
            memory: 32768,
            disk_size: 128 << 30,
            disk: "scsi0".to_string(),
            storage: "ssd".to_string(),
            format: "qcow2".to_string(),
            secure_boot: true,
            ciuser: None,
            sshkeys: None,
            networks: vec![Nic::on("vmbr1")],
            nameservers: Vec::new(),
            searchdomain: None,
            clone: CloneMode::Full,
            cicustom: None,
            guest: Default::default(),
            disks: Vec::new(),
        };
        Some(original.merged(&o))
    }

    /// Spec keys shared by `[defaults]` and `[vm_configs."name"]`. `None` when one was bad.
    fn overrides(&mut self, s: &Section<'_, '_>) -> Option<VmOverrides> {
        let before = self.problems.len();
        let cores = self.integer(s, "cores", 1, 1024, None).map(|n| n as u32);
        let sockets = self.integer(s, "sockets", 1, 64, None).map(|n| n as u32);
        let memory = self.field(s, "memory", memory_mib);
        let disk_size = self.field(s, "disk_size", |v| match v {
            DeValue::String(text) => {
                let bytes = formats::parse_size(text)
                    .map_err(|allowed| bad(format!("not a size; expected {allowed}")))?;
                if bytes < (1 << 20) {
                    Err(bad("too small; a disk needs at least 1M"))
                } else {
                    Ok(bytes)
                }
            }
            DeValue::Integer(i) => Err(bad_hint(
                "expected a size string, found an integer",
                format!("write \"{i}G\" for {i} GiB"),
            )),
            other => Err(expected("a size such as \"128G\"", other)),
        });
        let disk = self.checked_string(s, "disk", "a disk key", formats::check_disk);
        let storage = self.checked_string(s, "storage", "a storage id", formats::check_storage_id);
        let format = self.string_with(s, "format", "a disk format", |f| match f {
            "raw" | "qcow2" | "vmdk" => Ok(f.to_string()),
            _ => Err(bad("not a disk format; allowed: raw, qcow2, vmdk")),
        });
        let secure_boot = self.boolean(s, "secure_boot");
        let ciuser = self.checked_string(s, "ciuser", "a user name", formats::check_ciuser);
        let inline_keys = self.field(s, "sshkeys", |v| {
            let lines: Vec<String> = match v {
                DeValue::String(text) => text.lines().map(str::to_string).collect(),
                DeValue::Array(items) => {
                    let mut lines = Vec::new();
                    for item in items.iter() {
                        let Some(text) = item.get_ref().as_str() else {
                            return Err(expected("public keys (strings)", item.get_ref()));
                        };
                        lines.extend(text.lines().map(str::to_string));
                    }
                    lines
                }
                other => return Err(expected("public keys (a string or an array)", other)),
            };
            ssh_public_keys(&lines)
        });
        let keys_file = self.path(s, "sshkeys_file");
        let file_keys = keys_file.and_then(|path| {
            let key = s.key_path("sshkeys_file");
            let value = s.get("sshkeys_file")?;
            let read = std::fs::read_to_string(&path)
                .map_err(|e| {
                    bad_hint(
                        format!("cannot read {}: {e}", path.display()),
                        "give the path of an authorized_keys-style file of public keys",
                    )
                })
                .and_then(|text| {
                    let lines: Vec<String> = text.lines().map(str::to_string).collect();
                    ssh_public_keys(&lines)
                });
            match read {
                Ok(keys) => Some(keys),
                Err(b) => {
                    self.at_value(key, value, b);
                    None
                }
            }
        });
        if s.get("sshkeys").is_some() && s.get("sshkeys_file").is_some() {
            let line = s.get("sshkeys_file").map(|v| self.line(v.span().start));
            self.push(
                Some(s.key_path("sshkeys_file")),
                line,
                None,
                bad_hint(
                    "set together with sshkeys",
                    "keep one of sshkeys and sshkeys_file",
                ),
            );
        }
        let clone = self.string_with(s, "clone", "a clone mode", |m| match m {
            "full" => Ok(CloneMode::Full),
            "linked" => Ok(CloneMode::Linked),
            _ => Err(bad("not a clone mode; allowed: \"full\", \"linked\"")),
        });
        if clone == Some(CloneMode::Linked) {
            for key in ["storage", "format"] {
                if let Some(value) = s.get(key) {
                    self.at_value(
                        s.key_path(key),
                        value,
                        bad_hint(
                            "set with clone = \"linked\"",
                            "a linked clone stays on the template's storage and format (PVE refuses both); drop the key or use clone = \"full\"",
                        ),
                    );
                }
            }
        }
        let network = self.network(s);
        let guest = self.guest(s);
        let disks = self.disks(s);
        if self.problems.len() > before {
            return None;
        }
        let network = network?;
        let guest = guest?;
        Some(VmOverrides {
            cores,
            sockets,
            memory,
            disk_size,
            disk,
            storage,
            format,
            secure_boot,
            ciuser,
            sshkeys: inline_keys.or(file_keys),
            networks: network.networks,
            nic0: network.nic0,
            nameservers: network.nameservers,
            searchdomain: network.searchdomain,
            clone,
            cicustom: network.cicustom,
            guest,
            disks,
            node: None,
            vmid: None,
            checks_exec: None,
        })
    }

    pub(super) fn vm_configs(
        &mut self,
        root: &DeTable<'_>,
        nodes: Option<&[String]>,
    ) -> Option<IndexMap<String, VmOverrides>> {
        let s = self.section(root, "vm_configs");
        let before = self.problems.len();
        let mut out = IndexMap::new();
        let mut seen_names: HashMap<String, String> = HashMap::new();
        let mut seen_ids: HashMap<u32, String> = HashMap::new();
        for (key, value) in s.table.into_iter().flat_map(|t| t.iter()) {
            let name: &str = key.get_ref();
            let path = s.key_path(name);
            let key_line = self.line(key.span().start);
            self.key_lines.insert(path.clone(), key_line);
            if let Err(allowed) = formats::check_dns_name(name) {
                self.push(
                    Some(path.clone()),
                    Some(key_line),
                    None,
                    bad(format!("not a valid VM name; expected {allowed}")),
                );
            }
            if let Some(first) = seen_names.insert(name.to_ascii_lowercase(), name.to_string()) {
                self.push(
                    Some(path.clone()),
                    Some(key_line),
                    None,
                    bad_hint(
                        format!("the same VM name as \"{first}\" (names are not case-sensitive)"),
                        "give every VM its own name",
                    ),
                );
            }
            let DeValue::Table(table) = value.get_ref() else {
                let found = type_name(value.get_ref());
                let hint = if SPEC_KEYS.contains(&name) || VM_ONLY_KEYS.contains(&name) {
                    format!(
                        "`{name}` is a VM setting: put it under [defaults] for every VM, or \
                         under [vm_configs.\"<name>\"] for one"
                    )
                } else {
                    format!(
                        "write [vm_configs.{}] with keys such as cores = 4",
                        key_segment(name)
                    )
                };
                self.at_value(
                    path,
                    value,
                    bad_hint(
                        format!("expected a table of overrides, found {found}"),
                        hint,
                    ),
                );
                continue;
            };
            let vm = Section {
                path,
                table: Some(table),
                line: Some(key_line),
            };
            let mut allowed: Vec<&str> = SPEC_KEYS.to_vec();
            allowed.extend_from_slice(VM_ONLY_KEYS);
            self.unknown_keys(&vm, &allowed);
            let overrides = self.overrides(&vm);
            let node = self.string_with(&vm, "node", "a node name", |n| {
                formats::check_dns_name(n)
                    .map_err(|allowed| bad(format!("not a node name; expected {allowed}")))?;
                match nodes {
                    Some(nodes) if !nodes.iter().any(|m| m == n) => Err(bad_hint(
                        format!("not one of rollout.nodes ({})", nodes.join(", ")),
                        format!("add \"{n}\" to rollout.nodes, or pin the VM to a listed node"),
                    )),
                    _ => Ok(n.to_string()),
                }
            });
            let vmid = self
                .integer(
                    &vm,
                    "vmid",
                    VMID_MIN,
                    VMID_MAX,
                    Some("PVE VM ids are 100 to 999999999"),
                )
                .map(|id| id as u32);
            if let (Some(id), Some(value)) = (vmid, vm.get("vmid"))
                && let Some(first) = seen_ids.insert(id, name.to_string())
            {
                self.at_value(
                    vm.key_path("vmid"),
                    value,
                    bad_hint(
                        format!("already given to \"{first}\""),
                        "give every VM its own vmid, or leave vmid out to have one assigned",
                    ),
                );
            }
            let checks_exec = self.vm_exec_checks(&vm);
            if let (Some(mut o), Ok(checks_exec)) = (overrides, checks_exec) {
                o.node = node;
                o.vmid = vmid;
                o.checks_exec = checks_exec;
                out.insert(name.to_string(), o);
            }
        }
        (self.problems.len() == before).then_some(out)
    }
}

/// Memory as MiB: an integer (MiB) or a size string such as "32G".
fn memory_mib(v: &DeValue<'_>) -> Result<u64, Bad> {
    const MIN: u64 = 16;
    const MAX: u64 = 16 << 20; // 16 TiB in MiB
    let mib = match v {
        DeValue::Integer(_) => match integer_of(v) {
            Some(n) if n >= 0 && n <= i128::from(MAX) => n as u64,
            _ => return Err(bad(format!("out of range; allowed: {MIN} to {MAX} (MiB)"))),
        },
        DeValue::String(text) => {
            let bytes = formats::parse_size(text).map_err(|allowed| {
                bad_hint(
                    format!("not a size; expected an integer in MiB or {allowed}"),
                    "write memory = 32768 or memory = \"32G\"",
                )
            })?;
            if bytes % (1 << 20) != 0 {
                return Err(bad("not a whole number of MiB"));
            }
            bytes >> 20
        }
        other => {
            return Err(expected(
                "MiB as an integer, or a size such as \"32G\"",
                other,
            ));
        }
    };
    if !(MIN..=MAX).contains(&mib) {
        return Err(bad(format!(
            "out of range; allowed: {MIN} to {MAX} MiB (PVE's minimum is 16)"
        )));
    }
    Ok(mib)
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// authorized_keys lines (blank lines and `#` comments dropped), joined by newlines.
fn ssh_public_keys(lines: &[String]) -> Result<String, Bad> {
    if lines.iter().any(|l| l.contains("PRIVATE KEY")) {
        return Err(bad_hint(
            "holds a PRIVATE key",
            "give the public key (the .pub file) and keep the private key to yourself",
        ));
    }
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() {
        return Err(bad_hint(
            "holds no public key",
            "give at least one line such as \"ssh-ed25519 AAAA... you@host\"",
        ));
    }
    for key in &keys {
        let words: Vec<&str> = key.split_whitespace().collect();
        let typed = words.windows(2).any(|pair| {
            KEY_TYPES.contains(&pair[0])
                && pair[1].len() >= 16
                && pair[1]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        });
        if !typed {
            let start: String = key.chars().take(24).collect();
            return Err(bad_hint(
                format!("\"{start}...\" is not an SSH public key"),
                format!(
                    "each line is `type base64 [comment]` with a type among {}",
                    KEY_TYPES.join(", ")
                ),
            ));
        }
    }
    Ok(keys.join("\n"))
}
