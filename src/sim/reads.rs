//! The read endpoints dashboards and exporters poll, in the shapes PVE returns: cluster status,
//! HA status, guests without backup job, QDevice status, pools, and per node the containers (none),
//! network interfaces, storage content, subscription and replication jobs.

use serde_json::{Value, json};

use super::Shared;
use super::auth::Identity;
use super::cluster::Power;
use super::envelope::{ApiError, ApiOk};
use super::params::{self, Kind, NODE, Params, opt, req};

/// `GET /cluster/status`: the cluster entry (when clustered), then one entry per node.
pub fn cluster_status(shared: &Shared, who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[])?;
    who.require("/", &["Sys.Audit"])?;
    let now = shared.clock.now();
    let sc = &shared.scenario.cluster;
    let mut out = Vec::new();
    let clustered = !sc.name.is_empty();
    if clustered {
        out.push(json!({
            "type": "cluster", "id": "cluster", "name": sc.name, "nodes": sc.nodes.len(),
            "version": sc.nodes.len() + 2, "quorate": if shared.quorum_lost(now) { 0 } else { 1 },
        }));
    }
    for (i, n) in sc.nodes.iter().enumerate() {
        let mut v = json!({
            "type": "node", "id": format!("node/{n}"), "name": n,
            "ip": format!("192.168.100.{}", 11 + i),
            "online": if shared.node_online(n, now) { 1 } else { 0 },
            "local": if i == 0 { 1 } else { 0 }, "level": "",
        });
        if clustered {
            v["nodeid"] = json!(i + 1);
        }
        out.push(v);
    }
    Ok(ApiOk::data(Value::Array(out)))
}

/// `GET /cluster/ha/status/current`: quorum, manager, one LRM per node, one line per resource.
pub fn ha_status(shared: &Shared, who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[])?;
    who.require("/", &["Sys.Audit"])?;
    let now = shared.clock.now();
    let local = shared.local_node();
    let quorate = !shared.quorum_lost(now);
    let st = shared.state();
    let ha: Vec<_> = st.vms.values().filter(|v| v.ha).collect();
    let mut out = vec![json!({
        "id": "quorum", "type": "quorum", "node": local,
        "status": if quorate { "OK".to_string() } else { format!("No quorum on node '{local}'!") },
        "quorate": if quorate { 1 } else { 0 },
    })];
    if !ha.is_empty() {
        out.push(json!({
            "id": "master", "type": "master", "node": local,
            "status": format!("{local} (active, {})", chrono_like(shared)),
            "timestamp": shared.clock.epoch(),
        }));
        for n in &shared.scenario.cluster.nodes {
            let active = ha.iter().any(|v| &v.node == n);
            let mode = if active { "active" } else { "idle" };
            out.push(json!({
                "id": format!("lrm:{n}"), "type": "lrm", "node": n,
                "status": format!("{n} ({mode}, {})", chrono_like(shared)),
                "timestamp": shared.clock.epoch(),
            }));
        }
    }
    for v in ha {
        let state = if v.power == Power::Stopped {
            "stopped"
        } else {
            "started"
        };
        out.push(json!({
            "id": format!("service:vm:{}", v.vmid), "type": "service", "sid": format!("vm:{}", v.vmid),
            "node": v.node, "state": state, "request_state": state, "crm_state": state,
            "max_relocate": 1, "max_restart": 1, "failback": 1,
            "status": format!("vm:{} ({}, {state})", v.vmid, v.node),
        }));
    }
    Ok(ApiOk::data(Value::Array(out)))
}

