//! `GET/POST/PUT …/config` and `GET …/pending`: the key schema and per-key privileges, the
//! config lock taken in the request, digest and lock checks, pending changes on a running VM,
//! new disks allocated in the `qmconfig` task (POST) or in the request (PUT).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{root_only, vm_path};
use crate::sim::Shared;
use crate::sim::auth::Identity;
use crate::sim::cluster::{Cluster, Power, VolumeKind, efi_size};
use crate::sim::envelope::{ApiError, ApiOk};
use crate::sim::locks::{CONFIG_LOCK_TIMEOUT_S, lock_timeout_message};
use crate::sim::params::{self, Kind, NODE, Params, STR, VMID, opt, vmid_of};
use crate::sim::scenario::StorageKind;
use crate::sim::tasks::{self, TaskCtx};
use crate::sim::vmconfig::{self, KeyKind};

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
        let is_id = k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.len() > 1
            && k.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if !is_id {
            return Err(ApiError::param(
                "delete",
                format!("invalid format - invalid configuration ID '{k}'\n"),
            ));
        }
        // PVE's own wording, unbalanced quote included.
        if set.iter().any(|(s, _)| s == k) {
            return Err(ApiError::param(
                "delete",
                format!("you can't use '-{k}' and -delete {k}' at the same time"),
            ));
        }
        if vmconfig::key_kind(k).is_none() && !k.starts_with("unused") {
            return Err(ApiError::param("delete", format!("unknown option '{k}'")));
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
                        // vdisk_alloc activates the storage on this node first.
                        spec.check_usable(node)?;
                        let efi = k == "efidisk0";
                        let four_m = d.opt("efitype") == Some("4m");
                        let size = if efi {
                            efi_size(&spec, four_m)
                        } else {
                            // PVE's convert_size to KiB, then bytes.
                            ((gib * (1u64 << 20) as f64) as u64) << 10
                        };
                        // `format || storage_default_format`: raw on every storage kind here;
                        // LVM-thin allocates raw only and refuses anything else.
                        let fmt = match (spec.kind, d.opt("format")) {
                            (StorageKind::Lvmthin, Some(f)) if f != "raw" => {
                                return Err(format!("unsupported format '{f}'"));
                            }
                            (_, Some(f)) => f,
                            (_, None) => "raw",
                        };
                        // The EFI vars are written in full; a new disk is thin (LVM-thin, a
                        // sparse raw file) or, as qcow2, only its preallocated metadata (8
                        // bytes of L2 table per 64 KiB cluster).
                        let used = match (efi, fmt) {
                            (true, _) => size,
                            (false, "qcow2") => size / 8192,
                            (false, _) => 0,
                        };
                        let volid = st.alloc_volume(&spec, node, vmid, VolumeKind::Disk, fmt, used);
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
            Some(KeyKind::Tags) => vmconfig::normalize_tags(v),
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

/// `$check_storage_access`, before the lock: a new disk's storage must exist (500) and hold
/// images (400 on `storage`).
fn check_new_disks(st: &Cluster, ch: &ConfigChange) -> Result<(), ApiError> {
    for (k, v) in &ch.set {
        if !vmconfig::is_disk_key(k) {
            continue;
        }
        let Some((sid, _)) = vmconfig::parse_drive(v).ok().and_then(|d| d.new_disk()) else {
            continue;
        };
        let spec = st
            .storage(&sid)
            .ok_or_else(|| ApiError::die(format!("storage '{sid}' does not exist")))?;
        if !spec.has_images() {
            return Err(ApiError::param(
                "storage",
                format!("storage '{sid}' does not support vm images"),
            ));
        }
    }
    Ok(())
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
    shared.state().vm_on(node, vmid)?;
    check_new_disks(&shared.state(), &ch)?;
    // The lock comes first (up to 10 s), then the digest, then `check_lock`: a VM being cloned
    // answers with the lock timeout, not `VM is locked (clone)`.
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
