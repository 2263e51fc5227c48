//! Dispatch to the handlers, and the cluster- and node-level endpoints: version, nodes, node
//! status and storage, cluster resources (with pvestatd's lag), nextid, ticket login, permissions.

use std::sync::Arc;

use serde_json::{Value, json};

use super::auth::Identity;
use super::cluster::{Cluster, Power, Vm};
use super::envelope::{ApiError, ApiOk};
use super::params::{self, INT, Kind, NODE, Params, STR, opt, req};
use super::routes::Ep;
use super::{Shared, agent, clone, qemu, tasks};

pub const PVE_VERSION: &str = "8.4.1";
pub const PVE_RELEASE: &str = "8.4";
pub const PVE_REPOID: &str = "2a5fa54a8503f96d";

pub async fn dispatch(
    shared: Arc<Shared>,
    ep: Ep,
    who: Option<Identity>,
    p: Params,
) -> Result<ApiOk, ApiError> {
    match ep {
        Ep::TicketGet => return Ok(ApiOk::null()),
        Ep::TicketPost => return ticket(&shared, &p),
        _ => {}
    }
    let Some(who) = who else {
        return Err(ApiError::Unauthorized("No ticket"));
    };
    let node = p.get("node").unwrap_or_default();
    match ep {
        Ep::Version => {
            params::validate(&p, &[])?;
            Ok(ApiOk::data(
                json!({"version": PVE_VERSION, "release": PVE_RELEASE, "repoid": PVE_REPOID}),
            ))
        }
        Ep::Permissions => permissions(&who, &p),
        Ep::Nodes => nodes(&shared, &who, &p),
        Ep::NodeIndex => {
            params::validate(&p, &[NODE])?;
            let names = ["qemu", "status", "storage", "tasks", "version"];
            Ok(ApiOk::data(Value::Array(
                names.iter().map(|n| json!({"name": n})).collect(),
            )))
        }
        Ep::NodeStatus => node_status(&shared, &who, &node, &p),
        Ep::NodeStorage => node_storage(&shared, &who, &node, &p),
        Ep::NodeNetwork => node_network(&shared, &who, &node, &p),
        Ep::ClusterResources => resources(&shared, &who, &p),
        Ep::ClusterNextid => nextid(&shared, &p),
        Ep::QemuList => qemu::list(&shared, &who, &node, &p),
        Ep::VmIndex => qemu::index(&shared, &who, &node, &p),
        Ep::VmStatusIndex => qemu::status_index(&shared, &node, &p),
        Ep::VmStatusCurrent => qemu::status_current(&shared, &who, &node, &p),
        Ep::VmConfigGet => qemu::config_get(&shared, &who, &node, &p),
        Ep::VmPending => qemu::pending(&shared, &who, &node, &p),
        Ep::VmConfigPost => qemu::config_update(shared, &who, &node, p, true).await,
        Ep::VmConfigPut => qemu::config_update(shared, &who, &node, p, false).await,
        Ep::VmResize => qemu::resize(&shared, &who, &node, &p),
        Ep::VmPower(op) => qemu::power(&shared, &who, &node, op, &p),
        Ep::VmDelete => qemu::destroy(&shared, &who, &node, &p),
        Ep::VmClone => clone::clone(&shared, &who, &node, &p),
        Ep::AgentIndex => agent::index(&p),
        Ep::Agent(cmd) => agent::command(shared, &who, &node, cmd, p).await,
        Ep::TaskList => {
            params::validate(
                &p,
                &[
                    NODE,
                    opt("limit", INT),
                    opt("start", INT),
                    opt("vmid", Kind::Vmid),
                    opt("typefilter", STR),
                    opt("userfilter", STR),
                    opt("errors", Kind::Bool),
                    opt("source", STR),
                    opt("statusfilter", STR),
                    opt("since", INT),
                    opt("until", INT),
                ],
            )?;
            tasks::list(&shared, &who, &node, &p)
        }
        Ep::TaskIndex => {
            params::validate(&p, &[NODE, req("upid", STR)])?;
            tasks::index(&p)
        }
        Ep::TaskStatus => {
            params::validate(&p, &[NODE, req("upid", STR)])?;
            tasks::status(&shared, &who, &node, &p)
        }
        Ep::TaskLog => {
            params::validate(
                &p,
                &[
                    NODE,
                    req("upid", STR),
                    opt(
                        "start",
                        Kind::Int {
                            min: Some(0),
                            max: None,
                        },
                    ),
                    opt(
                        "limit",
                        Kind::Int {
                            min: Some(0),
                            max: None,
                        },
                    ),
                    opt("download", Kind::Bool),
                ],
            )?;
            tasks::log(&shared, &who, &node, &p)
        }
        Ep::TaskStop => {
            params::validate(&p, &[NODE, req("upid", STR)])?;
            tasks::stop(&shared, &who, &node, &p)
        }
        Ep::TicketGet | Ep::TicketPost => Ok(ApiOk::null()),
    }
}

