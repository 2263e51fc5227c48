//! `/nodes/{node}/qemu…`: list, status, config (GET, async POST, sync PUT, pending), resize,
//! power operations and destroy, with PVE's synchronous checks and task errors.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use super::auth::Identity;
use super::cluster::{
    Cluster, Guest, Power, Vm, VolumeKind, config_missing, efi_size, no_config_for,
};
use super::endpoints::{NODE, VMID};
use super::envelope::{ApiError, ApiOk};
use super::locks::{CONFIG_LOCK_TIMEOUT_S, lock_timeout_message};
use super::params::{self, INT, Kind, P, Params, STR, opt, req};
use super::scenario::StorageKind;
use super::tasks::{self, TaskCtx, TaskError, TaskResult};
use super::vmconfig::{self, Config, KeyKind};

pub fn vmid_of(p: &Params) -> u32 {
    p.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn vm_path(vmid: u32) -> String {
    format!("/vms/{vmid}")
}

fn root_only(who: &Identity, p: &Params, keys: &[&str]) -> Result<(), ApiError> {
    for k in keys {
        if p.has(k) && !who.is_root() {
            return Err(ApiError::param(k, "Only root may use this option."));
        }
    }
    Ok(())
}

pub fn list(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, opt("full", Kind::Bool)])?;
    let now = shared.clock.now();
    let st = shared.state();
    let list: Vec<Value> = st
        .vms
        .values()
        .filter(|vm| vm.node == node && who.has("VM.Audit"))
        .map(|vm| {
            let mut v = vm_stat(vm, now);
            if let Some(l) = vm.lock() {
                v["lock"] = json!(l);
            }
            if let Some(t) = vm.conf.get("tags") {
                v["tags"] = json!(t);
            }
            if vm.conf.contains_key("serial0") {
                v["serial"] = json!(1);
            }
            v
        })
        .collect();
    Ok(ApiOk::data(Value::Array(list)))
}

/// `vmstatus` fields shared by the list and status/current.
fn vm_stat(vm: &Vm, now: f64) -> Value {
    let running = vm.power != Power::Stopped;
    let maxmem = vm.memory_bytes();
    let mut v = json!({
        "vmid": vm.vmid, "name": vm.name(), "status": if running { "running" } else { "stopped" },
        "cpus": vm.cpus(), "maxmem": maxmem, "maxdisk": vm.boot_disk_bytes(), "disk": 0,
        "cpu": 0, "mem": 0, "memhost": 0, "netin": 0, "netout": 0, "uptime": 0,
    });
    if let (true, Some(g)) = (running, &vm.guest) {
        v["pid"] = json!(g.pid);
        v["uptime"] = json!((now - g.started_at).max(0.0) as u64);
        v["cpu"] = json!(0.0131);
        v["mem"] = json!(maxmem / 3);
        v["memhost"] = json!(maxmem / 3 + (64 << 20));
        v["netin"] = json!(123_456);
        v["netout"] = json!(65_432);
    }
    if vm.is_template() {
        v["template"] = json!(1);
    }
    v
}

pub fn index(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    who.require(&vm_path(vmid_of(p)), &["VM.Audit"])?;
    shared.state().vm_on(node, vmid_of(p))?;
    let subdirs = ["config", "pending", "status", "agent", "clone", "resize"];
    Ok(ApiOk::data(Value::Array(
        subdirs.iter().map(|s| json!({"subdir": s})).collect(),
    )))
}

pub fn status_index(shared: &Shared, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    shared.state().vm_on(node, vmid_of(p))?;
    let subdirs = [
        "current", "start", "stop", "reset", "shutdown", "suspend", "reboot", "resume",
    ];
    Ok(ApiOk::data(Value::Array(
        subdirs.iter().map(|s| json!({"subdir": s})).collect(),
    )))
}

pub fn status_current(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Audit"])?;
    let now = shared.clock.now();
    let st = shared.state();
    let vm = st.vm_on(node, vmid)?;
    let mut v = vm_stat(vm, now);
    v["ha"] = json!({"managed": 0});
    v["qmpstatus"] = json!(match vm.power {
        Power::Stopped => "stopped",
        Power::Running => "running",
        Power::Paused => "paused",
    });
    if vm.power != Power::Stopped {
        let maxmem = vm.memory_bytes();
        v["freemem"] = json!(maxmem / 2);
        v["balloon"] = json!(maxmem);
        v["ballooninfo"] = json!({"actual": maxmem, "max_mem": maxmem, "total_mem": maxmem - (64 << 20), "free_mem": maxmem / 2});
        v["diskread"] = json!(2_345_678);
        v["diskwrite"] = json!(3_456_789);
        v["nics"] = json!({format!("tap{vmid}i0"): {"netin": 123_456, "netout": 65_432}});
        v["blockstat"] = json!({"scsi0": {"rd_bytes": 2_345_678, "wr_bytes": 3_456_789}});
        v["running-machine"] = json!("pc-q35-9.2+pve1");
        v["running-qemu"] = json!("9.2.0");
        v["proxmox-support"] = json!({"pbs-library-version": "1.5.1", "pbs-dirty-bitmap": true});
    }
    if vmconfig::agent_enabled(vm.conf.get("agent")) {
        v["agent"] = json!(1);
    }
    if let Some(l) = vm.lock() {
        v["lock"] = json!(l);
    }
    if let Some(t) = vm.conf.get("tags") {
        v["tags"] = json!(t);
    }
    Ok(ApiOk::data(v))
}

