//! `cicustom`'s snippet files, checked at plan on every node a VM lands on.

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
