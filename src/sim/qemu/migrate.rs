//! `POST …/migrate` of a stopped VM (offline migration): PVE's synchronous checks, then a
//! `qmigrate` task on the source node that holds the VM's config lock throughout, writes
//! `lock: migrate`, copies each local volume to the target node (its `targetstorage`, or the
//! same storage) at the slowest of the migration network and both storages, moves the config,
//! frees the source volumes and unlocks. A failure or an interrupt frees what was copied and
//! leaves the VM where it was, unlocked.

use std::sync::Arc;

use serde_json::json;

use super::{root_only, vm_path};
use crate::sim::auth::Identity;
use crate::sim::cluster::{Cluster, Power, VolumeKind};
use crate::sim::envelope::{ApiError, ApiOk};
use crate::sim::locks::CONFIG_LOCK_TIMEOUT_S;
use crate::sim::params::{self, Kind, NODE, Params, STR, VMID, opt, req, vmid_of};
use crate::sim::scenario::{StorageKind, StorageSpec};
use crate::sim::tasks::{self, TaskCtx, TaskError, TaskResult};
use crate::sim::{NO_QUORUM, Shared};

/// `targetstorage`: one storage for every volume, `src:dst` pairs (with an optional default),
/// or `1` to keep each volume's storage.
#[derive(Debug, Clone, Default)]
struct StorageMap {
    default: Option<String>,
    entries: Vec<(String, String)>,
}

impl StorageMap {
    fn parse(text: &str) -> Result<StorageMap, String> {
        let mut map = StorageMap::default();
        if text == "1" {
            return Ok(map);
        }
        for item in text.split([',', ';', ' ', '\0']).filter(|i| !i.is_empty()) {
            let ok = |sid: &str| params::check_value(Kind::StorageId, sid).is_ok();
            match item.split_once(':') {
                Some((src, dst)) if ok(src) && ok(dst) => {
                    map.entries.push((src.to_string(), dst.to_string()));
                }
                None if ok(item) && map.default.is_none() => map.default = Some(item.to_string()),
                None if ok(item) => {
                    return Err("default target ID specified more than once\n".into());
                }
                _ => return Err(format!("invalid format - invalid ID '{item}'\n")),
            }
        }
        Ok(map)
    }

    fn target_for(&self, sid: &str) -> String {
        self.entries
            .iter()
            .find(|(src, _)| src == sid)
            .map(|(_, dst)| dst.clone())
            .or_else(|| self.default.clone())
            .unwrap_or_else(|| sid.to_string())
    }

    fn targets(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .map(|(_, dst)| dst.as_str())
            .chain(self.default.as_deref())
    }
}

/// One local volume to copy.
struct LocalVolume {
    key: String,
    volid: String,
    from: StorageSpec,
    to: StorageSpec,
    cloudinit: bool,
    /// Bytes a copy moves: an LVM volume is exported whole, a file only as far as allocated.
    bytes: u64,
    allocated: u64,
    format: String,
}

/// `storage_check_enabled` on `node`, then the images content (`check_storage_access_migrate`).
fn usable_for_images(st: &Cluster, sid: &str, node: &str) -> Result<StorageSpec, ApiError> {
    let spec = st
        .storage(sid)
        .cloned()
        .ok_or_else(|| ApiError::die(format!("storage '{sid}' does not exist")))?;
    spec.check_usable(node).map_err(ApiError::die)?;
    if !spec.has_images() {
        return Err(ApiError::die(format!(
            "storage '{sid}' does not support vm images"
        )));
    }
    Ok(spec)
}