pub fn config_get(
    shared: &Shared,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[NODE, VMID, opt("current", Kind::Bool), opt("snapshot", STR)],
    )?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Audit"])?;
    if let Some(snap) = p.get("snapshot") {
        if p.has("current") {
            return Err(ApiError::param(
                "snapshot",
                "option conflicts with option 'current'",
            ));
        }
        shared.state().vm_on(node, vmid)?;
        return Err(ApiError::die(format!("snapshot '{snap}' does not exist")));
    }
    let st = shared.state();
    let vm = st.vm_on(node, vmid)?;
    let conf = if p.flag("current") {
        vm.conf.clone()
    } else {
        vm.effective()
    };
    let mut out = vmconfig::render(&conf);
    out.insert("digest".into(), json!(vmconfig::digest(&vm.conf)));
    Ok(ApiOk::data(Value::Object(out)))
}

pub fn pending(shared: &Shared, who: &Identity, node: &str, p: &Params) -> Result<ApiOk, ApiError> {
    params::validate(p, &[NODE, VMID])?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Audit"])?;
    let st = shared.state();
    let vm = st.vm_on(node, vmid)?;
    let cur = vmconfig::render(&vm.conf);
    let pend = vmconfig::render(&vm.pending);
    let mut keys: Vec<&String> = vm.conf.keys().chain(vm.pending.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let mut e = json!({"key": k});
        if let Some(v) = cur.get(k) {
            e["value"] = v.clone();
        }
        if let Some(v) = pend.get(k) {
            e["pending"] = v.clone();
        }
        if vm.pending_delete.contains(k) {
            e["delete"] = json!(1);
        }
        out.push(e);
    }
    Ok(ApiOk::data(Value::Array(out)))
}

/// The privilege a config key needs (`check_vm_modify_config_perm`).
fn key_priv(key: &str) -> &'static str {
    match key {
        "cores" | "sockets" | "cpu" | "vcpus" | "numa" | "cpuunits" | "cpulimit" | "affinity" => {
            "VM.Config.CPU"
        }
        "memory" | "balloon" | "shares" => "VM.Config.Memory",
        "ciuser" | "cipassword" | "sshkeys" | "nameserver" | "searchdomain" | "citype"
        | "ciupgrade" | "cicustom" => "VM.Config.Cloudinit",
        "bios" | "machine" | "scsihw" | "vga" | "ostype" | "kvm" | "acpi" | "tablet" => {
            "VM.Config.HWType"
        }
        k if k.starts_with("net") => "VM.Config.Network",
        k if k.starts_with("ipconfig") => "VM.Config.Cloudinit",
        k if vmconfig::is_disk_key(k) => "VM.Config.Disk",
        _ => "VM.Config.Options",
    }
}

const CONFIG_EXTRAS: &[&str] = &[
    "node",
    "vmid",
    "delete",
    "revert",
    "digest",
    "skiplock",
    "force",
    "background_delay",
];
const CONFIG_ANY: &[&str] = &[
    "VM.Config.Disk",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Config.Cloudinit",
];

/// A validated config change request.
struct ConfigChange {
    vmid: u32,
    set: Vec<(String, String)>,
    delete: Vec<String>,
    digest: Option<String>,
    skiplock: bool,
}

