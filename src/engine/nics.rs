//! What the plan checks of every VM's NICs against the cluster: each bridge exists on the node
//! the VM lands on (PVE only finds out when it starts the VM), and the VLAN tag and MTU are in
//! PVE's ranges (a config built in code skips deploy.toml's own checks).

use std::collections::BTreeMap;

use crate::config::{Addressing, HostAddress, MAX_NICS};
use crate::pve::discovery::NetworkInterface;
use crate::pve::{Client, ErrorClass};

use super::error::EngineError;
use super::plan::PlannedVm;

/// Adds a problem for every NIC whose bridge is missing on its VM's node, whose VLAN tag is
/// outside 1-4094 or whose MTU is outside 1-65520, and for a VM without a NIC or with more
/// than PVE allows. VMs
/// adopted from an earlier run are left alone (they exist already). A token that may not list
/// a node's network (no `Sys.Audit`) skips the bridge check there: PVE still refuses a missing
/// bridge when the VM starts.
pub(super) async fn check(
    client: &Client,
    planned: &[PlannedVm],
    problems: &mut Vec<String>,
) -> Result<(), EngineError> {
    let mut bridges: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    for vm in planned.iter().filter(|vm| vm.adopted.is_none()) {
        if vm.spec.networks.is_empty() {
            problems.push(format!(
                "'{}' has no NIC; give it at least net0 (bridge, or networks = [{{ bridge = ... }}])",
                vm.name
            ));
        }
        if vm.spec.networks.len() > MAX_NICS {
            problems.push(format!(
                "'{}' has {} NICs; PVE allows net0 to net{}",
                vm.name,
                vm.spec.networks.len(),
                MAX_NICS - 1
            ));
        }
        if !bridges.contains_key(&vm.node) {
            let listed = match client.node_network(&vm.node, Some("any_bridge")).await {
                Ok(list) => Some(
                    list.into_iter()
                        .filter(NetworkInterface::is_bridge)
                        .map(|i| i.iface)
                        .collect(),
                ),
                Err(e) if e.class == ErrorClass::Permission => None,
                Err(e) => return Err(e.into()),
            };
            bridges.insert(vm.node.clone(), listed);
        }
        for (i, nic) in vm.spec.networks.iter().enumerate() {
            if let Some(Some(there)) = bridges.get(&vm.node)
                && !there.contains(&nic.bridge)
            {
                problems.push(format!(
                    "bridge '{}' (net{i} of '{}') does not exist on node {} (bridges there: {}); use one of them, or create the bridge on that node",
                    nic.bridge,
                    vm.name,
                    vm.node,
                    if there.is_empty() { "none".to_string() } else { there.join(", ") }
                ));
            }
            if let Some(tag) = nic.vlan.filter(|t| !(1..=4094).contains(t)) {
                problems.push(format!(
                    "the VLAN tag {tag} of net{i} of '{}' is outside 1-4094",
                    vm.name
                ));
            }
            if let Some(mtu) = nic.mtu.filter(|m| !(1..=65520).contains(m)) {
                problems.push(format!(
                    "the mtu {mtu} of net{i} of '{}' is outside 1-65520",
                    vm.name
                ));
            }
        }
    }
    Ok(())
}

impl PlannedVm {
    /// Its NICs as planned: name, bridge, VLAN and static addresses (MACs and reports come
    /// later).
    pub fn nic_summaries(&self) -> Vec<crate::report::NicSummary> {
        (self.spec.networks.iter().enumerate())
            .map(|(i, nic)| crate::report::NicSummary {
                name: format!("net{i}"),
                mac: None,
                bridge: nic.bridge.clone(),
                vlan: nic.vlan,
                expected: (self.nic_address(i).map(|h| h.to_string()).into_iter())
                    .chain(nic.static_ip6().map(|h| h.to_string()))
                    .collect(),
                reported: Vec::new(),
            })
            .collect()
    }

    /// NIC `index`'s static IPv4 address (fixed, or given from a pool by the plan).
    pub fn nic_address(&self, index: usize) -> Option<HostAddress> {
        match self.spec.networks.get(index)?.address {
            Addressing::Static(host) => Some(host),
            Addressing::Dhcp | Addressing::Pool(_) => None,
        }
    }
}
