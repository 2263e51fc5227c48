//! What a cluster offers a rollout: online nodes and their free memory, cloud-init templates
//! (template = 1 with a cloud-init drive), bridges per node, storages for disk images and for
//! snippets. Then the choices `init` proposes from it.

use std::collections::BTreeSet;

use crate::pve::discovery::{NetworkInterface, NodeStorage};
use crate::pve::{Client, PveError, VmConfig};

/// A template with a cloud-init drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// The drive key holding the cloud-init volume (`ide2`, `scsi1`, ...).
    pub cloudinit_drive: String,
    /// Bytes of `scsi0`/`virtio0`/... as configured, when readable.
    pub boot_disk_size: Option<u64>,
    /// The bridge of its `net0`.
    pub bridge: Option<String>,
    /// Its boot disk's storage.
    pub storage: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub node: String,
    pub mem_free: Option<u64>,
    pub mem_total: Option<u64>,
    /// Bridges, or `None` when the node's network could not be read (the reason is in
    /// `Discovery::notes`).
    pub bridges: Option<Vec<String>>,
    /// Active, enabled storages holding `images`.
    pub image_storages: Vec<NodeStorage>,
    /// Active, enabled storages holding `snippets`.
    pub snippet_storages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub version: String,
    /// Online nodes, in the cluster's order.
    pub nodes: Vec<NodeFacts>,
    pub offline: Vec<String>,
    pub templates: Vec<Template>,
    /// Things that could not be read and what was done instead.
    pub notes: Vec<String>,
}

/// The drive key holding a cloud-init volume (`...:vm-9000-cloudinit,media=cdrom`), if any.
pub fn cloudinit_drive(config: &VmConfig) -> Option<String> {
    config.values.iter().find_map(|(key, value)| {
        let bus = key.trim_end_matches(|c: char| c.is_ascii_digit());
        let is_drive = matches!(bus, "ide" | "scsi" | "sata" | "virtio") && bus.len() < key.len();
        let volume = value.split(',').next().unwrap_or("");
        (is_drive && volume.contains("cloudinit")).then(|| key.clone())
    })
}

/// The boot disk: the first of scsi0, virtio0, sata0, ide0 that is not the cloud-init drive.
fn boot_disk(config: &VmConfig) -> Option<(String, Option<u64>)> {
    ["scsi0", "virtio0", "sata0", "ide0"]
        .iter()
        .find_map(|key| {
            let value = config.get(key)?;
            if value.contains("cloudinit") || value.contains("media=cdrom") {
                return None;
            }
            let storage = value.split(':').next()?.to_string();
            let size = value
                .split(',')
                .find_map(|part| part.strip_prefix("size="))
                .and_then(|s| crate::config::parse_size(s).ok());
            Some((storage, size))
        })
}

fn net0_bridge(config: &VmConfig) -> Option<String> {
    config
        .get("net0")?
        .split(',')
        .find_map(|part| part.strip_prefix("bridge="))
        .map(str::to_string)
}

/// Reads everything `init` needs. Only the version, the node list and the VM lists are
/// required; a node's network or storage that cannot be read becomes a note.
pub async fn discover(client: &Client) -> Result<Discovery, PveError> {
    let version = client.version().await?.version;
    let mut notes = Vec::new();
    let mut nodes = Vec::new();
    let mut offline = Vec::new();
    let mut templates = Vec::new();
    for info in client.nodes().await? {
        if info.status != "online" {
            offline.push(info.node);
            continue;
        }
        let node = info.node.clone();
        let bridges = match client.node_network(&node, Some("any_bridge")).await {
            Ok(list) => Some(
                list.into_iter()
                    .filter(NetworkInterface::is_bridge)
                    .map(|i| i.iface)
                    .collect(),
            ),
            Err(e) => {
                notes.push(format!("bridges of {node}: not readable ({e})"));
                None
            }
        };
        let usable = |s: &NodeStorage| s.active && s.enabled;
        let image_storages = match client.node_storage(&node, Some("images")).await {
            Ok(list) => list.into_iter().filter(usable).collect(),
            Err(e) => {
                notes.push(format!("storages of {node}: not readable ({e})"));
                Vec::new()
            }
        };
        let snippet_storages = match client.node_storage(&node, Some("snippets")).await {
            Ok(list) => list.into_iter().filter(usable).map(|s| s.storage).collect(),
            Err(_) => Vec::new(),
        };
        for vm in client.vm_list(&node).await? {
            if !vm.template {
                continue;
            }
            let config = match client.vm_config(&node, vm.vmid).await {
                Ok(config) => config,
                Err(e) => {
                    notes.push(format!(
                        "template {} on {node}: config not readable ({e})",
                        vm.vmid
                    ));
                    continue;
                }
            };
            let Some(drive) = cloudinit_drive(&config) else {
                continue;
            };
            let disk = boot_disk(&config);
            templates.push(Template {
                name: vm.name.clone().unwrap_or_else(|| vm.vmid.to_string()),
                vmid: vm.vmid,
                node: node.clone(),
                cloudinit_drive: drive,
                boot_disk_size: disk.as_ref().and_then(|d| d.1),
                bridge: net0_bridge(&config),
                storage: disk.map(|d| d.0),
            });
        }
        nodes.push(NodeFacts {
            node,
            mem_free: match (info.maxmem, info.mem) {
                (Some(max), Some(used)) => Some(max.saturating_sub(used)),
                _ => None,
            },
            mem_total: info.maxmem,
            bridges,
            image_storages,
            snippet_storages,
        });
    }
    templates.sort_by_key(|t| t.vmid);
    Ok(Discovery {
        version,
        nodes,
        offline,
        templates,
        notes,
    })
}