fn parse_config_change(
    who: &Identity,
    p: &Params,
    is_post: bool,
) -> Result<ConfigChange, ApiError> {
    let mut errors = indexmap::IndexMap::new();
    for k in p.keys() {
        let v = p.get(k).unwrap_or_default();
        let r = match k {
            "node" => params::check_value(Kind::Node, &v),
            "vmid" => params::check_value(Kind::Vmid, &v),
            "delete" | "revert" => Ok(()),
            "digest" => params::check_value(Kind::Str { max_len: Some(64) }, &v),
            "skiplock" | "force" => params::check_value(Kind::Bool, &v),
            "background_delay" if is_post => params::check_value(
                Kind::Int {
                    min: Some(1),
                    max: Some(30),
                },
                &v,
            ),
            _ => vmconfig::check_key_value(k, &v),
        };
        if let Err(e) = r {
            errors.insert(k.to_string(), e);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Params(errors));
    }
    root_only(who, p, &["skiplock"])?;
    let vmid = vmid_of(p);
    let set: Vec<(String, String)> = p
        .keys()
        .filter(|k| !CONFIG_EXTRAS.contains(k))
        .map(|k| (k.to_string(), p.get(k).unwrap_or_default()))
        .collect();
    let delete: Vec<String> = p
        .get("delete")
        .map(|d| {
            d.split([',', ';', ' ', '\0'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for k in &delete {
        if vmconfig::key_kind(k).is_none() && !k.starts_with("unused") {
            return Err(ApiError::param(
                "delete",
                format!("invalid format - invalid configuration key '{k}'\n"),
            ));
        }
        if set.iter().any(|(s, _)| s == k) {
            return Err(ApiError::param(
                "delete",
                format!("cannot set and delete property '{k}' at the same time"),
            ));
        }
    }
    who.require(&vm_path(vmid), CONFIG_ANY)?;
    for k in set
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(delete.iter().map(|s| s.as_str()))
    {
        who.require(&vm_path(vmid), &[key_priv(k)])?;
    }
    for (k, v) in &set {
        if k == "sshkeys" {
            let decoded = params::uri_unescape(v);
            if !vmconfig::sshkeys_valid(&decoded) {
                return Err(ApiError::die("SSH public key validation error"));
            }
        }
    }
    if set.is_empty() && delete.is_empty() && !p.has("revert") {
        return Err(ApiError::die("no options specified"));
    }
    Ok(ConfigChange {
        vmid,
        set,
        delete,
        digest: p.get("digest"),
        skiplock: p.flag("skiplock"),
    })
}

/// `update VM 101: -cores 4 -memory 4096 …` (cipassword hidden).
fn update_line(ch: &ConfigChange) -> String {
    let mut parts: Vec<(String, String)> = ch.set.clone();
    if !ch.delete.is_empty() {
        parts.push(("delete".into(), ch.delete.join(",")));
    }
    parts.sort();
    let args: Vec<String> = parts
        .into_iter()
        .map(|(k, v)| {
            if k == "cipassword" {
                format!("-{k} <hidden>")
            } else {
                format!("-{k} {v}")
            }
        })
        .collect();
    format!("update VM {}: {}", ch.vmid, args.join(" "))
}

/// Checks done under the config lock before changing anything.
fn precheck(st: &Cluster, node: &str, ch: &ConfigChange) -> Result<(), String> {
    let vm = st.vm_on(node, ch.vmid).map_err(|e| e.message())?;
    if let Some(d) = &ch.digest
        && d != &vmconfig::digest(&vm.conf)
    {
        return Err("checksum mismatch (file change by other user?)".into());
    }
    if let (Some(l), false) = (vm.lock(), ch.skiplock) {
        return Err(format!("VM is locked ({l})"));
    }
    Ok(())
}

/// Applies a change; returns the task log lines. New disks are allocated here.
fn apply_change(st: &mut Cluster, node: &str, ch: &ConfigChange) -> Result<Vec<String>, String> {
    let mut log = Vec::new();
    let vmid = ch.vmid;
    let running = st.vm_on(node, vmid).map_err(|e| e.message())?.power != Power::Stopped;
    for (k, v) in &ch.set {
        let value = match vmconfig::key_kind(k) {
            Some(KeyKind::Net) => {
                let mut n = vmconfig::parse_net(v)?;
                if n.mac.is_none() {
                    n.mac = Some(st.gen_mac(vmid));
                }
                n.render()
            }
            Some(KeyKind::EfiDisk | KeyKind::Drive) => {
                let mut d = vmconfig::parse_drive(v)?;
                match d.new_disk() {
                    Some((sid, gib)) => {
                        let spec = st
                            .storage(&sid)
                            .cloned()
                            .ok_or_else(|| format!("storage '{sid}' does not exist"))?;
                        if !spec.has_images() {
                            return Err(format!("storage '{sid}' does not support vm images"));
                        }
                        let efi = k == "efidisk0";
                        let four_m = d.opt("efitype") == Some("4m");
                        let size = if efi {
                            efi_size(&spec, four_m)
                        } else {
                            (gib * (1u64 << 30) as f64) as u64
                        };
                        let fmt = if spec.kind == StorageKind::Lvmthin {
                            "raw"
                        } else {
                            d.opt("format").unwrap_or(if efi { "raw" } else { "qcow2" })
                        };
                        let volid = st.alloc_volume(&spec, node, vmid, VolumeKind::Disk, fmt, size);
                        d.volume = volid;
                        d.opts.retain(|(o, _)| o != "format");
                        d.set_opt("size", vmconfig::format_size(size));
                        let rendered = d.render();
                        log.push(format!("{k}: successfully created disk '{rendered}'"));
                        rendered
                    }
                    None => d.render(),
                }
            }
            _ => v.clone(),
        };
        let vm = st.vm_on_mut(node, vmid).map_err(|e| e.message())?;
        // A replaced disk becomes an unused volume.
        if vmconfig::is_disk_key(k)
            && let Some(old) = vm.conf.get(k).and_then(|o| vmconfig::parse_drive(o).ok())
            && !old.is_cdrom()
            && vmconfig::parse_drive(&value)
                .map(|d| d.volume != old.volume)
                .unwrap_or(false)
        {
            let n = (0..)
                .find(|i| !vm.conf.contains_key(&format!("unused{i}")))
                .unwrap_or(0);
            vm.conf.insert(format!("unused{n}"), old.volume.clone());
        }
        if running && !vmconfig::is_hot_key(k) {
            vm.pending.insert(k.clone(), value);
        } else {
            vm.conf.insert(k.clone(), value);
            vm.pending.shift_remove(k);
        }
    }
    let vm = st.vm_on_mut(node, vmid).map_err(|e| e.message())?;
    for k in &ch.delete {
        if running && !vmconfig::is_hot_key(k) {
            if !vm.pending_delete.contains(k) {
                vm.pending_delete.push(k.clone());
            }
        } else {
            vm.conf.shift_remove(k);
            vm.pending.shift_remove(k);
        }
    }
    Ok(log)
}

pub async fn config_update(
    shared: Arc<Shared>,
    who: &Identity,
    node: &str,
    p: Params,
    is_post: bool,
) -> Result<ApiOk, ApiError> {
    let ch = parse_config_change(who, &p, is_post)?;
    let vmid = ch.vmid;
    {
        let st = shared.state();
        let vm = st.vm_on(node, vmid)?;
        if let (Some(l), false) = (vm.lock(), ch.skiplock) {
            return Err(ApiError::die(format!("VM is locked ({l})")));
        }
    }
    if shared.chance(shared.scenario.faults.p_config_lock_timeout) {
        shared.clock.sleep(CONFIG_LOCK_TIMEOUT_S).await;
        return Err(ApiError::die(lock_timeout_message(vmid)));
    }
    // PVE 8.3–9.1: the config lock is taken in the request, for POST as for PUT.
    let guard = shared
        .locks
        .exclusive(&shared.clock, vmid, CONFIG_LOCK_TIMEOUT_S)
        .await
        .map_err(ApiError::die)?;
    precheck(&shared.state(), node, &ch).map_err(ApiError::die)?;
    let allocations = ch
        .set
        .iter()
        .filter(|(k, v)| {
            vmconfig::is_disk_key(k)
                && vmconfig::parse_drive(v)
                    .ok()
                    .and_then(|d| d.new_disk())
                    .is_some()
        })
        .count();
    if !is_post {
        let alloc = shared.draw(shared.scenario.timing.task_s) * allocations as f64;
        shared.clock.sleep(alloc).await;
        apply_change(&mut shared.state(), node, &ch).map_err(ApiError::die)?;
        drop(guard);
        return Ok(ApiOk::null());
    }
    let line = update_line(&ch);
    let node_s = node.to_string();
    let work = shared.draw(shared.scenario.timing.task_s) * (1 + allocations) as f64;
    let upid = tasks::spawn(
        &shared,
        node,
        "qmconfig",
        &vmid.to_string(),
        who,
        move |ctx: TaskCtx| async move {
            let _guard = guard;
            ctx.log(line);
            ctx.sleep(work).await?;
            let lines = apply_change(&mut ctx.shared.state(), &node_s, &ch)?;
            for l in lines {
                ctx.log(l);
            }
            Ok(())
        },
    );
    if let Some(delay) = p.int("background_delay") {
        let deadline = shared.clock.now() + delay as f64;
        loop {
            let exit = shared.state().tasks.get(&upid).and_then(|t| t.exit.clone());
            match exit {
                Some(e) if e == "OK" || e.starts_with("WARNINGS") => return Ok(ApiOk::null()),
                Some(e) => return Err(ApiError::die(format!("failed to update VM {vmid}: {e}"))),
                None if shared.clock.now() >= deadline => break,
                None => shared.clock.sleep(0.1).await,
            }
        }
    }
    Ok(ApiOk::data(json!(upid)))
}

fn is_size_arg(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    let s = s.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    !int.is_empty()
        && int.bytes().all(|c| c.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|c| c.is_ascii_digit())
}

static DRIVE_NAMES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    vmconfig::drive_names()
        .into_iter()
        .map(|s| &*s.leak())
        .collect()
});

pub fn resize(
    shared: &Arc<Shared>,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    let names: &'static [&'static str] = DRIVE_NAMES.as_slice();
    params::validate(
        p,
        &[
            NODE,
            VMID,
            req("disk", Kind::Enum(names)),
            req("size", Kind::Pattern(is_size_arg)),
            opt("digest", Kind::Str { max_len: Some(64) }),
            opt("skiplock", Kind::Bool),
        ],
    )?;
    root_only(who, p, &["skiplock"])?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Config.Disk"])?;
    let disk = p.get("disk").unwrap_or_default();
    let size = p.get("size").unwrap_or_default();
    let digest = p.get("digest");
    let skiplock = p.flag("skiplock");
    let node_s = node.to_string();
    let work = shared.draw(shared.scenario.timing.task_s);
    let upid = tasks::spawn(
        shared,
        node,
        "resize",
        &vmid.to_string(),
        who,
        move |ctx: TaskCtx| async move {
            let sh = ctx.shared.clone();
            let _guard = ctx
                .run(sh.locks.exclusive(&sh.clock, vmid, CONFIG_LOCK_TIMEOUT_S))
                .await??;
            let (old, new, volid, kind) = {
                let st = sh.state();
                let vm = st.vm_on(&node_s, vmid).map_err(|e| e.message())?;
                if let Some(d) = &digest
                    && d != &vmconfig::digest(&vm.conf)
                {
                    return Err("checksum mismatch (file change by other user?)".into());
                }
                if let (Some(l), false) = (vm.lock(), skiplock) {
                    return Err(TaskError::Failed(format!("VM is locked ({l})")));
                }
                let drive = vm
                    .conf
                    .get(&disk)
                    .and_then(|v| vmconfig::parse_drive(v).ok())
                    .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
                if drive.is_cdrom() {
                    return Err("you can't resize a cdrom".into());
                }
                let old = drive.size().unwrap_or(0);
                let delta = vmconfig::parse_size(size.trim_start_matches('+')).unwrap_or(0);
                let new = if size.starts_with('+') {
                    old + delta
                } else {
                    delta
                };
                if new < old {
                    return Err("shrinking disks is not supported".into());
                }
                let kind = drive.storage().and_then(|s| st.storage(s)).map(|s| s.kind);
                (old, new, drive.volume.clone(), kind)
            };
            if new == old {
                return Ok(());
            }
            ctx.sleep(work).await?;
            let vol = volid
                .split(':')
                .nth(1)
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            match kind {
                Some(StorageKind::Lvmthin) => {
                    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
                    ctx.log(format!(
                    "  Size of logical volume pve/{vol} changed from {:.2} GiB ({} extents) to {:.2} GiB ({} extents).",
                    gib(old), old / (4 << 20), gib(new), new / (4 << 20)
                ));
                    ctx.log(format!("  Logical volume pve/{vol} successfully resized."));
                }
                _ => ctx.log("Image resized."),
            }
            let mut st = sh.state();
            let vm = st.vm_on_mut(&node_s, vmid).map_err(|e| e.message())?;
            if let Some(mut d) = vm
                .conf
                .get(&disk)
                .and_then(|v| vmconfig::parse_drive(v).ok())
            {
                d.set_opt("size", vmconfig::format_size(new));
                vm.conf.insert(disk.clone(), d.render());
            }
            Ok(())
        },
    );
    Ok(ApiOk::data(json!(upid)))
}

fn power_schema(op: &str) -> Vec<P> {
    let mut s = vec![NODE, VMID, opt("skiplock", Kind::Bool)];
    match op {
        "start" => s.extend([
            opt(
                "timeout",
                Kind::Int {
                    min: Some(0),
                    max: Some(86400),
                },
            ),
            opt("stateuri", STR),
            opt("migratedfrom", Kind::Node),
            opt("migration_type", Kind::Enum(&["secure", "insecure"])),
            opt("migration_network", STR),
            opt("machine", STR),
            opt("targetstorage", STR),
            opt("force-cpu", STR),
        ]),
        "stop" => s.extend([
            opt("timeout", INT),
            opt("keepActive", Kind::Bool),
            opt("migratedfrom", Kind::Node),
            opt("overrule-shutdown", Kind::Bool),
        ]),
        "shutdown" => s.extend([
            opt(
                "timeout",
                Kind::Int {
                    min: Some(0),
                    max: None,
                },
            ),
            opt("forceStop", Kind::Bool),
            opt("keepActive", Kind::Bool),
        ]),
        "reboot" => s.extend([opt("timeout", INT)]),
        "suspend" => s.extend([
            opt("todisk", Kind::Bool),
            opt("statestorage", Kind::StorageId),
        ]),
        "resume" => s.extend([opt("nocheck", Kind::Bool)]),
        _ => {}
    }
    s
}

pub fn power(
    shared: &Arc<Shared>,
    who: &Identity,
    node: &str,
    op: &'static str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(p, &power_schema(op))?;
    root_only(
        who,
        p,
        &[
            "skiplock",
            "stateuri",
            "migratedfrom",
            "migration_type",
            "migration_network",
            "targetstorage",
            "keepActive",
        ],
    )?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.PowerMgmt"])?;
    let force = p.flag("forceStop");
    if op == "shutdown" && !force {
        let st = shared.state();
        if st.vm_on(node, vmid).is_ok_and(|v| v.power == Power::Paused) {
            return Err(ApiError::die("VM is paused - cannot shutdown"));
        }
    }
    let timeout = p.int("timeout");
    let skiplock = p.flag("skiplock");
    let node_s = node.to_string();
    let kind = format!("qm{op}");
    let upid = tasks::spawn(
        shared,
        node,
        &kind,
        &vmid.to_string(),
        who,
        move |ctx: TaskCtx| async move {
            let sh = ctx.shared.clone();
            let _guard = ctx
                .run(sh.locks.exclusive(&sh.clock, vmid, CONFIG_LOCK_TIMEOUT_S))
                .await??;
            match op {
                "start" => start_task(&ctx, &node_s, vmid, skiplock).await,
                "stop" => stop_task(&ctx, &node_s, vmid, skiplock).await,
                "shutdown" => {
                    shutdown_task(
                        &ctx,
                        &node_s,
                        vmid,
                        skiplock,
                        timeout.unwrap_or(60) as f64,
                        force,
                    )
                    .await
                }
                "reboot" => {
                    shutdown_task(
                        &ctx,
                        &node_s,
                        vmid,
                        skiplock,
                        timeout.unwrap_or(60) as f64,
                        false,
                    )
                    .await?;
                    start_task(&ctx, &node_s, vmid, skiplock).await
                }
                "reset" => {
                    running_or_fail(&ctx, &node_s, vmid)?;
                    stop_vm(&ctx.shared, &node_s, vmid);
                    start_task(&ctx, &node_s, vmid, true).await
                }
                "suspend" => {
                    running_or_fail(&ctx, &node_s, vmid)?;
                    set_power(&ctx.shared, &node_s, vmid, Power::Paused);
                    Ok(())
                }
                _ => {
                    set_power(&ctx.shared, &node_s, vmid, Power::Running);
                    Ok(())
                }
            }
        },
    );
    Ok(ApiOk::data(json!(upid)))
}

fn running_or_fail(ctx: &TaskCtx, node: &str, vmid: u32) -> TaskResult {
    let st = ctx.shared.state();
    let vm = st.vm_on(node, vmid).map_err(|e| e.message())?;
    if vm.power == Power::Stopped {
        return Err(format!("VM {vmid} not running").into());
    }
    Ok(())
}

fn set_power(shared: &Shared, node: &str, vmid: u32, p: Power) {
    let mut st = shared.state();
    if let Ok(vm) = st.vm_on_mut(node, vmid)
        && vm.power != Power::Stopped
    {
        vm.power = p;
    }
}

async fn start_task(ctx: &TaskCtx, node: &str, vmid: u32, skiplock: bool) -> TaskResult {
    let sh = &ctx.shared;
    let (work, cloudinit) = {
        let st = sh.state();
        let vm = st
            .vm_on(node, vmid)
            .map_err(|_| config_missing(node, vmid).message())?;
        if vm.is_template() {
            return Err("you can't start a vm if it's a template".into());
        }
        if let (Some(l), false) = (vm.lock(), skiplock) {
            return Err(TaskError::Failed(format!("VM is locked ({l})")));
        }
        if vm.power != Power::Stopped {
            return Err(TaskError::Failed(format!("VM {vmid} already running")));
        }
        let conf = vm.effective();
        for (k, v) in &conf {
            if let Some(br) = k
                .starts_with("net")
                .then(|| vmconfig::parse_net(v).ok())
                .flatten()
                .and_then(|n| n.bridge().map(str::to_string))
                && !sh.scenario.cluster.bridges.contains(&br)
            {
                return Err(TaskError::Failed(format!("bridge '{br}' does not exist")));
            }
        }
        let ci = conf
            .iter()
            .any(|(k, v)| vmconfig::is_disk_key(k) && v.contains("cloudinit"));
        (vm.draws.start_s, ci)
    };
    if cloudinit {
        ctx.log("generating cloud-init ISO");
    }
    ctx.sleep(work).await?;
    let started = {
        let mut st = sh.state();
        let now = sh.clock.now();
        let node_index = st.node_index(node);
        let pid_base = st.nodes.get(node_index).map(|n| n.next_pid).unwrap_or(1000);
        let vm = st.vm_on_mut(node, vmid).map_err(|e| e.message())?;
        vm.apply_pending();
        let guest = new_guest(sh, vm, now, node_index, pid_base);
        vm.power = Power::Running;
        vm.execs.clear();
        let rec = (guest.agent_up_at, guest.ip_at, guest.clone());
        vm.guest = Some(guest);
        let name = vm.name();
        let entry = st.vm_stats.entry(vmid).or_default();
        entry.vmid = vmid;
        entry.node = node.to_string();
        entry.name = name;
        entry.started_at = Some(now);
        entry.agent_up_plan = rec.0;
        entry.ip_plan = rec.1;
        entry.first_agent_ok_at = None;
        rec.2
    };
    sh.agent.on_start(sh, vmid, &started);
    Ok(())
}

/// The guest's timeline from its draws and the scenario's faults.
fn new_guest(sh: &Shared, vm: &Vm, now: f64, node_index: usize, pid_base: u32) -> Guest {
    let f = &sh.scenario.faults;
    let never_agent = vm.ordinal.is_some_and(|o| f.agent_never_up.contains(&o));
    let never_ip = vm.ordinal.is_some_and(|o| f.ip_never.contains(&o));
    let booted_at = now + vm.draws.boot_s;
    let agent_up_at = (!never_agent).then_some(booted_at + vm.draws.agent_s);
    let octet3 = ((vm.vmid / 250) % 256) as u8;
    let octet4 = (vm.vmid % 250 + 3) as u8;
    Guest {
        started_at: now,
        pid: pid_base.wrapping_add(vm.vmid * 7 % 9973),
        booted_at,
        agent_up_at,
        ip_at: if never_ip {
            None
        } else {
            agent_up_at.map(|a| a + vm.draws.dhcp_s)
        },
        cloud_init_at: agent_up_at.map(|a| a + vm.draws.cloud_init_s),
        mac: vm.net0_mac(),
        agent_configured: vmconfig::agent_enabled(vm.conf.get("agent")),
        ipv4: Ipv4Addr::new(10, 20u8.wrapping_add(node_index as u8), octet3, octet4),
    }
}

/// Powers a VM off now (no task): guest gone, agent process ended.
pub fn stop_vm(shared: &Shared, node: &str, vmid: u32) {
    let now = shared.clock.now();
    {
        let mut st = shared.state();
        let Ok(vm) = st.vm_on_mut(node, vmid) else {
            return;
        };
        vm.power = Power::Stopped;
        vm.guest = None;
        vm.execs.clear();
        if let Some(s) = st.vm_stats.get_mut(&vmid) {
            s.agent_up_plan = s.agent_up_plan.filter(|t| *t <= now);
            s.ip_plan = s.ip_plan.filter(|t| *t <= now);
        }
    }
    shared.agent.on_stop(vmid);
}

async fn stop_task(ctx: &TaskCtx, node: &str, vmid: u32, skiplock: bool) -> TaskResult {
    let work = {
        let st = ctx.shared.state();
        let vm = st.vm_on(node, vmid).map_err(|e| e.message())?;
        if let (Some(l), false) = (vm.lock(), skiplock) {
            return Err(TaskError::Failed(format!("VM is locked ({l})")));
        }
        if vm.power == Power::Stopped {
            return Ok(());
        }
        vm.draws.start_s / 3.0
    };
    ctx.sleep(work).await?;
    stop_vm(&ctx.shared, node, vmid);
    Ok(())
}

async fn shutdown_task(
    ctx: &TaskCtx,
    node: &str,
    vmid: u32,
    skiplock: bool,
    timeout: f64,
    force: bool,
) -> TaskResult {
    let sh = &ctx.shared;
    let down_at = {
        let st = sh.state();
        let vm = st
            .vm_on(node, vmid)
            .map_err(|_| no_config_for(node, vmid))?;
        if let (Some(l), false) = (vm.lock(), skiplock) {
            return Err(TaskError::Failed(format!("VM is locked ({l})")));
        }
        match (&vm.power, &vm.guest) {
            (Power::Stopped, _) | (_, None) => return Ok(()),
            // A paused guest never reacts to ACPI.
            (Power::Paused, _) => f64::INFINITY,
            (Power::Running, Some(g)) => g.booted_at.max(sh.clock.now()) + vm.draws.shutdown_s,
        }
    };
    let now = sh.clock.now();
    if down_at <= now + timeout {
        ctx.sleep(down_at - now).await?;
        stop_vm(sh, node, vmid);
        return Ok(());
    }
    ctx.sleep(timeout).await?;
    if force {
        ctx.log("VM still running - terminating now with SIGTERM");
        stop_vm(sh, node, vmid);
        Ok(())
    } else {
        Err("VM quit/powerdown failed - got timeout".into())
    }
}

pub fn destroy(
    shared: &Arc<Shared>,
    who: &Identity,
    node: &str,
    p: &Params,
) -> Result<ApiOk, ApiError> {
    params::validate(
        p,
        &[
            NODE,
            VMID,
            opt("purge", Kind::Bool),
            opt("destroy-unreferenced-disks", Kind::Bool),
            opt("skiplock", Kind::Bool),
        ],
    )?;
    root_only(who, p, &["skiplock"])?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Allocate"])?;
    {
        let st = shared.state();
        let vm = st.vm_on(node, vmid)?;
        if vm.conf.get("protection").is_some_and(|v| v == "1") {
            return Err(ApiError::die(format!(
                "can't remove VM {vmid} - protection mode enabled"
            )));
        }
        if vm.power != Power::Stopped {
            return Err(ApiError::die(format!(
                "VM {vmid} is running - destroy failed"
            )));
        }
    }
    let skiplock = p.flag("skiplock");
    let node_s = node.to_string();
    let work = shared.draw(shared.scenario.timing.task_s);
    let upid = tasks::spawn(
        shared,
        node,
        "qmdestroy",
        &vmid.to_string(),
        who,
        move |ctx: TaskCtx| async move {
            let sh = ctx.shared.clone();
            let _guard = ctx
                .run(sh.locks.exclusive(&sh.clock, vmid, CONFIG_LOCK_TIMEOUT_S))
                .await??;
            let volumes: Vec<(String, Option<StorageKind>)> = {
                let st = sh.state();
                let vm = st.vm_on(&node_s, vmid).map_err(|e| e.message())?;
                match vm.lock() {
                    Some(l) if l != "suspended" && !skiplock => {
                        return Err(TaskError::Failed(format!("VM is locked ({l})")));
                    }
                    _ => {}
                }
                if vm.power != Power::Stopped {
                    return Err(TaskError::Failed(format!(
                        "VM {vmid} is running - destroy failed"
                    )));
                }
                let base = format!("base-{vmid}-");
                for other in st.vms.values().filter(|o| o.vmid != vmid) {
                    if let Some((_, d)) = other
                        .drives()
                        .into_iter()
                        .find(|(_, d)| d.volume.contains(&base) && d.volume.contains('/'))
                    {
                        let vol = d.volume.split('/').next().unwrap_or("").to_string();
                        return Err(TaskError::Failed(format!(
                            "base volume '{vol}' is still in use by linked cloned"
                        )));
                    }
                }
                vm.conf
                    .iter()
                    .filter(|(k, _)| vmconfig::is_disk_key(k) || k.starts_with("unused"))
                    .filter_map(|(_, v)| vmconfig::parse_drive(v).ok())
                    .map(|d| {
                        let kind = d.storage().and_then(|s| st.storage(s)).map(|s| s.kind);
                        (d.volume, kind)
                    })
                    .collect()
            };
            ctx.sleep(work).await?;
            {
                let mut st = sh.state();
                for (vol, kind) in &volumes {
                    if st.free_volume(vol, &node_s) {
                        let name = vol
                            .split(':')
                            .nth(1)
                            .unwrap_or("")
                            .rsplit('/')
                            .next()
                            .unwrap_or("");
                        match kind {
                            Some(StorageKind::Lvmthin) => ctx_log_locked(
                                &mut st,
                                &ctx.upid,
                                format!("  Logical volume \"{name}\" successfully removed."),
                            ),
                            _ => ctx_log_locked(
                                &mut st,
                                &ctx.upid,
                                "Removing image: 100% complete...done.".into(),
                            ),
                        }
                    }
                }
                st.vms.remove(&vmid);
                let now = sh.clock.now();
                if let Some(s) = st.vm_stats.get_mut(&vmid) {
                    s.destroyed_at = Some(now);
                }
            }
            sh.agent.on_stop(vmid);
            Ok(())
        },
    );
    Ok(ApiOk::data(json!(upid)))
}

/// Appends a task log line while the state lock is already held.
pub fn ctx_log_locked(st: &mut Cluster, upid: &str, line: String) {
    if let Some(t) = st.tasks.get_mut(upid) {
        t.log.push(line);
    }
}

/// For clone: copy a config and give it a new identity.
pub fn fresh_identity(st: &mut Cluster, vmid: u32, conf: &mut Config) {
    for (k, v) in conf.iter_mut() {
        if k.starts_with("net")
            && let Ok(mut n) = vmconfig::parse_net(v)
        {
            n.mac = Some(st.gen_mac(vmid));
            *v = n.render();
        }
    }
    if conf.contains_key("smbios1") {
        let uuid = st.gen_uuid(vmid, "smbios");
        conf.insert("smbios1".into(), format!("uuid={uuid}"));
    }
    if conf.contains_key("vmgenid") {
        let id = st.gen_uuid(vmid, "vmgenid");
        conf.insert("vmgenid".into(), id);
    }
}
