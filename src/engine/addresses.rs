//! net0's static addresses: checked against each other and their gateways, and handed out from
//! `ip_pool`s in VM order. A VM the journal gave a pool address keeps it on every rerun, so a
//! resumed rollout never renumbers a guest that may already be using its address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::{Addressing, HostAddress};
use crate::pve::{Client, Resource};

use super::error::EngineError;
use super::journal::History;
use super::plan::{PlannedVm, is_ours};

/// Replaces every `Addressing::Pool` with the `Addressing::Static` it gets, and reports every
/// problem: two VMs with one address, a gateway outside its subnet, a pool too small, an
/// address another VM of the cluster has in its `ipconfigN` (`taken`: address -> that VM).
pub(super) fn assign(
    vms: &mut [PlannedVm],
    history: &History,
    taken: &BTreeMap<Ipv4Addr, String>,
    problems: &mut Vec<String>,
) {
    // Who holds which address so far.
    let mut holders: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let hold = |holders: &mut BTreeMap<Ipv4Addr, String>,
                ip: Ipv4Addr,
                name: &str,
                problems: &mut Vec<String>| {
        if let Some(first) = holders.get(&ip) {
            problems.push(format!(
                "'{name}' and '{first}' both have the address {ip}; give every VM its own ip"
            ));
            return false;
        }
        if let Some(other) = taken.get(&ip) {
            problems.push(format!(
                "the address {ip} of '{name}' is already in the ipconfig of VM {other} on the cluster; pick another address"
            ));
            return false;
        }
        holders.insert(ip, name.to_string());
        true
    };
    for vm in vms.iter() {
        if let Addressing::Static(host) = vm.spec.address {
            hold(&mut holders, host.ip, &vm.name, problems);
        }
    }
    // Pool addresses the journal gave out stay with their VMs.
    for vm in vms.iter_mut() {
        let Addressing::Pool(pool) = vm.spec.address else {
            continue;
        };
        let journaled = history
            .vms
            .get(&vm.name)
            .and_then(|r| r.address.as_deref())
            .and_then(|a| {
                a.parse::<Ipv4Addr>()
                    .ok()
                    .or_else(|| a.split_once('/').and_then(|(ip, _)| ip.parse().ok()))
            })
            .filter(|ip| pool.contains(*ip));
        if let Some(ip) = journaled
            && hold(&mut holders, ip, &vm.name, problems)
        {
            vm.spec.address = Addressing::Static(HostAddress {
                ip,
                prefix: pool.prefix,
            });
        }
    }
    // The rest take the pool's next free address, in VM order.
    for i in 0..vms.len() {
        let Addressing::Pool(pool) = vms[i].spec.address else {
            continue;
        };
        let free = pool
            .addresses()
            .find(|a| !holders.contains_key(&a.ip) && !taken.contains_key(&a.ip));
        match free {
            Some(host) => {
                hold(&mut holders, host.ip, &vms[i].name, problems);
                vms[i].spec.address = Addressing::Static(host);
            }
            None => {
                let wanting = vms[i..]
                    .iter()
                    .filter(|v| v.spec.address == Addressing::Pool(pool))
                    .count();
                problems.push(format!(
                    "ip_pool {pool} has {} addresses and none left for '{}' or the {} VMs after it that take from it (addresses other VMs hold are skipped); widen the range",
                    pool.len(),
                    vms[i].name,
                    wanting - 1
                ));
                break;
            }
        }
    }
    for vm in vms.iter() {
        match (vm.spec.address, vm.spec.gateway) {
            (Addressing::Static(host), Some(gw)) => {
                if !host.subnet().contains(gw.into()) {
                    problems.push(format!(
                        "the gateway {gw} of '{}' is outside its subnet {}/{}; use a router address inside it",
                        vm.name,
                        host.subnet().network(),
                        host.prefix
                    ));
                } else if gw == host.ip {
                    problems.push(format!(
                        "the gateway {gw} of '{}' is its own address",
                        vm.name
                    ));
                }
            }
            (Addressing::Dhcp, Some(gw)) => problems.push(format!(
                "'{}' takes its address by DHCP, so gateway {gw} would be ignored; set ip or ip_pool, or drop gateway",
                vm.name
            )),
            _ => {}
        }
    }
}

/// The static IPv4 addresses other VMs of the cluster have in their `ipconfigN` (address ->
/// "id 'name'"): this rollout's own VMs and templates are left out.
pub(super) async fn on_cluster(
    client: &Client,
    guests: &[&Resource],
    planned: &[PlannedVm],
    rollout_id: &str,
) -> Result<BTreeMap<Ipv4Addr, String>, EngineError> {
    let mut out = BTreeMap::new();
    for r in guests.iter().filter(|r| r.is_qemu() && !r.template) {
        let (Some(node), Some(vmid)) = (r.node.as_deref(), r.vmid) else {
            continue;
        };
        if planned.iter().any(|vm| vm.vmid == vmid) {
            continue;
        }
        let cfg = client.vm_config(node, vmid).await?;
        if is_ours(&cfg, rollout_id) {
            continue;
        }
        let name = cfg.get("name").unwrap_or("(no name)").to_string();
        for index in 0..32 {
            if let Some(ip) = cfg.ip_config(index).and_then(|c| c.static_address()) {
                out.insert(ip, format!("{vmid} '{name}'"));
            }
        }
    }
    Ok(out)
}
