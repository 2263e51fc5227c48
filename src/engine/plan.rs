//! Plan and preflight: which VMs, with which ids, on which nodes, cloned from which template.
//! Everything is checked against the cluster before anything is created, and every problem is
//! reported at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Addressing, CloneMode, Config, HostAddress, Placement, TemplateRef, VmSpec};
use crate::pve::{Client, NodeInfo, Resource, VmConfig};

use super::error::EngineError;
use super::journal::{self, History, Step};

/// The tag every VM this tool creates carries (PVE tags are lowercase, so the rollout's own id
/// goes in the description instead, see [`marker_line`]).
pub const TAG: &str = "pve-rollout";

/// The description line that marks a VM as created by the rollout `rollout_id`.
pub fn marker_line(rollout_id: &str) -> String {
    format!("pve-rollout: {rollout_id}")
}

/// Whether a VM's config says it belongs to `rollout_id`.
pub fn is_ours(config: &VmConfig, rollout_id: &str) -> bool {
    let marker = marker_line(rollout_id);
    config
        .description()
        .is_some_and(|d| d.lines().any(|l| l.trim() == marker))
}

/// Where a clone comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSource {
    pub node: String,
    pub vmid: u32,
    /// `target` for a cross-node clone from a template on shared storage.
    pub target: Option<String>,
    /// The template's disk as the cluster reports it (`maxdisk`): what a full clone copies at
    /// most (a sparse disk copies only its allocated data).
    pub bytes: Option<u64>,
    /// Cloned on `node`, where the template's disks are local, then migrated to the VM's node.
    pub migrate: bool,
}

/// A VM this rollout found already on the cluster and recognised as its own (resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub status: String,
    pub lock: Option<String>,
    /// Where it was found (its planned node, unless it waits there to be migrated).
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVm {
    pub index: usize,
    pub name: String,
    pub vmid: u32,
    pub node: String,
    pub spec: VmSpec,
    pub source: CloneSource,
    pub adopted: Option<Adopted>,
    /// The last step the journal recorded for this VM (resume), if any.
    pub journaled: Option<Step>,
    /// The clone task the journal says was accepted for this VM and not seen finishing: a
    /// resumed run awaits it before anything else.
    pub clone_upid: Option<String>,
    /// The migration task the journal says was accepted for this VM (a resumed run awaits it).
    pub migrate_upid: Option<String>,
    /// The physical storage its clone copies onto: the storage id when shared by the cluster,
    /// else `node/storage` (clones onto one share its throughput).
    pub clone_storage: String,
}

impl PlannedVm {
    /// net0's static address (fixed, or given from a pool by the plan).
    pub fn static_address(&self) -> Option<HostAddress> {
        self.nic_address(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rollout_id: String,
    pub cluster: String,
    pub template_name: String,
    pub vms: Vec<PlannedVm>,
}

impl Plan {
    /// A finished rollout run again: every VM was verified according to the journal and is, on
    /// the cluster right now, ours, unlocked and running. Nothing is left to do.
    pub fn already_done(&self) -> bool {
        !self.vms.is_empty()
            && self.vms.iter().all(|vm| {
                vm.journaled == Some(Step::Verified)
                    && vm
                        .adopted
                        .as_ref()
                        .is_some_and(|a| a.status == "running" && a.lock.is_none())
            })
    }

    /// The plan as the watchers see it.
    pub fn planned(&self) -> Vec<super::event::PlannedVm> {
        self.vms
            .iter()
            .map(|vm| super::event::PlannedVm {
                index: vm.index,
                name: vm.name.clone(),
                vmid: vm.vmid,
                node: vm.node.clone(),
                nics: vm.nic_summaries(),
                pool: vm.spec.guest.pool.clone(),
                tags: vm
                    .spec
                    .guest
                    .tags
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .chain([TAG.to_string()])
                    .collect(),
            })
            .collect()
    }

    /// A fixed-width table for `plan` and the headless start.
    /// Per target storage: the clones this run will make and the bytes they copy (the
    /// template's disk each; VMs adopted from an earlier run copy nothing). Clones sharing a
    /// storage share its throughput, so this over its speed is the copying's lower bound.
    pub fn copy_per_storage(&self) -> Vec<(String, usize, u64)> {
        let mut per: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
        for vm in self.vms.iter().filter(|vm| vm.adopted.is_none()) {
            let e = per.entry(vm.spec.storage.as_str()).or_default();
            e.0 += 1;
            e.1 += vm.source.bytes.unwrap_or(0);
        }
        per.into_iter()
            .map(|(storage, (clones, bytes))| (storage.to_string(), clones, bytes))
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<24} {:>7} {:<10} {:>5} {:>7} {:>9} {:>8} {:<10} {}\n",
            "NAME", "VMID", "NODE", "CORES", "SOCKETS", "MEMORY", "DISK", "STORAGE", "SOURCE"
        );
        for vm in &self.vms {
            let source = match (&vm.adopted, &vm.source.target) {
                (Some(a), _) if vm.journaled == Some(Step::Verified) => {
                    format!("exists ({}), verified before", a.status)
                }
                (Some(a), _) => format!("exists ({}), adopt", a.status),
                (None, Some(t)) => {
                    format!("clone {} on {} -> {t}", vm.source.vmid, vm.source.node)
                }
                (None, None) if vm.source.migrate => format!(
                    "clone {} on {}, migrate -> {}",
                    vm.source.vmid, vm.source.node, vm.node
                ),
                (None, None) => format!("clone {} on {}", vm.source.vmid, vm.source.node),
            };
            out.push_str(&format!(
                "{:<24} {:>7} {:<10} {:>5} {:>7} {:>8}M {:>7}G {:<10} {}\n",
                vm.name,
                vm.vmid,
                vm.node,
                vm.spec.cores,
                vm.spec.sockets,
                vm.spec.memory,
                vm.spec.disk_size / (1 << 30),
                vm.spec.storage,
                source
            ));
        }
        out
    }
}

