//! What the plan checks of the extra disks (`disks`): each storage exists on the VM's node and
//! holds VM images, and each slot is free in the template the VM is cloned from (a disk there
//! would be replaced, its volume left behind as `unused`).

use std::collections::BTreeMap;

use crate::pve::{Client, Resource, VmConfig};

use super::error::EngineError;
use super::plan::PlannedVm;

/// Storage types whose volumes are block devices or datasets: PVE allocates `raw` there and
/// refuses another format (`unsupported format`).
const RAW_ONLY: &[&str] = &[
    "lvm",
    "lvmthin",
    "zfspool",
    "zfs",
    "rbd",
    "iscsi",
    "iscsidirect",
];

pub(super) async fn check(
    client: &Client,
    planned: &[PlannedVm],
    storages: &[&Resource],
    problems: &mut Vec<String>,
) -> Result<(), EngineError> {
    let mut templates: BTreeMap<(String, u32), VmConfig> = BTreeMap::new();
    for vm in planned.iter().filter(|vm| vm.adopted.is_none()) {
        for disk in &vm.spec.disks {
            let what = format!("disks: {} of '{}'", disk.slot, vm.name);
            let storage = storages.iter().find(|s| {
                s.storage.as_deref() == Some(disk.storage.as_str())
                    && s.node.as_deref() == Some(vm.node.as_str())
            });
            match storage {
                None => problems.push(format!(
                    "{what}: storage '{}' does not exist on node {}; name a storage of that node (pvesm status)",
                    disk.storage, vm.node
                )),
                Some(s) => {
                    let content = s.content.as_deref().unwrap_or_default();
                    if !content.split(',').any(|c| c == "images") {
                        problems.push(format!(
                            "{what}: storage '{}' on {} does not hold VM images (content: {content}); use a storage for disk images, or add images to its content",
                            disk.storage, vm.node
                        ));
                    }
                    let kind = s.plugintype.as_deref().unwrap_or_default();
                    if let Some(format) = disk.format.as_deref().filter(|f| *f != "raw")
                        && RAW_ONLY.contains(&kind)
                    {
                        problems.push(format!(
                            "{what}: storage '{}' ({kind}) allocates raw volumes only, not {format}; leave format out, or use a directory storage",
                            disk.storage
                        ));
                    }
                }
            }
            let key = (vm.source.node.clone(), vm.source.vmid);
            if !templates.contains_key(&key) {
                let config = client.vm_config(&key.0, key.1).await?;
                templates.insert(key.clone(), config);
            }
            if let Some(used) = templates[&key].get(&disk.slot) {
                problems.push(format!(
                    "{what}: the template {} on {} uses {} already ({used}); pick a free slot",
                    key.1, key.0, disk.slot
                ));
            }
        }
    }
    Ok(())
}