pub fn migrate(
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
            req("target", Kind::Node),
            opt("online", Kind::Bool),
            opt("force", Kind::Bool),
            opt("migration_type", Kind::Enum(&["secure", "insecure"])),
            opt("migration_network", STR),
            opt("with-local-disks", Kind::Bool),
            opt("targetstorage", STR),
            opt(
                "bwlimit",
                Kind::Int {
                    min: Some(0),
                    max: None,
                },
            ),
            opt("with-conntrack-state", Kind::Bool),
        ],
    )?;
    let vmid = vmid_of(p);
    who.require(&vm_path(vmid), &["VM.Migrate"])?;
    let target = p.get("target").unwrap_or_default();
    if target == node {
        return Err(ApiError::param("target", "target is local node."));
    }
    if shared.quorum_lost(shared.clock.now()) {
        return Err(ApiError::die(NO_QUORUM));
    }
    let st = shared.state();
    if st.node(&target).is_none() {
        return Err(ApiError::die(format!("no such cluster node '{target}'")));
    }
    root_only(who, p, &["force", "migration_type", "migration_network"])?;
    let vm = st.vm_on(node, vmid)?;
    if let Some(l) = vm.lock() {
        return Err(ApiError::die(format!("VM is locked ({l})")));
    }
    if vm.power != Power::Stopped && !p.flag("online") {
        return Err(ApiError::die("can't migrate running VM without --online"));
    }
    if vm.power != Power::Stopped {
        return Err(ApiError::die(
            "online migration is not modelled by the simulator; stop the VM first",
        ));
    }
    let map = match p.get("targetstorage") {
        Some(text) => {
            let map = StorageMap::parse(&text).map_err(|e| {
                ApiError::param("targetstorage", format!("failed to parse storage map: {e}"))
            })?;
            if map.default.is_some() || !map.entries.is_empty() {
                who.require(&vm_path(vmid), &["VM.Config.Disk"])?;
            }
            for sid in map.targets() {
                usable_for_images(&st, sid, &target)?;
                who.require(&format!("/storage/{sid}"), &["Datastore.AllocateSpace"])?;
            }
            map
        }
        None => StorageMap::default(),
    };
    // `check_storage_availability` when the volumes keep their storages.
    if map.default.is_none() && map.entries.is_empty() {
        for (_, d) in vm.drives() {
            let Some(sid) = d.storage() else { continue };
            let Some(spec) = st.storage(sid) else {
                return Err(ApiError::die(format!("storage '{sid}' does not exist")));
            };
            spec.check_usable(node).map_err(ApiError::die)?;
            spec.check_usable(&target).map_err(ApiError::die)?;
        }
    }
    drop(st);
    let node_s = node.to_string();
    let upid = tasks::spawn(
        shared,
        node,
        "qmigrate",
        &vmid.to_string(),
        who,
        move |ctx| run(ctx, node_s, target, vmid, map),
    );
    Ok(ApiOk::data(json!(upid)))
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