fn ticket(shared: &Shared, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[
            req("username", Kind::Str { max_len: Some(64) }),
            req("password", STR),
            opt("realm", STR),
            opt("otp", STR),
            opt("tfa-challenge", STR),
            opt("path", STR),
            opt("privs", STR),
            opt("new-format", Kind::Bool),
        ],
    )?;
    let mut user = p.get("username").unwrap_or_default();
    if let Some(realm) = p.get("realm")
        && !user.contains('@')
    {
        user = format!("{user}@{realm}");
    }
    let now = shared.clock.epoch();
    let who = shared
        .auth
        .login(&user, &p.get("password").unwrap_or_default(), now)
        .ok_or(ApiError::TicketFailed)?;
    let (ticket, csrf) = shared.auth.make_ticket(&who.user, now);
    let mut data = json!({"username": who.user, "ticket": ticket, "CSRFPreventionToken": csrf, "cap": who.caps()});
    if !shared.scenario.cluster.name.is_empty() {
        data["clustername"] = json!(shared.scenario.cluster.name);
    }
    Ok(ApiOk::data(data))
}

fn permissions(who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[opt("path", STR), opt("userid", STR)])?;
    let mut privs = serde_json::Map::new();
    for pr in super::auth::ALL_PRIVS {
        if who.has(pr) {
            privs.insert(pr.to_string(), json!(1));
        }
    }
    let path = p.get("path").unwrap_or_else(|| "/".into());
    let mut out = serde_json::Map::new();
    if !privs.is_empty() {
        out.insert(path, Value::Object(privs));
    }
    Ok(ApiOk::data(Value::Object(out)))
}

fn node_mem(st: &Cluster, node: &str, max: u64) -> u64 {
    let vms: u64 = st
        .vms
        .values()
        .filter(|v| v.node == node && v.power != Power::Stopped)
        .map(|v| v.memory_bytes())
        .sum();
    (8u64 << 30).saturating_add(vms).min(max)
}

fn node_cpu(st: &Cluster, node: &str, maxcpu: u64) -> f64 {
    let running = st
        .vms
        .values()
        .filter(|v| v.node == node && v.power == Power::Running)
        .count() as f64;
    ((0.02 + running * 0.01) / maxcpu.max(1) as f64 * 16.0).min(1.0)
}

fn nodes(shared: &Shared, who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[])?;
    let now = shared.clock.now();
    let sc = &shared.scenario.cluster;
    let maxmem = sc.node_memory_gib << 30;
    let st = shared.state();
    let list: Vec<Value> = st
        .nodes
        .iter()
        .map(|n| {
            let online = shared.node_online(&n.name, now);
            let mut v = json!({
                "node": n.name, "id": format!("node/{}", n.name), "type": "node",
                "status": if online { "online" } else { "offline" }, "level": "",
                "ssl_fingerprint": shared.fingerprint,
            });
            if online && who.has("Sys.Audit") {
                v["cpu"] = json!(node_cpu(&st, &n.name, sc.node_cpus as u64));
                v["maxcpu"] = json!(sc.node_cpus);
                v["mem"] = json!(node_mem(&st, &n.name, maxmem));
                v["maxmem"] = json!(maxmem);
                v["disk"] = json!(9_814_016_000u64);
                v["maxdisk"] = json!(100_861_726_720u64);
                v["uptime"] = json!(n.uptime0 + now as u64);
            }
            v
        })
        .collect();
    Ok(ApiOk::data(Value::Array(list)))
}

