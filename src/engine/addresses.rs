//! The NICs' static addresses: checked against each other and their gateways, and handed out
//! from `ip_pool`s in VM and NIC order. A NIC the journal gave a pool address keeps it on every
//! rerun, so a resumed rollout never renumbers a guest that may already be using its address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::config::{Addressing, HostAddress, Ip6Addressing};
use crate::pve::{Client, Resource};

use super::error::EngineError;
use super::journal::History;
use super::plan::{PlannedVm, is_ours};

/// How a NIC is named in problems: `'web-1'` for net0 (a VM's address), `'web-1' net1` for
/// the others.
fn nic_label(name: &str, nic: usize) -> String {
    match nic {
        0 => format!("'{name}'"),
        n => format!("'{name}' net{n}"),
    }
}

/// Replaces every `Addressing::Pool` with the `Addressing::Static` it gets, and reports every
/// problem: two NICs with one address, a gateway outside its subnet, a pool too small, an
/// address another VM of the cluster has in its `ipconfigN` (`taken`: address -> that VM).
pub(super) fn assign(
    vms: &mut [PlannedVm],
    history: &History,
    taken: &BTreeMap<IpAddr, String>,
    problems: &mut Vec<String>,
) {
    // Who holds which address so far.
    let mut holders: BTreeMap<IpAddr, String> = BTreeMap::new();
    let hold = |holders: &mut BTreeMap<IpAddr, String>,
                ip: IpAddr,
                who: String,
                problems: &mut Vec<String>| {
        if let Some(first) = holders.get(&ip) {
            problems.push(format!(
                "{who} and {first} both have the address {ip}; give every NIC its own address"
            ));
            return false;
        }
        if let Some(other) = taken.get(&ip) {
            problems.push(format!(
                "the address {ip} of {who} is already in the ipconfig of VM {other} on the cluster; pick another address"
            ));
            return false;
        }
        holders.insert(ip, who);
        true
    };
    for vm in vms.iter() {
        for (i, nic) in vm.spec.networks.iter().enumerate() {
            if let Addressing::Static(host) = nic.address {
                hold(
                    &mut holders,
                    host.ip.into(),
                    nic_label(&vm.name, i),
                    problems,
                );
            }
            if let Some(host) = nic.static_ip6() {
                hold(
                    &mut holders,
                    host.ip.into(),
                    nic_label(&vm.name, i),
                    problems,
                );
            }
        }
    }
    // Pool addresses the journal gave out stay with their NICs.
    for vm in vms.iter_mut() {
        let journaled = history.vms.get(&vm.name).map(|r| &r.addresses);
        for (i, nic) in vm.spec.networks.iter_mut().enumerate() {
            let Addressing::Pool(pool) = nic.address else {
                continue;
            };
            let ip = journaled
                .and_then(|a| a.get(&i))
                .and_then(|a| {
                    a.parse::<Ipv4Addr>()
                        .ok()
                        .or_else(|| a.split_once('/').and_then(|(ip, _)| ip.parse().ok()))
                })
                .filter(|ip| pool.contains(*ip));
            if let Some(ip) = ip
                && hold(&mut holders, ip.into(), nic_label(&vm.name, i), problems)
            {
                nic.address = Addressing::Static(HostAddress {
                    ip,
                    prefix: pool.prefix,
                });
            }
        }
    }
    // The rest take the pool's next free address, in VM and NIC order.
    let wanting: Vec<(usize, usize)> = vms
        .iter()
        .enumerate()
        .flat_map(|(v, vm)| {
            vm.spec
                .networks
                .iter()
                .enumerate()
                .filter(|(_, nic)| matches!(nic.address, Addressing::Pool(_)))
                .map(move |(i, _)| (v, i))
        })
        .collect();
    let mut exhausted = Vec::new();
    for (k, &(v, i)) in wanting.iter().enumerate() {
        let Addressing::Pool(pool) = vms[v].spec.networks[i].address else {
            continue;
        };
        if exhausted.contains(&pool) {
            continue;
        }
        let free = pool
            .addresses()
            .find(|a| !holders.contains_key(&a.ip.into()) && !taken.contains_key(&a.ip.into()));
        let who = nic_label(&vms[v].name, i);
        match free {
            Some(host) => {
                hold(&mut holders, host.ip.into(), who, problems);
                vms[v].spec.networks[i].address = Addressing::Static(host);
            }
            None => {
                let after = wanting[k + 1..]
                    .iter()
                    .filter(|&&(v, i)| vms[v].spec.networks[i].address == Addressing::Pool(pool))
                    .count();
                problems.push(format!(
                    "ip_pool {pool} has {} addresses and none left for {who} or the {after} NICs after it that take from it (addresses other VMs hold are skipped); widen the range",
                    pool.len(),
                ));
                exhausted.push(pool);
            }
        }
    }
    for vm in vms.iter() {
        for (i, nic) in vm.spec.networks.iter().enumerate() {
            gateway_problems(&nic_label(&vm.name, i), nic, problems);
        }
    }
}

/// A gateway outside its NIC's subnet, equal to the NIC's own address, or set where DHCP or
/// SLAAC would ignore it.
fn gateway_problems(who: &str, nic: &crate::config::Nic, problems: &mut Vec<String>) {
    match (nic.address, nic.gateway) {
        (Addressing::Static(host), Some(gw)) => {
            if !host.subnet().contains(gw.into()) {
                problems.push(format!(
                    "the gateway {gw} of {who} is outside its subnet {}/{}; use a router address inside it",
                    host.subnet().network(),
                    host.prefix
                ));
            } else if gw == host.ip {
                problems.push(format!("the gateway {gw} of {who} is its own address"));
            }
        }
        (Addressing::Dhcp, Some(gw)) => problems.push(format!(
            "{who} takes its address by DHCP, so gateway {gw} would be ignored; set ip or ip_pool, or drop gateway"
        )),
        _ => {}
    }
    match (nic.ip6, nic.gateway6) {
        (Some(Ip6Addressing::Static(host)), Some(gw)) => {
            if !host.subnet().contains(gw.into()) {
                problems.push(format!(
                    "the gateway6 {gw} of {who} is outside its subnet {}/{}; use a router address inside it",
                    host.subnet().network(),
                    host.prefix
                ));
            } else if gw == host.ip {
                problems.push(format!("the gateway6 {gw} of {who} is its own address"));
            }
        }
        (_, Some(gw)) => problems.push(format!(
            "{who} has no static ip6, so gateway6 {gw} would be ignored; set ip6 to an address, or drop gateway6"
        )),
        _ => {}
    }
}

/// The static addresses (IPv4 and IPv6) other VMs of the cluster have in their `ipconfigN`
/// (address -> "id 'name'"): this rollout's own VMs and templates are left out.
pub(super) async fn on_cluster(
    client: &Client,
    guests: &[&Resource],
    planned: &[PlannedVm],
    rollout_id: &str,
) -> Result<BTreeMap<IpAddr, String>, EngineError> {
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
        for index in 0..crate::config::MAX_NICS as u8 {
            if let Some(ip) = cfg.ip_config(index).and_then(|c| c.static_address()) {
                out.insert(ip.into(), format!("{vmid} '{name}'"));
            }
            if let Some(crate::pve::Ip6Config::Static { address, .. }) = cfg.ip6_config(index) {
                out.insert(address.into(), format!("{vmid} '{name}'"));
            }
        }
    }
    Ok(out)
}
