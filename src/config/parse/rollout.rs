//! `[rollout]`, and the checks of the VM list as a whole (how many VMs, their names, the id
//! range), which need `[rollout]` and `[vm_configs]` together.

use std::time::Duration;

use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

use super::*;

pub(in crate::config) const ROLLOUT_KEYS: &[&str] = &[
    "name",
    "template",
    "vm_count",
    "vm_name_prefix",
    "deployment_delay",
    "nodes",
    "vmid_start",
    "vmid_range",
    "max_vms",
    "max_clones_per_storage",
    "placement",
    "memory_overcommit",
];

/// `[rollout]` plus what the VM-list checks need to point at.
pub(super) struct RolloutParts {
    pub(super) config: RolloutConfig,
    vm_count_given: bool,
    vm_count_line: Option<usize>,
    header_line: Option<usize>,
    vmid_key: &'static str,
    vmid_line: Option<usize>,
    max_vms: u64,
}

impl Doc<'_> {
    pub(super) fn rollout(&mut self, root: &DeTable<'_>) -> Option<RolloutParts> {
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
        let max_clones_per_storage = self.field(&s, "max_clones_per_storage", |v| {
            let hint = "write \"auto\" (measure the storage and choose), a number such as 2, \
                        or 0 for no cap beyond the stagger";
            match (v, integer_of(v)) {
                (DeValue::String(text), _) if text.trim() == "auto" => Ok(ClonesPerStorage::Auto),
                (_, Some(n)) if (0..=1000).contains(&n) => Ok(ClonesPerStorage::Limit(n as usize)),
                (_, Some(_)) => Err(bad_hint("out of range; allowed: 0 to 1000", hint)),
                (DeValue::String(_), None) => Err(bad_hint("not allowed", hint)),
                (other, None) => Err(bad_hint(
                    format!(
                        "expected \"auto\" or an integer, found {}",
                        type_name(other)
                    ),
                    hint,
                )),
            }
        });
        let placement = self.string_with(&s, "placement", "a placement", |p| match p {
            "most-free-memory" => Ok(Placement::MostFreeMemory),
            "spread" => Ok(Placement::Spread),
            _ => Err(bad(
                "not a placement; allowed: \"most-free-memory\", \"spread\"",
            )),
        });
        let memory_overcommit = self.field(&s, "memory_overcommit", |v| {
            let factor = match v {
                DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                DeValue::Integer(_) => integer_of(v).map(|n| n as f64),
                other => return Err(expected("a factor such as 1.5", other)),
            };
            match factor {
                Some(f) if (1.0..=10.0).contains(&f) => Ok(f),
                _ => Err(bad_hint(
                    "out of range; allowed: 1.0 to 10.0",
                    "1.0 places no more memory than a node has free; 1.5 allows half as much again",
                )),
            }
        });

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
                max_clones_per_storage: max_clones_per_storage.unwrap_or_default(),
                placement: placement.unwrap_or_default(),
                memory_overcommit: memory_overcommit.unwrap_or(1.0),
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

    /// Checks the VM list as a whole: how many, their generated names, the id range.
    pub(super) fn vm_list(
        &mut self,
        r: &mut RolloutParts,
        vm_configs: &IndexMap<String, VmOverrides>,
    ) {
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
}
