//! One reader per section of deploy.toml, and the checks across sections (how many VMs, their
//! names, the id range, how to log in).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

use super::*;

impl Doc<'_> {
    pub(super) fn config(&mut self, root: &DeTable<'_>) -> Option<Config> {
        for (key, _) in root.iter() {
            let name: &str = key.get_ref();
            if !SECTIONS.iter().any(|(s, _)| *s == name) {
                let line = self.line(key.span().start);
                let hint = unknown_key_hint("", name, &[]);
                self.push(
                    Some(key_segment(name)),
                    Some(line),
                    None,
                    bad_hint("unknown top-level key", hint),
                );
            }
        }

        let proxmox = self.proxmox(root);
        let rollout = self.rollout(root);
        let defaults_section = self.section(root, "defaults");
        let defaults = self.defaults(&defaults_section);
        let vm_configs = self.vm_configs(root, rollout.as_ref().map(|r| r.config.nodes.as_slice()));
        let checks = self.checks(root);
        let hooks = self.hooks(root);
        let output = self.output(root);
        let mut rollout = rollout?;
        let vm_configs = vm_configs?;
        let checks = checks?;
        self.exec_check_clashes(&checks.exec, &vm_configs);
        self.vm_list(&mut rollout, &vm_configs);
        Some(Config {
            proxmox: proxmox?,
            rollout: rollout.config,
            defaults: defaults?,
            vm_configs,
            checks,
            hooks: hooks?,
            output: output?,
            source: ConfigSource {
                origin: self.origin.to_string(),
                key_lines: std::mem::take(&mut self.key_lines),
                warnings: std::mem::take(&mut self.warnings),
            },
        })
    }

    fn proxmox(&mut self, root: &DeTable<'_>) -> Option<ProxmoxConfig> {
        let s = self.section(root, "proxmox");
        self.unknown_keys(&s, PROXMOX_KEYS);
        let url = self.field(&s, "url", check_url);
        let token_id = self.checked_string(
            &s,
            "token_id",
            "an API token id such as \"root@pam!rollout\"",
            formats::check_token_id,
        );
        let token_secret_file = self.path(&s, "token_secret_file");
        let user = self.checked_string(
            &s,
            "user",
            "a user id such as \"root@pam\"",
            formats::check_userid,
        );
        let password_file = self.path(&s, "password_file");
        let fingerprint = self.string_with(&s, "fingerprint", "a SHA-256 fingerprint", |f| {
            formats::normalize_fingerprint(f)
                .map_err(|allowed| bad(format!("not allowed; expected {allowed}")))
        });
        let ca_cert = self.path(&s, "ca_cert");
        let insecure = self.boolean(&s, "insecure");
        let max_in_flight = self.integer(
            &s,
            "max_in_flight",
            1,
            16,
            Some("Proxmox has 3 pvedaemon workers; 2 (the default) leaves one for the GUI"),
        );

        if s.table.is_none() {
            self.missing(
                "proxmox".to_string(),
                None,
                "add a [proxmox] section with url and token_id (see deploy.toml.example)",
            );
            return None;
        }
        if s.get("url").is_none() {
            self.missing(
                s.key_path("url"),
                s.line,
                "add url = \"https://pve1.example.org:8006\" under [proxmox]",
            );
        }
        let has = |k: &str| s.get(k).is_some();
        let line_of = |doc: &Self, k: &str| s.get(k).map(|v| doc.line(v.span().start));
        match (has("token_id"), has("user")) {
            (true, true) => {
                let line = line_of(self, "user");
                self.push(
                    Some(s.key_path("user")),
                    line,
                    None,
                    bad_hint(
                        "set together with token_id; choose one way to log in",
                        "keep token_id (an API token, recommended) and remove user and \
                         password_file, or the other way round",
                    ),
                );
            }
            (false, false) => self.missing(
                s.key_path("token_id"),
                s.line,
                "add token_id = \"user@realm!name\" (an API token; its secret comes from env \
                 PVE_TOKEN_SECRET or token_secret_file), or user = \"user@realm\" with \
                 password_file",
            ),
            _ => {}
        }
        if has("token_secret_file") && !has("token_id") {
            let line = line_of(self, "token_secret_file");
            self.push(
                Some(s.key_path("token_secret_file")),
                line,
                None,
                bad_hint(
                    "set without token_id",
                    "add token_id = \"user@realm!name\" for the token this secret belongs to",
                ),
            );
        }
        if has("password_file") && !has("user") {
            let line = line_of(self, "password_file");
            self.push(
                Some(s.key_path("password_file")),
                line,
                None,
                bad_hint(
                    "set without user",
                    "add user = \"user@realm\" for the account this password belongs to",
                ),
            );
        }
        let trust_keys: Vec<&str> = ["fingerprint", "ca_cert", "insecure"]
            .into_iter()
            .filter(|k| has(k) && !(*k == "insecure" && insecure != Some(true)))
            .collect();
        if trust_keys.len() > 1 {
            self.warnings.push(format!(
                "{}: proxmox.{} are all set; {} wins (order: fingerprint, ca_cert, insecure)",
                self.origin,
                trust_keys.join(" and proxmox."),
                trust_keys[0]
            ));
        } else if insecure == Some(true) {
            self.warnings.push(format!(
                "{}: proxmox.insecure = true: the server's certificate is not checked; pin it \
                 with fingerprint instead",
                self.origin
            ));
        }
        if let Some(url) = &url
            && reqwest::Url::parse(url).is_ok_and(|u| u.port().is_none())
        {
            self.warnings.push(format!(
                "{}: proxmox.url {url} has no port, so 443 is used; the PVE API listens on 8006 \
                 unless a proxy is in front",
                self.origin
            ));
        }
        Some(ProxmoxConfig {
            url: url?,
            token_id,
            token_secret_file,
            user,
            password_file,
            fingerprint,
            ca_cert,
            insecure: insecure.unwrap_or(false),
            max_in_flight: max_in_flight.unwrap_or(2) as usize,
        })
    }

    fn rollout(&mut self, root: &DeTable<'_>) -> Option<RolloutParts> {
        let s = self.section(root, "rollout");
        self.unknown_keys(&s, ROLLOUT_KEYS);
        let template = self.field(&s, "template", |v| match v {
            DeValue::String(name)
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Err(bad_hint(
                    "looks like a vmid written as a string",
                    format!("write template = {name} (an integer) for a vmid, or give the name"),
                ))
            }
            DeValue::String(name) => formats::check_dns_name(name)
                .map(|()| TemplateRef::Name(name.to_string()))
                .map_err(|allowed| bad(format!("not a VM name; expected {allowed}"))),
            DeValue::Integer(_) => match integer_of(v) {
                Some(id) if (i128::from(VMID_MIN)..=i128::from(VMID_MAX)).contains(&id) => {
                    Ok(TemplateRef::Id(id as u32))
                }
                _ => Err(bad(format!(
                    "not a VM id; allowed: {VMID_MIN} to {VMID_MAX}"
                ))),
            },
            other => Err(expected("a template name or vmid", other)),
        });
        let max_vms = self.integer(
            &s,
            "max_vms",
            1,
            100_000,
            Some("max_vms raises the VM limit on purpose"),
        );
        let limit = max_vms.map_or(DEFAULT_MAX_VMS, |m| m as u64);
        let vm_count = self.field(&s, "vm_count", |v| match integer_of(v) {
            Some(n) if n >= 1 && n <= i128::from(limit) => Ok(n as u64),
            Some(n) if n >= 1 => Err(bad_hint(
                format!("too many; allowed: 1 to {limit}"),
                format!("to deploy more than {limit} VMs, raise rollout.max_vms on purpose"),
            )),
            Some(_) => Err(bad(format!("out of range; allowed: 1 to {limit}"))),
            None => match v {
                DeValue::String(s) if s.trim().parse::<u64>().is_ok() => Err(bad_hint(
                    "expected an integer, found a string",
                    format!("write {} without quotes", s.trim()),
                )),
                other => Err(expected("an integer", other)),
            },
        });
        let vm_name_prefix = self.checked_string(
            &s,
            "vm_name_prefix",
            "a VM name prefix",
            formats::check_dns_name,
        );
        let name = self.checked_string(&s, "name", "a rollout name", formats::check_rollout_name);
        let deployment_delay = self.duration(&s, "deployment_delay", false);
        let nodes = self.field(&s, "nodes", |v| {
            let DeValue::Array(items) = v else {
                return Err(match v {
                    DeValue::String(n) => bad_hint(
                        "expected an array of node names, found a string",
                        format!("write nodes = [\"{n}\"]"),
                    ),
                    other => expected("an array of node names", other),
                });
            };
            if items.is_empty() {
                return Err(bad_hint(
                    "is empty",
                    "name at least one node to place the VMs on, such as nodes = [\"pve1\"]",
                ));
            }
            let mut nodes: Vec<String> = Vec::new();
            for item in items.iter() {
                let Some(n) = item.get_ref().as_str() else {
                    return Err(expected("node names (strings)", item.get_ref()));
                };
                formats::check_dns_name(n).map_err(|allowed| {
                    bad(format!("\"{n}\" is not a node name; expected {allowed}"))
                })?;
                if nodes.iter().any(|m| m.eq_ignore_ascii_case(n)) {
                    return Err(bad_hint(
                        format!("lists \"{n}\" twice"),
                        "list each node once",
                    ));
                }
                nodes.push(n.to_string());
            }
            Ok(nodes)
        });
        let vmid_hint = "PVE VM ids are 100 to 999999999";
        let vmid_start = self.integer(&s, "vmid_start", VMID_MIN, VMID_MAX, Some(vmid_hint));
        let vmid_range = self.field(&s, "vmid_range", |v| {
            let hint = "write vmid_range = [first, last], such as [200, 299]";
            let DeValue::Array(items) = v else {
                return Err(bad_hint(
                    format!("expected an array [first, last], found {}", type_name(v)),
                    hint,
                ));
            };
            let ids: Vec<Option<i128>> = items.iter().map(|i| integer_of(i.get_ref())).collect();
            match ids.as_slice() {
                [Some(first), Some(last)] => {
                    let ok = |id: &i128| (i128::from(VMID_MIN)..=i128::from(VMID_MAX)).contains(id);
                    if !ok(first) || !ok(last) {
                        Err(bad_hint(
                            format!("out of range; allowed: {VMID_MIN} to {VMID_MAX}"),
                            vmid_hint,
                        ))
                    } else if first > last {
                        Err(bad_hint("first is greater than last", hint))
                    } else {
                        Ok((*first as u32, *last as u32))
                    }
                }
                _ => Err(bad_hint("expected two integers [first, last]", hint)),
            }
        });
        let max_clones_per_storage = self.integer(
            &s,
            "max_clones_per_storage",
            0,
            1000,
            Some("0 means no cap beyond the stagger"),
        );

        if s.get("vmid_start").is_some() && s.get("vmid_range").is_some() {
            let line = s.get("vmid_range").map(|v| self.line(v.span().start));
            self.push(
                Some(s.key_path("vmid_range")),
                line,
                None,
                bad_hint(
                    "set together with vmid_start",
                    "keep one: vmid_start = 200 (ids from 200 up) or vmid_range = [200, 299]",
                ),
            );
        }
        if s.get("nodes").is_none() {
            self.missing(
                s.key_path("nodes"),
                s.line,
                "add nodes = [\"pve1\"] under [rollout]: the node(s) to place the VMs on",
            );
        }
        let prefix = vm_name_prefix.unwrap_or_else(|| "ubuntu-opentofu".to_string());
        let name = match name {
            Some(name) => name,
            None => {
                if formats::check_rollout_name(&prefix).is_err() {
                    // A prefix longer than a tag allows: ask for an explicit name.
                    self.missing(
                        s.key_path("name"),
                        s.line,
                        "vm_name_prefix is too long to name the rollout; set name = \"...\" (up \
                         to 64 letters, digits, '_', '-', '+', '.')",
                    );
                }
                prefix.clone()
            }
        };
        let vmid_range = match (vmid_start, vmid_range) {
            (Some(start), _) => Some((start as u32, VMID_MAX as u32)),
            (None, range) => range,
        };
        let vm_count_line = s.get("vm_count").map(|v| self.line(v.span().start));
        Some(RolloutParts {
            config: RolloutConfig {
                name,
                template: template.unwrap_or_else(|| TemplateRef::Name("ubuntu".to_string())),
                vm_count: vm_count.unwrap_or(2) as usize,
                vm_name_prefix: prefix,
                deployment_delay: deployment_delay.unwrap_or(Duration::from_secs(30)),
                nodes: nodes?,
                vmid_range,
                max_clones_per_storage: max_clones_per_storage.unwrap_or(0) as usize,
            },
            vm_count_given: s.get("vm_count").is_some(),
            header_line: s.line,
            vm_count_line,
            vmid_key: if s.get("vmid_start").is_some() {
                "rollout.vmid_start"
            } else {
                "rollout.vmid_range"
            },
            vmid_line: s
                .get("vmid_start")
                .or_else(|| s.get("vmid_range"))
                .map(|v| self.line(v.span().start)),
            max_vms: limit,
        })
    }

    /// The spec keys of `[defaults]` (every key optional; the seed's defaults fill the rest).
    fn defaults(&mut self, s: &Section<'_, '_>) -> Option<VmSpec> {
        self.unknown_keys(s, SPEC_KEYS);
        let o = self.overrides(s)?;
        let seed = VmSpec {
            cores: 4,
            sockets: 2,
            memory: 32768,
            disk_size: 128 << 30,
            disk: "scsi0".to_string(),
            storage: "ssd".to_string(),
            format: "qcow2".to_string(),
            bridge: "vmbr1".to_string(),
            secure_boot: true,
            ciuser: None,
            sshkeys: None,
        };
        Some(seed.merged(&o))
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
        let bridge = self.checked_string(s, "bridge", "a bridge name", formats::check_bridge);
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
        if self.problems.len() > before {
            return None;
        }
        Some(VmOverrides {
            cores,
            sockets,
            memory,
            disk_size,
            disk,
            storage,
            format,
            bridge,
            secure_boot,
            ciuser,
            sshkeys: inline_keys.or(file_keys),
            node: None,
            vmid: None,
            checks_exec: None,
        })
    }

    fn vm_configs(
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

    /// Checks the VM list as a whole: how many, their generated names, the id range.
    fn vm_list(&mut self, r: &mut RolloutParts, vm_configs: &IndexMap<String, VmOverrides>) {
        let raise = format!(
            "to deploy more than {} VMs, raise rollout.max_vms on purpose",
            r.max_vms
        );
        if vm_configs.is_empty() {
            let n = r.config.vm_count as u64;
            if !r.vm_count_given && n > r.max_vms {
                self.missing(
                    "rollout.vm_count".to_string(),
                    r.header_line,
                    format!(
                        "rollout.max_vms is {} but vm_count defaults to {n}; set vm_count",
                        r.max_vms
                    ),
                );
            } else if n <= r.max_vms {
                let last = format!("{}-{}", r.config.vm_name_prefix, n);
                if formats::check_dns_name(&last).is_err() {
                    self.push(
                        Some("rollout.vm_name_prefix".to_string()),
                        self.key_lines.get("rollout.vm_name_prefix").copied(),
                        Some(format!("{:?}", r.config.vm_name_prefix)),
                        bad_hint(
                            format!("makes VM names such as \"{last}\" that PVE refuses"),
                            "shorten the prefix (a name label is at most 63 characters)",
                        ),
                    );
                }
            }
        } else {
            let n = vm_configs.len() as u64;
            if n > r.max_vms {
                self.push(
                    Some("vm_configs".to_string()),
                    self.key_lines
                        .get(&format!(
                            "vm_configs.{}",
                            key_segment(vm_configs.keys().next().map_or("", |k| k))
                        ))
                        .copied(),
                    None,
                    bad_hint(
                        format!("names {n} VMs; at most {} are allowed", r.max_vms),
                        raise.clone(),
                    ),
                );
            }
            if r.vm_count_given && r.config.vm_count as u64 != n {
                self.warnings.push(format!(
                    "{}{}: rollout.vm_count = {} is ignored: [vm_configs] names the VMs ({n})",
                    self.origin,
                    r.vm_count_line.map(|l| format!(":{l}")).unwrap_or_default(),
                    r.config.vm_count
                ));
            }
            r.config.vm_count = vm_configs.len();
        }
        if let Some((first, last)) = r.config.vmid_range {
            let pinned_inside = vm_configs
                .values()
                .filter_map(|o| o.vmid)
                .filter(|id| (first..=last).contains(id))
                .count() as u64;
            let unpinned = r.config.vm_count as u64
                - vm_configs.values().filter(|o| o.vmid.is_some()).count() as u64;
            let capacity = u64::from(last - first) + 1 - pinned_inside;
            if unpinned > capacity {
                self.push(
                    Some(r.vmid_key.to_string()),
                    r.vmid_line,
                    Some(format!("[{first}, {last}]")),
                    bad_hint(
                        format!("has room for {capacity} VM ids but {unpinned} VMs need one"),
                        "widen the range",
                    ),
                );
            }
        }
    }

    fn checks(&mut self, root: &DeTable<'_>) -> Option<ChecksConfig> {
        let s = self.section(root, "checks");
        self.unknown_keys(&s, CHECKS_KEYS);
        let before = self.problems.len();
        let mode = self.string_with(&s, "mode", "a check mode", |m| match m {
            "pipelined" => Ok(CheckMode::Pipelined),
            "sequential" => Ok(CheckMode::Sequential),
            _ => Err(bad(
                "not a check mode; allowed: \"pipelined\" (default) or \"sequential\" (the seed's \
                 exact order)",
            )),
        });
        let ip_timeout = self.duration(&s, "ip_timeout", true);
        let pings = self.integer(&s, "pings", 1, 100, None);
        let stabilization = self.duration(&s, "stabilization", false);
        let cloud_init = self.boolean(&s, "cloud_init");
        let clone_timeout = self.duration(&s, "clone_timeout", true);
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
            clone_timeout: clone_timeout.unwrap_or(minutes(30)),
            boot_timeout: boot_timeout.unwrap_or(minutes(5)),
            agent_timeout: agent_timeout.unwrap_or(minutes(15)),
            verify_timeout: verify_timeout.unwrap_or(minutes(10)),
            ip_prefer: ip_prefer.unwrap_or_else(Cidr::rfc1918),
            ipv6: ipv6.unwrap_or(false),
            exec: exec.unwrap_or_default(),
        })
    }

    fn output(&mut self, root: &DeTable<'_>) -> Option<OutputConfig> {
        let s = self.section(root, "output");
        self.unknown_keys(&s, OUTPUT_KEYS);
        let before = self.problems.len();
        let dir = self.string_with(&s, "dir", "a directory path", |d| {
            if d.trim().is_empty() {
                Err(bad_hint(
                    "is empty",
                    "name a directory, such as \"rollout-out\"",
                ))
            } else {
                Ok(PathBuf::from(d))
            }
        });
        (self.problems.len() == before).then(|| OutputConfig {
            dir: dir.unwrap_or_else(|| PathBuf::from("rollout-out")),
        })
    }
}

