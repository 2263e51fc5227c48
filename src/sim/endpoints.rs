//! Dispatch to the handlers, and the cluster- and node-level endpoints: version, nodes, node
//! status and storage, cluster resources (with pvestatd's lag), nextid, ticket login, permissions.

use std::sync::Arc;

use serde_json::{Value, json};

use super::auth::Identity;
use super::cluster::{Cluster, Power, Vm};
use super::envelope::{ApiError, ApiOk};
use super::params::{self, INT, Kind, NODE, Params, STR, opt, req};
use super::routes::Ep;
use super::{Shared, agent, clone, qemu, reads, tasks};

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
            let (version, release, repoid) = shared.scenario.pve_version.strings();
            Ok(ApiOk::data(
                json!({"version": version, "release": release, "repoid": repoid}),
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
        Ep::VmMigrate => qemu::migrate(&shared, &who, &node, &p),
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
        Ep::ClusterStatus => reads::cluster_status(&shared, &who, &p),
        Ep::ClusterTasks => {
            params::validate(&p, &[])?;
            tasks::cluster_list(&shared, &who)
        }
        Ep::HaStatus => reads::ha_status(&shared, &who, &p),
        Ep::NotBackedUp => reads::not_backed_up(&shared, &who, &p),
        Ep::Qdevice => reads::qdevice(&who, &p),
        Ep::Pools => reads::pools(&shared, &who, &p),
        Ep::NodeLxc => reads::node_lxc(&p),
        Ep::NodeNetwork => reads::node_network(&shared, &who, &node, &p),
        Ep::NodeReplication => reads::node_replication(&p),
        Ep::NodeSubscription => reads::subscription(&who, &node, &p),
        Ep::StorageContent => reads::storage_content(&shared, &who, &node, &p),
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

/// `GET /access/permissions`: the caller's privileges on `path`, or on every path it has an
/// ACL entry for.
fn permissions(who: &Identity, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[opt("path", STR), opt("userid", STR)])?;
    let paths = match p.get("path") {
        Some(path) => vec![path],
        None => who.acl_paths(),
    };
    let mut out = serde_json::Map::new();
    for path in paths {
        let privs: serde_json::Map<String, Value> = super::auth::ALL_PRIVS
            .iter()
            .filter(|pr| who.has_on(&path, pr))
            .map(|pr| (pr.to_string(), json!(1)))
            .collect();
        if !privs.is_empty() {
            out.insert(path, Value::Object(privs));
        }
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
    let (version, _, repoid) = shared.scenario.pve_version.strings();
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
        "pveversion": format!("pve-manager/{version}/{repoid}"),
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
    if let Some(o) = &only
        && st.storage(o).is_none_or(|s| !s.on_node(node))
    {
        return Err(ApiError::param("storage", "No such storage."));
    }
    let list: Vec<Value> = st
        .storages
        .iter()
        .filter(|_| who.has("Datastore.Audit") || who.has("Datastore.AllocateSpace"))
        .filter(|s| s.on_node(node))
        // A storage qualifies when it holds any of the listed content types.
        .filter(|s| content.as_ref().is_none_or(|c| c.split(',').any(|c| s.content.iter().any(|x| x == c))))
        .filter(|s| only.as_ref().is_none_or(|o| o == &s.id))
        .map(|s| {
            let (total, used, content) = storage_entry(&st, s, node);
            json!({
                "storage": s.id, "type": plugin_type(s), "content": content,
                "active": if s.disabled { 0 } else { 1 }, "enabled": if s.disabled { 0 } else { 1 },
                "shared": if s.shared() { 1 } else { 0 }, "total": total, "used": used, "avail": total - used,
                "used_fraction": if total > 0 { used as f64 / total as f64 } else { 0.0 },
            })
        })
        .collect();
    Ok(ApiOk::data(Value::Array(list)))
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
    // Pools have no `type` value of their own in 8.x: only the whole list carries them.
    if kind.is_none() && who.has("Pool.Audit") {
        for pool in st.pools.keys() {
            out.push(json!({"id": format!("/pool/{pool}"), "pool": pool, "type": "pool"}));
        }
    }
    if want("vm") {
        for vm in st.vms.values() {
            if !who.has_on(&format!("/vms/{}", vm.vmid), "VM.Audit") {
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
            if let Some((pool, _)) = st.pools.iter().find(|(_, m)| m.contains(&vm.vmid)) {
                v["pool"] = json!(pool);
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
    if want("sdn") && who.has("SDN.Use") {
        // The default zone every node has.
        for n in &st.nodes {
            out.push(json!({
                "id": format!("sdn/{}/localnetwork", n.name), "sdn": "localnetwork",
                "node": n.name, "type": "sdn", "status": "ok",
            }));
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