async fn run(ctx: TaskCtx, node: String, target: String, vmid: u32, map: StorageMap) -> TaskResult {
    let sh = ctx.shared.clone();
    let started = sh.clock.now();
    let stamp = |sh: &Shared| {
        jiff::Timestamp::from_second(sh.clock.epoch())
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let log = |line: String| ctx.log(format!("{} {line}", stamp(&sh)));
    let guard = ctx.lock(vmid, false, CONFIG_LOCK_TIMEOUT_S).await;
    let result = match guard {
        Ok(_guard) => {
            let ip = sh
                .state()
                .node(&target)
                .map(|n| format!("192.168.100.{}", 11 + n.index))
                .unwrap_or_default();
            log(format!(
                "starting migration of VM {vmid} to node '{target}' ({ip})"
            ));
            let moved = copy_and_move(&ctx, &log, &node, &target, vmid, &map).await;
            if moved.is_err() {
                // phase1_cleanup: the VM stays where it was, unlocked.
                if let Ok(vm) = sh.state().vm_on_mut(&node, vmid) {
                    vm.conf.shift_remove("lock");
                }
            }
            moved
        }
        Err(e) => Err(e),
    };
    let took = duration(sh.clock.now() - started);
    match result {
        Ok(()) => {
            log(format!("migration finished successfully (duration {took})"));
            Ok(())
        }
        Err(e) => {
            let why = match e {
                TaskError::Interrupted => "interrupted by signal".to_string(),
                TaskError::Failed(m) => m,
            };
            ctx.log(format!(
                "{} ERROR: migration aborted (duration {took}): {why}",
                stamp(&sh)
            ));
            Err("migration aborted".into())
        }
    }
}

/// Phase 1 and 3 of an offline migration: scan, copy, move the config.
async fn copy_and_move(
    ctx: &TaskCtx,
    log: &impl Fn(String),
    node: &str,
    target: &str,
    vmid: u32,
    map: &StorageMap,
) -> TaskResult {
    let sh = ctx.shared.clone();
    let volumes = {
        let mut st = sh.state();
        let vm = st.vm_on(node, vmid).map_err(|e| e.message())?;
        if let Some(l) = vm.lock() {
            return Err(format!("VM is locked ({l})").into());
        }
        let mut volumes = Vec::new();
        for (key, d) in vm.drives() {
            if d.is_cdrom() && !d.is_cloudinit() {
                continue;
            }
            let Some(from) = d.storage().and_then(|sid| st.storage(sid)).cloned() else {
                continue;
            };
            if from.shared() {
                continue;
            }
            // A linked clone's volume names its base first: `base-9000-disk-1/vm-101-disk-0`.
            let name = d.volume.split_once(':').map_or("", |(_, n)| n);
            let parts: Vec<&str> = name.split('/').collect();
            if let Some(base) = parts[..parts.len() - 1]
                .iter()
                .find(|p| p.starts_with("base-"))
            {
                return Err(format!(
                    "Problem found while scanning volumes - can't migrate '{}' as it's a clone of '{base}'",
                    d.volume
                )
                .into());
            }
            let to = st
                .storage(&map.target_for(&from.id))
                .cloned()
                .ok_or_else(|| format!("storage '{}' does not exist", map.target_for(&from.id)))?;
            let virtual_size = d.size().unwrap_or(0);
            let allocated = st.volume_allocated(&d.volume, node).unwrap_or(virtual_size);
            let format = match to.kind {
                StorageKind::Lvmthin => "raw".to_string(),
                _ => d
                    .volume
                    .rsplit('.')
                    .next()
                    .filter(|e| matches!(*e, "raw" | "qcow2" | "vmdk"))
                    .unwrap_or("raw")
                    .to_string(),
            };
            volumes.push(LocalVolume {
                key,
                volid: d.volume.clone(),
                bytes: if from.kind == StorageKind::Lvmthin {
                    virtual_size.max(allocated)
                } else {
                    allocated
                },
                allocated,
                cloudinit: d.is_cloudinit(),
                from,
                to,
                format,
            });
        }
        if let Ok(vm) = st.vm_on_mut(node, vmid) {
            vm.conf.insert("lock".into(), "migrate".into());
        }
        volumes
    };
    for v in &volumes {
        if v.cloudinit {
            log(format!(
                "found generated disk '{}' (in current VM config)",
                v.volid
            ));
        } else {
            log(format!("found local disk '{}' (attached)", v.volid));
        }
    }
    if !volumes.is_empty() {
        log("copying local disk images".to_string());
    }
    let mut copied: Vec<(String, String, String)> = Vec::new();
    let rate = sh.scenario.timing.migrate_mb_s * 1e6;
    let mut failure = None;
    for v in &volumes {
        let mb_s = (v.from.throughput_mb_s.min(v.to.throughput_mb_s) * 1e6).min(rate);
        if let Err(e) = ctx.sleep(v.bytes as f64 / mb_s.max(1.0)).await {
            failure = Some(e);
            break;
        }
        let new_volid = {
            let mut st = sh.state();
            let kind = if v.cloudinit {
                VolumeKind::CloudInit
            } else {
                VolumeKind::Disk
            };
            st.alloc_volume(&v.to, target, vmid, kind, &v.format, v.allocated)
        };
        log(format!(
            "volume '{}' is '{new_volid}' on the target",
            v.volid
        ));
        copied.push((v.key.clone(), v.volid.clone(), new_volid));
    }
    let mut st = sh.state();
    if let Some(e) = failure {
        for (_, _, new) in &copied {
            st.free_volume(new, target);
        }
        return Err(e);
    }
    for (_, old, _) in &copied {
        st.free_volume(old, node);
    }
    let vm = st.vm_on_mut(node, vmid).map_err(|e| e.message())?;
    for (key, old, new) in &copied {
        if let Some(line) = vm.conf.get_mut(key) {
            *line = line.replacen(old.as_str(), new, 1);
        }
    }
    vm.conf.shift_remove("lock");
    vm.node = target.to_string();
    if let Some(stats) = st.vm_stats.get_mut(&vmid) {
        stats.node = target.to_string();
    }
    Ok(())
}