fn node_status(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE])?;
    who.require(&format!("/nodes/{node}"), &["Sys.Audit"])?;
    let now = shared.clock.now();
    let sc = &shared.scenario.cluster;
    let maxmem = sc.node_memory_gib << 30;
    let st = shared.state();
    let n = st
        .node(node)
        .ok_or_else(|| ApiError::die(format!("no such cluster node '{node}'")))?;
    let used = node_mem(&st, node, maxmem);
    let kernel = "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9 (2025-03-16T19:18Z)";
    Ok(ApiOk::data(json!({
        "uptime": n.uptime0 + now as u64, "idle": 0,
        "loadavg": ["0.31", "0.28", "0.22"],
        "kversion": format!("Linux 6.8.12-9-pve {kernel}"),
        "current-kernel": {"sysname": "Linux", "release": "6.8.12-9-pve", "version": kernel, "machine": "x86_64"},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "cpuinfo": {"model": "AMD EPYC 7302P 16-Core Processor", "sockets": 1, "cores": sc.node_cpus / 2, "cpus": sc.node_cpus, "mhz": "3000.000", "hvm": "1", "flags": "fpu vme de pse tsc msr pae mce", "user_hz": 100},
        "cpu": node_cpu(&st, node, sc.node_cpus as u64), "wait": 0.0004,
        "memory": {"total": maxmem, "used": used, "free": maxmem - used, "available": maxmem - used},
        "ksm": {"shared": 0},
        "swap": {"total": 8_589_930_496u64, "used": 0, "free": 8_589_930_496u64},
        "pveversion": format!("pve-manager/{PVE_VERSION}/{PVE_REPOID}"),
        "rootfs": {"total": 100_861_726_720u64, "used": 9_814_016_000u64, "avail": 85_858_230_272u64, "free": 91_047_710_720u64},
    })))
}

fn storage_entry(st: &Cluster, s: &super::scenario::StorageSpec, node: &str) -> (u64, u64, String) {
    let key = super::storage::storage_key(&s.id, node, s.shared());
    let total = s.size_gib << 30;
    let used = st.used_bytes(&key).min(total);
    (total, used, s.content.join(","))
}

fn plugin_type(s: &super::scenario::StorageSpec) -> &'static str {
    match s.kind {
        super::scenario::StorageKind::Lvmthin => "lvmthin",
        super::scenario::StorageKind::Dir => "dir",
        super::scenario::StorageKind::Nfs => "nfs",
    }
}

fn node_storage(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[
            NODE,
            opt("content", STR),
            opt("storage", Kind::StorageId),
            opt("enabled", Kind::Bool),
            opt("format", Kind::Bool),
            opt("target", Kind::Node),
        ],
    )?;
    let content = p.get("content");
    let only = p.get("storage");
    let st = shared.state();
    let list: Vec<Value> = st
        .storages
        .iter()
        .filter(|_| who.has("Datastore.Audit") || who.has("Datastore.AllocateSpace"))
        .filter(|s| content.as_ref().is_none_or(|c| c.split(',').all(|c| s.content.iter().any(|x| x == c))))
        .filter(|s| only.as_ref().is_none_or(|o| o == &s.id))
        .map(|s| {
            let (total, used, content) = storage_entry(&st, s, node);
            json!({
                "storage": s.id, "type": plugin_type(s), "content": content, "active": 1, "enabled": 1,
                "shared": if s.shared() { 1 } else { 0 }, "total": total, "used": used, "avail": total - used,
                "used_fraction": if total > 0 { used as f64 / total as f64 } else { 0.0 },
            })
        })
        .collect();
    Ok(ApiOk::data(Value::Array(list)))
}