/// The manager's status line carries a local time stamp.
fn chrono_like(shared: &Shared) -> String {
    jiff::Timestamp::from_second(shared.clock.epoch())
        .map(|t| t.strftime("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_default()
}

/// `GET /cluster/backup-info/not-backed-up`: the simulated cluster has no backup jobs, so every
/// guest the caller may audit.
pub fn not_backed_up(shared: &Shared, who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[])?;
    who.require("/", &["Sys.Audit"])?;
    let st = shared.state();
    let out = st
        .vms
        .values()
        .filter(|_| who.has("VM.Audit"))
        .map(|v| {
            let mut e = json!({"vmid": v.vmid, "type": "qemu"});
            if let Some(n) = v.conf.get("name") {
                e["name"] = json!(n);
            }
            e
        })
        .collect();
    Ok(ApiOk::data(Value::Array(out)))
}

/// `GET /cluster/config/qdevice`: without a QDevice socket PVE answers an empty object.
pub fn qdevice(who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[])?;
    who.require("/", &["Sys.Audit"])?;
    Ok(ApiOk::data(json!({})))
}

/// `GET /pools`: every pool the caller may audit; with `poolid`, its members as well.
pub fn pools(shared: &Shared, who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[
            opt("poolid", Kind::Str { max_len: Some(64) }),
            opt("type", Kind::Enum(&["qemu", "lxc", "storage"])),
        ],
    )?;
    let only = p.get("poolid");
    let st = shared.state();
    if let Some(id) = &only
        && !st.pools.contains_key(id)
    {
        return Err(ApiError::die(format!("pool '{id}' does not exist")));
    }
    let out = st
        .pools
        .iter()
        .filter(|(id, _)| only.as_ref().is_none_or(|o| o == *id))
        .filter(|_| who.has("Pool.Audit"))
        .map(|(id, members)| {
            let mut e = json!({"poolid": id});
            if only.is_some() {
                let list: Vec<Value> = members
                    .iter()
                    .filter_map(|vmid| st.vms.get(vmid))
                    .map(|v| {
                        json!({
                            "id": format!("qemu/{}", v.vmid), "vmid": v.vmid, "type": "qemu",
                            "node": v.node, "name": v.name(),
                            "status": if v.power == Power::Stopped { "stopped" } else { "running" },
                            "template": if v.is_template() { 1 } else { 0 },
                        })
                    })
                    .collect();
                e["members"] = Value::Array(list);
            }
            e
        })
        .collect();
    Ok(ApiOk::data(Value::Array(out)))
}

/// `GET /nodes/{node}/lxc`: the simulator runs no containers.
pub fn node_lxc(p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE])?;
    Ok(ApiOk::data(json!([])))
}

/// `GET /nodes/{node}/replication`: no replication jobs.
pub fn node_replication(p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, opt("guest", Kind::Vmid)])?;
    Ok(ApiOk::data(json!([])))
}

/// `GET /nodes/{node}/network`: the uplink NIC and the scenario's bridges on it.
pub fn node_network(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[
            NODE,
            opt(
                "type",
                Kind::Enum(&[
                    "bridge",
                    "bond",
                    "eth",
                    "alias",
                    "vlan",
                    "fabric",
                    "OVSBridge",
                    "OVSBond",
                    "OVSPort",
                    "OVSIntPort",
                    "vnet",
                    "any_bridge",
                    "any_local_bridge",
                    "include_sdn",
                ]),
            ),
        ],
    )?;
    who.require(&format!("/nodes/{node}"), &["Sys.Audit"])?;
    let index = shared
        .scenario
        .cluster
        .nodes
        .iter()
        .position(|n| n == node)
        .unwrap_or(0);
    let kind = p.get("type");
    let want = |t: &str| match kind.as_deref() {
        None => true,
        Some("any_bridge" | "any_local_bridge") => t == "bridge",
        Some(k) => k == t,
    };
    let mut out = Vec::new();
    if want("eth") {
        out.push(json!({
            "iface": "eno1", "type": "eth", "method": "manual", "method6": "manual",
            "families": ["inet"], "active": 1, "exists": 1, "priority": 3,
        }));
    }
    for (i, br) in shared.scenario.cluster.bridges.iter().enumerate() {
        if !want("bridge") {
            break;
        }
        let mut e = json!({
            "iface": br, "type": "bridge", "method": if i == 0 { "static" } else { "manual" },
            "method6": "manual", "families": ["inet"], "active": 1, "autostart": 1,
            "bridge_ports": if i == 0 { "eno1" } else { "" }, "bridge_stp": "off", "bridge_fd": "0",
            "priority": 4 + i,
        });
        if i == 0 {
            e["address"] = json!(format!("192.168.100.{}", 11 + index));
            e["netmask"] = json!("24");
            e["cidr"] = json!(format!("192.168.100.{}/24", 11 + index));
            e["gateway"] = json!("192.168.100.1");
        } else {
            e["bridge_vlan_aware"] = json!(1);
        }
        out.push(e);
    }
    Ok(ApiOk::data(Value::Array(out)))
}

