//! Where a VM's clone comes from: the template on its node; one with every volume on shared
//! storage, cloned with `target`; or one with local disks on another node, cloned there (onto
//! the VM's `storage` on that node) and the stopped clone migrated to its node, as the bpg
//! provider does. The plan refuses a source only where its clone (or migration) cannot work.

use std::collections::BTreeSet;

use crate::config::{CloneMode, VmSpec};
use crate::pve::{NodeInfo, Resource};

use super::journal::{Step, VmRecord};
use super::plan::{Adopted, CloneSource};

/// The templates the rollout's template name (or id) matches.
pub(super) struct Templates<'a> {
    pub all: &'a [&'a Resource],
    /// (node, vmid) of one with every volume on shared storage.
    pub shared: Option<&'a (String, u32)>,
    pub shared_storages: &'a BTreeSet<&'a str>,
}

/// The template on `vm.node`, else a shared one cloned with `target`, else one to clone where
/// it lives and migrate from.
pub(super) fn choose(
    vm: &Wanted<'_>,
    templates: &Templates<'_>,
    storages: &[&Resource],
    nodes: &[NodeInfo],
    problems: &mut Vec<String>,
) -> Option<CloneSource> {
    let local = templates
        .all
        .iter()
        .find(|t| t.node.as_deref() == Some(vm.node));
    if let Some(t) = local {
        return t.vmid.map(|vmid| CloneSource {
            node: vm.node.to_string(),
            vmid,
            target: None,
            bytes: t.maxdisk,
            migrate: false,
        });
    }
    // A clone with `target` must land on shared storage (PVE refuses a local one); otherwise
    // it is made where a template lives and migrated.
    let linked = vm.spec.clone == CloneMode::Linked;
    let shared_target = linked || templates.shared_storages.contains(vm.spec.storage.as_str());
    let Some((tnode, tvmid)) = templates.shared.filter(|_| shared_target) else {
        return migrated(vm, templates.all, storages, nodes, problems);
    };
    Some(CloneSource {
        node: tnode.clone(),
        vmid: *tvmid,
        target: Some(vm.node.to_string()),
        bytes: templates
            .all
            .iter()
            .find(|t| t.vmid == Some(*tvmid))
            .and_then(|t| t.maxdisk),
        migrate: false,
    })
}

/// The VM asking for a source.
pub(super) struct Wanted<'a> {
    pub name: &'a str,
    pub spec: &'a VmSpec,
    /// Where it is placed.
    pub node: &'a str,
    /// Check that a clone and migration would work (not for a VM adopted as it is).
    pub checked: bool,
}

/// The template to clone on its own node and migrate from: one on an online node, preferring
/// one whose node holds `storage`. `None` (with the reason) when there is no template at all or
/// none can serve.
fn migrated(
    vm: &Wanted<'_>,
    templates: &[&Resource],
    storages: &[&Resource],
    nodes: &[NodeInfo],
    problems: &mut Vec<String>,
) -> Option<CloneSource> {
    let online = |n: &str| nodes.iter().any(|i| i.node == n && i.is_online());
    let holds_storage = |n: &str| {
        storages.iter().any(|s| {
            s.storage.as_deref() == Some(vm.spec.storage.as_str())
                && s.node.as_deref() == Some(n)
                && s.content
                    .as_deref()
                    .is_some_and(|c| c.split(',').any(|c| c == "images"))
        })
    };
    let usable: Vec<(&str, u32, Option<u64>)> = templates
        .iter()
        .filter_map(|t| Some((t.node.as_deref()?, t.vmid?, t.maxdisk)))
        .filter(|(n, _, _)| online(n))
        .collect();
    let Some(&(tnode, tvmid, bytes)) = usable
        .iter()
        .find(|(n, _, _)| holds_storage(n))
        .or(usable.first())
    else {
        if !templates.is_empty() {
            problems.push(format!(
                "node {} has no usable template (none on that node, none with all volumes on shared storage, and none on an online node to clone and migrate from)",
                vm.node
            ));
        }
        return None;
    };
    if vm.checked {
        let why = format!(
            "'{}' is placed on {}, where no template can be cloned onto storage '{}': it is cloned on {tnode}, where the template {tvmid} lives, and migrated",
            vm.name, vm.node, vm.spec.storage
        );
        if vm.spec.clone == CloneMode::Linked {
            problems.push(format!(
                "{why}, but a linked clone cannot migrate (PVE refuses to move a disk that is a clone of the template's base volume); use clone = \"full\", put the template on shared storage, or a copy of it on {}",
                vm.node
            ));
        } else if !holds_storage(tnode) {
            problems.push(format!(
                "{why}, but storage '{}' (the clone's storage there) does not exist on {tnode} or holds no images; use a storage both nodes have, or put a template on {}",
                vm.spec.storage, vm.node
            ));
        }
    }
    Some(CloneSource {
        node: tnode.to_string(),
        vmid: tvmid,
        target: None,
        bytes,
        migrate: true,
    })
}

/// The node a resumed VM still goes to: found where it was cloned (`adopted.node`), not yet
/// migrated to the node the journal assigned it (its step is before `Configured`, which comes
/// only after the migration).
pub(super) fn pending_destination(
    adopted: Option<&Adopted>,
    journaled: Option<&VmRecord>,
) -> Option<String> {
    let (found, j) = (adopted?, journaled?);
    let before_configured = matches!(
        j.step,
        Step::Assigned | Step::CloneRequested | Step::CloneAccepted | Step::Cloned
    );
    (before_configured && !j.node.is_empty() && j.node != found.node).then(|| j.node.clone())
}

/// A VM found on another node than its own can only be one waiting where its template lives.
pub(super) fn check_adopted(
    name: &str,
    adopted: Option<&Adopted>,
    source: &CloneSource,
    node: &str,
    problems: &mut Vec<String>,
) {
    let Some(found) = adopted.filter(|a| a.node != node) else {
        return;
    };
    if !(source.migrate && source.node == found.node) {
        problems.push(format!(
            "'{name}' is on {}, not on {node} where the journal placed it, and would not be migrated from there now; migrate it by hand (qm migrate) or remove it",
            found.node
        ));
    }
}