/// Where the VMs go and on what: the nodes, a storage every one of them has for images, and a
/// bridge every one of them has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub nodes: Vec<String>,
    pub storage: String,
    pub bridge: String,
}

impl Discovery {
    /// The template to propose: `wanted` (a name or vmid) when given, else one named `ubuntu`
    /// (the original flow's), else the first.
    pub fn template(&self, wanted: Option<&str>) -> Result<&Template, String> {
        let names = || {
            self.templates
                .iter()
                .map(|t| format!("{} ({} on {})", t.name, t.vmid, t.node))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.templates.is_empty() {
            return Err(
                "no cloud-init template on the cluster (a VM with template = 1 and a \
                        cloud-init drive); make one first (qm set <id> --ide2 <storage>:cloudinit, \
                        qm template <id>)"
                    .into(),
            );
        }
        match wanted {
            Some(w) => self
                .templates
                .iter()
                .find(|t| t.name == w || t.vmid.to_string() == w)
                .ok_or_else(|| format!("no cloud-init template '{w}'; found: {}", names())),
            None => Ok(self
                .templates
                .iter()
                .find(|t| t.name == "ubuntu")
                .unwrap_or(&self.templates[0])),
        }
    }

    fn facts(&self, node: &str) -> Option<&NodeFacts> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// Nodes, storage and bridge for clones of `template`. Without `nodes`: every online node
    /// when a shared image storage reaches them all (PVE clones across nodes only onto shared
    /// storage), else the template's node alone.
    pub fn placement(
        &self,
        template: &Template,
        nodes: &[String],
        storage: Option<&str>,
        bridge: Option<&str>,
    ) -> Result<Placement, String> {
        let shared_everywhere = |s: &NodeStorage| {
            s.shared
                && self
                    .nodes
                    .iter()
                    .all(|n| n.image_storages.iter().any(|x| x.storage == s.storage))
        };
        let home = self
            .facts(&template.node)
            .ok_or_else(|| format!("the template's node {} is not online", template.node))?;
        let nodes: Vec<String> = if !nodes.is_empty() {
            for n in nodes {
                if self.facts(n).is_none() {
                    return Err(format!(
                        "node '{n}' is not an online node; online: {}",
                        self.nodes
                            .iter()
                            .map(|n| n.node.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            nodes.to_vec()
        } else if self.nodes.len() > 1 && home.image_storages.iter().any(shared_everywhere) {
            self.nodes.iter().map(|n| n.node.clone()).collect()
        } else {
            vec![template.node.clone()]
        };
        let on_all = |name: &str| {
            nodes.iter().all(|n| {
                self.facts(n)
                    .is_some_and(|f| f.image_storages.iter().any(|s| s.storage == name))
            })
        };
        let cross_node = nodes.iter().any(|n| *n != template.node);
        let storage = match storage {
            Some(s) if on_all(s) => s.to_string(),
            Some(s) => {
                return Err(format!(
                    "storage '{s}' does not hold images on every node of {nodes:?}"
                ));
            }
            None => {
                // The most free space among the candidates; shared only when clones cross nodes.
                let mut candidates: Vec<&NodeStorage> = home
                    .image_storages
                    .iter()
                    .filter(|s| on_all(&s.storage) && (!cross_node || s.shared))
                    .collect();
                candidates.sort_by_key(|s| std::cmp::Reverse(s.avail.unwrap_or(0)));
                candidates
                    .first()
                    .map(|s| s.storage.clone())
                    .ok_or_else(|| {
                        format!(
                            "no storage for disk images {} on {nodes:?}",
                            if cross_node { "shared by all of" } else { "on" }
                        )
                    })?
            }
        };
        let common: Option<BTreeSet<String>> = nodes
            .iter()
            .try_fold(None, |acc: Option<BTreeSet<String>>, n| {
                let bridges: BTreeSet<String> =
                    self.facts(n)?.bridges.clone()?.into_iter().collect();
                Some(Some(match acc {
                    Some(acc) => acc.intersection(&bridges).cloned().collect(),
                    None => bridges,
                }))
            })
            .flatten();
        let bridge = match (bridge, &common) {
            (Some(b), Some(common)) if !common.contains(b) => {
                return Err(format!(
                    "bridge '{b}' is not on every node of {nodes:?}; common: {common:?}"
                ));
            }
            (Some(b), _) => b.to_string(),
            (None, Some(common)) => template
                .bridge
                .clone()
                .filter(|b| common.contains(b))
                .or_else(|| common.iter().next().cloned())
                .ok_or_else(|| format!("no bridge common to {nodes:?}"))?,
            // Bridges not readable: the template's own is the best guess.
            (None, None) => template
                .bridge
                .clone()
                .ok_or("bridges not readable and the template has no net0 bridge; pass --bridge")?,
        };
        Ok(Placement {
            nodes,
            storage,
            bridge,
        })
    }

    /// Free memory over `nodes`, bytes.
    pub fn free_memory(&self, nodes: &[String]) -> Option<u64> {
        nodes
            .iter()
            .map(|n| self.facts(n).and_then(|f| f.mem_free))
            .sum()
    }
}