/// `[rollout]` plus what the VM-list checks need to point at.
struct RolloutParts {
    config: RolloutConfig,
    vm_count_given: bool,
    vm_count_line: Option<usize>,
    header_line: Option<usize>,
    vmid_key: &'static str,
    vmid_line: Option<usize>,
    max_vms: u64,
}

fn check_url(v: &DeValue<'_>) -> Result<String, Bad> {
    let Some(text) = v.as_str() else {
        return Err(expected(
            "an https URL such as \"https://pve1.example.org:8006\"",
            v,
        ));
    };
    let example = "write url = \"https://pve1.example.org:8006\"";
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| bad_hint(format!("not a URL ({e})"), example))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo it: the URL carries credentials.
        return Err(Bad {
            hidden: true,
            ..bad_hint(
                "must not carry a user or password",
                "remove them from the URL; use token_id with env PVE_TOKEN_SECRET or \
                 token_secret_file",
            )
        });
    }
    if url.scheme() != "https" {
        return Err(bad_hint(
            format!(
                "uses {}; Proxmox VE serves its API over https only",
                url.scheme()
            ),
            example,
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad_hint("has no host", example));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad_hint("must not have a query or fragment", example));
    }
    let path = url.path().trim_end_matches('/');
    if !path.is_empty() && path != "/api2/json" {
        return Err(bad_hint(
            format!("has the path {path}; only the server's address (and /api2/json) is allowed"),
            example,
        ));
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "https://{}{port}",
        url.host_str().unwrap_or_default()
    ))
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