/// `GET /nodes/{node}/storage/{storage}/content`: the volumes on a storage as seen from `node`.
pub fn storage_content(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[
            NODE,
            req("storage", Kind::StorageId),
            opt("content", super::params::STR),
            opt("vmid", Kind::Vmid),
        ],
    )?;
    let sid = p.get("storage").unwrap_or_default();
    who.require(
        &format!("/storage/{sid}"),
        &["Datastore.Audit", "Datastore.AllocateSpace"],
    )?;
    let st = shared.state();
    let spec = st
        .storage(&sid)
        .filter(|s| s.on_node(node))
        .cloned()
        .ok_or_else(|| ApiError::die(format!("storage '{sid}' does not exist")))?;
    spec.check_usable(node).map_err(ApiError::die)?;
    let content = p.get("content");
    let vmid = p.get("vmid").and_then(|v| v.parse::<u32>().ok());
    let snippets: Vec<Value> = match spec.content.iter().any(|c| c == "snippets") {
        true if vmid.is_none() => spec
            .snippets
            .iter()
            .map(|file| {
                json!({
                    "volid": format!("{sid}:snippets/{file}"), "content": "snippets",
                    "format": "snippet", "size": 1024, "ctime": shared.clock.epoch(),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    if content.as_deref() == Some("snippets") {
        return Ok(ApiOk::data(Value::Array(snippets)));
    }
    if content
        .as_deref()
        .is_some_and(|c| c != "images" && c != "rootdir")
    {
        return Ok(ApiOk::data(json!([])));
    }
    let key = super::storage::storage_key(&sid, node, spec.shared());
    let mut out = Vec::new();
    for (name, allocated) in st.volumes.get(&key).into_iter().flatten() {
        let owner: Option<u32> = name
            .rsplit('/')
            .next()
            .and_then(|f| f.split('-').nth(1))
            .and_then(|id| id.parse().ok());
        if vmid.is_some() && owner != vmid {
            continue;
        }
        let volid = format!("{sid}:{name}");
        // The volume's virtual size is the `size=` of the drive that uses it.
        let size = st
            .vms
            .values()
            .flat_map(|v| v.drives())
            .find(|(_, d)| d.volume == volid || d.volume.ends_with(&format!("/{name}")))
            .and_then(|(_, d)| d.size())
            .unwrap_or(*allocated);
        let format = match spec.kind {
            super::scenario::StorageKind::Lvmthin => "raw",
            _ => name.rsplit('.').next().unwrap_or("raw"),
        };
        let mut e = json!({
            "volid": volid, "content": "images", "format": format, "size": size,
            "used": allocated, "ctime": shared.clock.epoch(),
        });
        if let Some(o) = owner {
            e["vmid"] = json!(o);
        }
        out.push(e);
    }
    out.extend(snippets);
    Ok(ApiOk::data(Value::Array(out)))
}

/// `GET /nodes/{node}/subscription`: a node without a subscription key.
pub fn subscription(who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE])?;
    let mut v = json!({
        "status": "notfound", "message": "There is no subscription key",
        "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing",
    });
    if who.has("Sys.Audit") {
        v["serverid"] = json!(format!("{:032X}", node.len() * 0x9E37_79B9));
    }
    Ok(ApiOk::data(v))
}