/// `GET /nodes/{node}/network`: the uplink NIC and the scenario's bridges on it (the first
/// bridge carries the node's address, the others are VLAN-aware with no port).
fn node_network(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    const TYPES: &[&str] = &[
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
    ];
    params::validate(p, &[NODE, opt("type", Kind::Enum(TYPES))])?;
    who.require(&format!("/nodes/{node}"), &["Sys.Audit"])?;
    let sc = &shared.scenario.cluster;
    let index = sc.nodes.iter().position(|n| n == node).unwrap_or(0);
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
    if want("bridge") {
        for (i, br) in sc.bridges.iter().enumerate() {
            let mut e = json!({
                "iface": br, "type": "bridge", "method": if i == 0 { "static" } else { "manual" },
                "method6": "manual", "families": ["inet"], "active": 1, "autostart": 1,
                "bridge_ports": if i == 0 { "eno1" } else { "" }, "bridge_stp": "off",
                "bridge_fd": "0", "priority": 4 + i,
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
    }
    Ok(ApiOk::data(Value::Array(out)))
}

/// Has pvestatd reported this VM yet? (a tick on its node after it was created)
pub fn statd_seen(st: &Cluster, vm: &Vm, interval: f64, now: f64) -> bool {
    let phase = st.node(&vm.node).map(|n| n.statd_phase).unwrap_or(0.0);
    ((now - phase) / interval).floor() > ((vm.created_at - phase) / interval).floor()
}

fn resources(shared: &Shared, who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[opt("type", Kind::Enum(&["vm", "storage", "node", "sdn"]))],
    )?;
    let kind = p.get("type");
    let want = |k: &str| kind.as_deref().is_none_or(|t| t == k);
    let now = shared.clock.now();
    let interval = shared.scenario.timing.pvestatd_interval_s;
    let sc = &shared.scenario.cluster;
    let st = shared.state();
    let mut out = Vec::new();
    if want("vm") {
        for vm in st.vms.values() {
            if !who.has("VM.Audit") {
                continue;
            }
            let mut v = json!({"id": format!("qemu/{}", vm.vmid), "vmid": vm.vmid, "type": "qemu", "node": vm.node});
            let reported = statd_seen(&st, vm, interval, now) && shared.node_online(&vm.node, now);
            if reported {
                let running = vm.power != Power::Stopped;
                let uptime = vm
                    .guest
                    .as_ref()
                    .map(|g| (now - g.started_at).max(0.0) as u64)
                    .unwrap_or(0);
                let obj = v.as_object_mut().map(|o| {
                    if let Some(name) = vm.conf.get("name") {
                        o.insert("name".into(), json!(name));
                    }
                    o.insert(
                        "status".into(),
                        json!(if running { "running" } else { "stopped" }),
                    );
                    o.insert(
                        "template".into(),
                        json!(if vm.is_template() { 1 } else { 0 }),
                    );
                    o.insert("uptime".into(), json!(uptime));
                    o.insert("maxcpu".into(), json!(vm.cpus()));
                    o.insert("cpu".into(), json!(if running { 0.0131 } else { 0.0 }));
                    o.insert("maxmem".into(), json!(vm.memory_bytes()));
                    o.insert(
                        "mem".into(),
                        json!(if running { vm.memory_bytes() / 3 } else { 0 }),
                    );
                    o.insert("maxdisk".into(), json!(vm.boot_disk_bytes()));
                    for k in ["disk", "netin", "netout", "diskread", "diskwrite"] {
                        o.insert(k.into(), json!(0));
                    }
                });
                let _ = obj;
            } else {
                v["status"] = json!("unknown");
            }
            if let Some(l) = vm.lock() {
                v["lock"] = json!(l);
            }
            if let Some(t) = vm.conf.get("tags") {
                v["tags"] = json!(t);
            }
            out.push(v);
        }
    }
    if want("node") {
        for n in &st.nodes {
            let online = shared.node_online(&n.name, now);
            let mut v = json!({"id": format!("node/{}", n.name), "node": n.name, "type": "node", "status": if online { "online" } else { "offline" }, "level": ""});
            if online && who.has("Sys.Audit") {
                v["maxcpu"] = json!(sc.node_cpus);
                v["maxmem"] = json!(sc.node_memory_gib << 30);
                v["mem"] = json!(node_mem(&st, &n.name, sc.node_memory_gib << 30));
                v["cpu"] = json!(node_cpu(&st, &n.name, sc.node_cpus as u64));
                v["uptime"] = json!(n.uptime0 + now as u64);
            }
            out.push(v);
        }
    }
    if want("storage") && (who.has("Datastore.Audit") || who.has("Datastore.AllocateSpace")) {
        for n in &st.nodes {
            let online = shared.node_online(&n.name, now);
            for s in &st.storages {
                let (total, used, content) = storage_entry(&st, s, &n.name);
                let mut v = json!({
                    "id": format!("storage/{}/{}", n.name, s.id), "storage": s.id, "node": n.name, "type": "storage",
                    "status": if online { "available" } else { "unknown" }, "plugintype": plugin_type(s),
                    "content": content, "shared": if s.shared() { 1 } else { 0 },
                });
                if online {
                    v["disk"] = json!(used);
                    v["maxdisk"] = json!(total);
                }
                out.push(v);
            }
        }
    }
    Ok(ApiOk::data(Value::Array(out)))
}

fn nextid(shared: &Shared, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[opt("vmid", Kind::Vmid)])?;
    let st = shared.state();
    if let Some(id) = p.get("vmid") {
        let n: u32 = id.parse().map_err(|_| {
            ApiError::param(
                "vmid",
                format!("type check ('integer') failed - got '{id}'"),
            )
        })?;
        if st.vms.contains_key(&n) {
            return Err(ApiError::param("vmid", format!("VM {n} already exists")));
        }
        return Ok(ApiOk::data(json!(n.to_string())));
    }
    match st.next_free_id() {
        Some(id) => Ok(ApiOk::data(json!(id.to_string()))),
        None => Err(ApiError::die(
            "unable to get any free VMID in range [100, 1000000]",
        )),
    }
}