/// Resolves the plan against the cluster. Read-only: sends GETs only.
pub async fn build(client: &Client, config: &Config) -> Result<Plan, EngineError> {
    let rollout_id = config.rollout.name.clone();
    let mut problems = Vec::new();

    // The journal of an earlier run (resume): its VM ids are reused, never handed to others.
    let journal_path = journal::path_in(&config.output.dir);
    let history = History::read(&journal_path)?;
    if let Some(other) = history.rollout.as_deref().filter(|r| *r != rollout_id) {
        problems.push(format!(
            "output.dir: the journal {} belongs to rollout '{other}', not '{rollout_id}'; use another output dir (or the other rollout's name)",
            journal_path.display()
        ));
    }

    let nodes = client.nodes().await?;
    let resources = client.cluster_resources(None).await?;
    let vms: Vec<&Resource> = resources.iter().filter(|r| r.is_guest()).collect();
    let storages: Vec<&Resource> = resources.iter().filter(|r| r.is_storage()).collect();

    // Nodes: named ones must exist and be online.
    let wanted_nodes: Vec<String> = if config.rollout.nodes.is_empty() {
        nodes
            .iter()
            .filter(|n| n.is_online())
            .map(|n| n.node.clone())
            .collect()
    } else {
        config.rollout.nodes.clone()
    };
    let by_name: BTreeMap<&str, &NodeInfo> = nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    let mut online = Vec::new();
    for node in &wanted_nodes {
        match by_name.get(node.as_str()) {
            None => problems.push(format!(
                "rollout.nodes: node '{node}' is not in the cluster (nodes: {})",
                nodes
                    .iter()
                    .map(|n| n.node.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(n) if !n.is_online() => {
                problems.push(format!("node '{node}' is {}, not online", n.status))
            }
            Some(_) => online.push(node.clone()),
        }
    }

    // Templates: every template with the configured name (or id), per node.
    let templates: Vec<&Resource> = vms
        .iter()
        .copied()
        .filter(|r| r.template)
        .filter(|r| match &config.rollout.template {
            TemplateRef::Name(name) => r.name.as_deref() == Some(name.as_str()),
            TemplateRef::Id(id) => r.vmid == Some(*id),
        })
        .collect();
    let template_name = match &config.rollout.template {
        TemplateRef::Name(name) => name.clone(),
        TemplateRef::Id(id) => templates
            .first()
            .and_then(|t| t.name.clone())
            .unwrap_or_else(|| id.to_string()),
    };
    if templates.is_empty() {
        let not_template = vms.iter().any(|r| match &config.rollout.template {
            TemplateRef::Name(name) => r.name.as_deref() == Some(name.as_str()),
            TemplateRef::Id(id) => r.vmid == Some(*id),
        });
        problems.push(if not_template {
            format!("rollout.template: '{template_name}' exists but is not a template (convert it with `qm template`)")
        } else {
            format!("rollout.template: no template named '{template_name}' on the cluster")
        });
    }
    // Which templates have every volume on shared storage (usable with `target`).
    let shared_storages: BTreeSet<&str> = storages
        .iter()
        .filter(|s| s.shared)
        .filter_map(|s| s.storage.as_deref())
        .collect();
    let mut shared_template: Option<(String, u32)> = None;
    // Templates whose disks a linked clone cannot share: (node, id) -> those disks.
    let mut unlinkable: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    for t in &templates {
        let (Some(node), Some(vmid)) = (t.node.as_deref(), t.vmid) else {
            continue;
        };
        let cfg = client.vm_config(node, vmid).await?;
        unlinkable.insert((node.to_string(), vmid), cfg.unlinkable_disks());
        if !cfg.has_cloud_init_drive() {
            problems.push(format!(
                "rollout.template: the template {vmid} on {node} has no cloud-init drive, so its clones would ignore ipconfig0, ciuser and sshkeys; add one (qm set {vmid} --ide2 <storage>:cloudinit)"
            ));
        }
        if cfg
            .volume_storages()
            .iter()
            .all(|sid| shared_storages.contains(sid.as_str()))
        {
            shared_template = Some((node.to_string(), vmid));
            break;
        }
    }

    // Free memory per node (bytes), for placement.
    let mut free: BTreeMap<String, i128> = BTreeMap::new();
    for node in &online {
        let status = client.node_status(node).await?;
        // Overcommit on purpose: the VMs may ask for a multiple of what is free.
        let factor = config.rollout.memory_overcommit;
        free.insert(node.clone(), (status.memory_free as f64 * factor) as i128);
    }

    // Existing VMs by name and id.
    let by_vm_name: BTreeMap<&str, &Resource> = vms
        .iter()
        .filter_map(|r| r.name.as_deref().map(|n| (n, *r)))
        .collect();
    let used_ids: BTreeSet<u32> = vms.iter().filter_map(|r| r.vmid).collect();

    let entries = config.vms();
    let mut assigned: BTreeSet<u32> = history.vms.values().map(|r| r.vmid).collect();
    let mut next_candidate: Option<u32> = None;
    let mut planned = Vec::new();
    // This rollout's VMs per node so far (for `spread`).
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        // Adopt our own VM of the same name (resume); refuse anyone else's.
        let mut adopted = None;
        let journaled = history.vms.get(&entry.name);
        let mut vmid = entry.vmid;
        let mut node = entry.node.clone();
        if let Some(j) = journaled.filter(|_| entry.vmid.is_none()) {
            // A rerun picks the ids (and nodes) the journal assigned.
            vmid = Some(j.vmid);
            if node.is_none() && !j.node.is_empty() {
                node = Some(j.node.clone());
            }
        }
        if let Some(existing) = by_vm_name.get(entry.name.as_str()) {
            let (Some(enode), Some(evmid)) = (existing.node.clone(), existing.vmid) else {
                problems.push(format!("VM name '{}' is taken", entry.name));
                continue;
            };
            let cfg = client.vm_config(&enode, evmid).await?;
            if is_ours(&cfg, &rollout_id) {
                adopted = Some(Adopted {
                    status: existing.status.clone().unwrap_or_else(|| "unknown".into()),
                    lock: cfg.lock().map(str::to_string),
                    node: enode.clone(),
                });
                vmid = Some(evmid);
                node = Some(enode);
            } else {
                problems.push(format!(
                    "VM name '{}' is taken by VM {evmid} on {enode}, which this rollout did not create; rename the VM in deploy.toml or remove the other VM",
                    entry.name
                ));
                continue;
            }
        }

        let vmid = match vmid {
            Some(id) if adopted.is_none() && journaled.is_some_and(|j| j.vmid == id) => {
                // /cluster/resources lags (pvestatd) and a VM being cloned has no name yet, so
                // the VM holding the id is judged by its own config.
                let holder = vms.iter().find(|r| r.vmid == Some(id));
                let mut holder_name = "(no name)".to_string();
                if let Some(hnode) = holder.and_then(|r| r.node.clone()) {
                    let cfg = client.vm_config(&hnode, id).await?;
                    let clone_asked = journaled.is_some_and(|j| {
                        matches!(j.step, Step::CloneRequested | Step::CloneAccepted)
                    });
                    let named = cfg.get("name");
                    let ours = is_ours(&cfg, &rollout_id) && named == Some(entry.name.as_str());
                    // Our clone may still run: PVE names and describes the VM only at its
                    // end, so it is adopted now and judged by its marker once unlocked.
                    let in_flight = clone_asked
                        && cfg.lock() == Some("clone")
                        && cfg.get("description").is_none();
                    if ours || in_flight {
                        adopted = Some(Adopted {
                            status: "unknown".into(),
                            lock: cfg.lock().map(str::to_string),
                            node: hnode.clone(),
                        });
                        node = Some(hnode);
                    }
                    holder_name = named.unwrap_or("(no name)").to_string();
                }
                if adopted.is_none() && used_ids.contains(&id) {
                    let holder = holder_name;
                    problems.push(format!(
                        "VM id {id}, which the journal {} assigned to '{}', is now used by VM '{holder}'; this rollout will not take it over (remove that VM, or move the journal away to plan new ids)",
                        journal_path.display(),
                        entry.name
                    ));
                    continue;
                }
                id
            }
            Some(id) => {
                if adopted.is_none() && used_ids.contains(&id) {
                    problems.push(format!(
                        "vm_configs.\"{}\".vmid: VM id {id} is already in use",
                        entry.name
                    ));
                    continue;
                }
                if adopted.is_none() && assigned.contains(&id) {
                    problems.push(format!(
                        "vm_configs.\"{}\".vmid: VM id {id} belongs to another VM of this rollout (journal {}); pick another id",
                        entry.name,
                        journal_path.display()
                    ));
                    continue;
                }
                id
            }
            None => {
                let start = match next_candidate {
                    Some(c) => c,
                    None => match config.rollout.vmid_range {
                        Some((lo, _)) => lo,
                        None => client.next_id(None).await?,
                    },
                };
                let upper = config
                    .rollout
                    .vmid_range
                    .map(|(_, hi)| hi)
                    .unwrap_or(999_999_999);
                let mut id = start;
                while id <= upper && (used_ids.contains(&id) || assigned.contains(&id)) {
                    id += 1;
                }
                if id > upper {
                    problems.push(format!(
                        "rollout.vmid_range: no free VM id left for '{}' (range ends at {upper})",
                        entry.name
                    ));
                    continue;
                }
                next_candidate = Some(id + 1);
                id
            }
        };
        assigned.insert(vmid);
        // A resume: a VM cloned where its template lives waits there to be migrated.
        if let Some(to) = super::source::pending_destination(adopted.as_ref(), journaled) {
            node = Some(to);
        }

        // Placement: the pinned node, else by `rollout.placement`.
        let memory = entry.spec.memory as i128 * 1024 * 1024;
        let node = match node {
            Some(n) => n,
            None => match place(config.rollout.placement, &online, &free, &placed) {
                Some(n) => n,
                None => {
                    problems.push("no online node to place VMs on".to_string());
                    break;
                }
            },
        };
        if let (None, Some(f)) = (&adopted, free.get_mut(&node)) {
            *f -= memory;
        }
        *placed.entry(node.clone()).or_default() += 1;

        // Storage on that node.
        let target_storage = storages.iter().find(|s| {
            s.storage.as_deref() == Some(entry.spec.storage.as_str())
                && (s.node.as_deref() == Some(node.as_str()) || s.shared)
        });
        let storage_ok = target_storage.is_some();
        let clone_storage = match target_storage {
            Some(s) if s.shared => entry.spec.storage.clone(),
            _ => format!("{node}/{}", entry.spec.storage),
        };
        let linked = entry.spec.clone == CloneMode::Linked;
        if !storage_ok && adopted.is_none() && !linked {
            problems.push(format!(
                "storage '{}' (for '{}') does not exist on node {node}",
                entry.spec.storage, entry.name
            ));
        }

        let wanted = super::source::Wanted {
            name: &entry.name,
            spec: &entry.spec,
            node: &node,
            checked: adopted.is_none(),
        };
        let found = super::source::Templates {
            all: &templates,
            shared: shared_template.as_ref(),
            shared_storages: &shared_storages,
        };
        let source = super::source::choose(&wanted, &found, &storages, &nodes, &mut problems);
        let Some(source) = source else { continue };
        // A clone migrated afterwards copies onto the template's node first.
        let clone_storage = match source.migrate {
            true => format!("{}/{}", source.node, entry.spec.storage),
            false => clone_storage,
        };
        super::source::check_adopted(&entry.name, adopted.as_ref(), &source, &node, &mut problems);
        if let Some(disks) = unlinkable
            .get(&(source.node.clone(), source.vmid))
            .filter(|d| linked && adopted.is_none() && !d.is_empty())
        {
            problems.push(format!(
                "'{}' is a linked clone, but the template {} on {} has disks a linked clone cannot share: {} (not base volumes: its storage cannot snapshot them); use clone = \"full\", or keep the template on lvmthin, zfs, rbd or a qcow2 directory storage",
                entry.name,
                source.vmid,
                source.node,
                disks.join(", ")
            ));
        }
        if let Some(a) = adopted.as_mut() {
            // The resources' status lags; the VM's own status does not.
            if let Ok(st) = client.vm_status(&node, vmid).await {
                a.status = st.status;
                a.lock = st.lock.or(a.lock.take());
            }
        }
        let clone_upid = journaled
            .filter(|j| j.step == Step::CloneAccepted && j.vmid == vmid)
            .and_then(|j| j.clone_upid.clone());
        let migrate_upid = journaled
            .filter(|j| j.vmid == vmid && source.migrate)
            .and_then(|j| j.migrate_upid.clone());
        planned.push(PlannedVm {
            journaled: journaled.filter(|j| j.vmid == vmid).map(|j| j.step),
            clone_upid,
            migrate_upid,
            clone_storage,
            index,
            name: entry.name,
            vmid,
            node,
            spec: entry.spec,
            source,
            adopted,
        });
    }

    super::snippets::check(client, &planned, &storages, &mut problems).await?;
    super::snippets::check_pools(client, &planned, &mut problems).await?;
    super::extra_disks::check(client, &planned, &storages, &mut problems).await?;
    super::nics::check(client, &planned, &mut problems).await?;
    let static_somewhere = planned
        .iter()
        .flat_map(|vm| &vm.spec.networks)
        .any(|nic| nic.address != Addressing::Dhcp || nic.static_ip6().is_some());
    let taken = if static_somewhere {
        super::addresses::on_cluster(client, &vms, &planned, &rollout_id).await?
    } else {
        BTreeMap::new()
    };
    super::addresses::assign(&mut planned, &history, &taken, &mut problems);

    for (node, f) in &free {
        if *f < 0 {
            problems.push(format!(
                "node {node} lacks {} MiB of free memory for the VMs placed on it (rollout.memory_overcommit = {}); add nodes, pin VMs elsewhere, or overcommit on purpose",
                (-*f) / (1024 * 1024),
                config.rollout.memory_overcommit
            ));
        }
    }

    if !problems.is_empty() {
        return Err(EngineError::Preflight(problems));
    }
    // Re-number in plan order (skipped entries were reported as problems above).
    for (i, vm) in planned.iter_mut().enumerate() {
        vm.index = i;
    }
    Ok(Plan {
        rollout_id,
        cluster: client.url().to_string(),
        template_name,
        vms: planned,
    })
}

/// The node an unpinned VM goes to: the most free memory left, or (`spread`) the fewest of
/// this rollout's VMs so far, the first in `nodes` order on a tie.
fn place(
    placement: Placement,
    online: &[String],
    free: &BTreeMap<String, i128>,
    placed: &BTreeMap<String, usize>,
) -> Option<String> {
    match placement {
        Placement::MostFreeMemory => free.iter().max_by_key(|(_, f)| **f).map(|(n, _)| n.clone()),
        Placement::Spread => online
            .iter()
            .min_by_key(|n| placed.get(*n).copied().unwrap_or(0))
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> VmConfig {
        VmConfig {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn marker_recognises_our_vms_only() {
        let ours = cfg(&[("description", "web tier\npve-rollout: prod-web\n")]);
        let encoded = cfg(&[("description", "pve-rollout%3A%20prod-web%0A")]);
        let other = cfg(&[("description", "pve-rollout: staging\n")]);
        assert!(is_ours(&ours, "prod-web"));
        assert!(is_ours(&encoded, "prod-web"));
        assert!(!is_ours(&other, "prod-web"));
        assert!(!is_ours(&cfg(&[]), "prod-web"));
    }
}
