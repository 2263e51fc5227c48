//! What the plan checks of the guest settings that name cluster objects: `cicustom`'s snippet
//! files on every node a VM lands on, and the resource `pool`s.

use std::collections::BTreeMap;

use crate::pve::{CiCustom, Client, Resource};

use super::error::EngineError;
use super::plan::PlannedVm;

/// Every `cicustom` file must exist, on a storage whose content includes `snippets`, on every
/// node a VM using it lands on: PVE only finds out when it starts the VM.
pub(super) async fn check(
    client: &Client,
    planned: &[PlannedVm],
    storages: &[&Resource],
    problems: &mut Vec<String>,
) -> Result<(), EngineError> {
    let mut listed: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for vm in planned.iter().filter(|vm| vm.adopted.is_none()) {
        let Some(custom) = &vm.spec.cicustom else {
            continue;
        };
        for (kind, volume) in custom.volumes() {
            let sid = CiCustom::storage_of(volume).unwrap_or_default();
            let storage = storages.iter().find(|s| {
                s.storage.as_deref() == Some(sid) && s.node.as_deref() == Some(vm.node.as_str())
            });
            let Some(storage) = storage else {
                problems.push(format!(
                    "cicustom.{kind} of '{}': storage '{sid}' does not exist on node {}",
                    vm.name, vm.node
                ));
                continue;
            };
            let content = storage.content.as_deref().unwrap_or_default();
            if !content.split(',').any(|c| c == "snippets") {
                problems.push(format!(
                    "cicustom.{kind} of '{}': storage '{sid}' on {} does not hold snippets (content: {content}); add snippets to its content (pvesm set {sid} --content {content},snippets) or use another storage",
                    vm.name, vm.node
                ));
                continue;
            }
            let key = (vm.node.clone(), sid.to_string());
            if !listed.contains_key(&key) {
                let volumes = client.storage_snippets(&vm.node, sid).await?;
                listed.insert(key.clone(), volumes);
            }
            let volumes = &listed[&key];
            if !volumes.iter().any(|v| v == volume) {
                problems.push(format!(
                    "cicustom.{kind} of '{}': {volume} does not exist on node {} (snippets there: {}); copy the file to the storage's snippets/ directory on that node",
                    vm.name,
                    vm.node,
                    if volumes.is_empty() { "none".to_string() } else { volumes.join(", ") }
                ));
            }
        }
    }
    Ok(())
}

/// Every `pool` named must exist: PVE refuses each clone naming a missing one, so the plan
/// says so before the first is asked for.
pub(super) async fn check_pools(
    client: &Client,
    planned: &[PlannedVm],
    problems: &mut Vec<String>,
) -> Result<(), EngineError> {
    let wanted: std::collections::BTreeSet<&str> = planned
        .iter()
        .filter(|vm| vm.adopted.is_none())
        .filter_map(|vm| vm.spec.guest.pool.as_deref())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let pools = client.pools().await?;
    for pool in wanted.into_iter().filter(|p| !pools.iter().any(|q| q == p)) {
        problems.push(format!(
            "pool '{pool}' does not exist (pools: {}); create it (pveum pool add {pool}) or fix the name",
            if pools.is_empty() { "none".to_string() } else { pools.join(", ") }
        ));
    }
    Ok(())
}
