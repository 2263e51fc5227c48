//! `POST …/clone`: PVE's synchronous checks, then a `qmclone` task (id = source vmid) that takes
//! the source lock (shared when stopped), writes the target's temporary `lock: clone` config,
//! allocates volumes under the storage lock and copies the bytes at the storage's shared
//! throughput, logging as `clone_disk` does; on failure everything is undone and the task ends
//! `clone failed: …`.

use std::sync::Arc;

use serde_json::json;

use super::Shared;
use super::auth::Identity;
use super::cluster::{Cluster, Draws, Power, Vm, VolumeKind, no_config_for};
use super::envelope::{ApiError, ApiOk};
use super::locks::{CLONE_LOCK_TIMEOUT_S, VmLockGuard};
use super::params::{self, Kind, NODE, Params, STR, VMID, opt, req, vmid_of};
use super::scenario::{StorageKind, StorageSpec};
use super::storage::{Interrupted, STORAGE_LOCK_TIMEOUT_S, storage_key, storage_lock_message};
use super::tasks::{self, TaskCtx, TaskError, TaskResult};
use super::vmconfig::{self, Config, Drive};

/// One drive to clone, decided synchronously.
#[derive(Debug, Clone)]
struct DrivePlan {
    key: String,
    source: Drive,
    storage: StorageSpec,
    format: String,
    bytes: u64,
    cloudinit: bool,
}

struct ClonePlan {
    vmid: u32,
    newid: u32,
    node: String,
    target: String,
    full: bool,
    name: String,
    description: Option<String>,
    drives: Vec<DrivePlan>,
    source_conf: Config,
    source_running: bool,
    source_has_pending: bool,
    draws: Draws,
}

fn file_format(volname: &str) -> &str {
    volname
        .rsplit('.')
        .next()
        .filter(|e| matches!(*e, "raw" | "qcow2" | "vmdk"))
        .unwrap_or("raw")
}

pub fn clone(
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
            req("newid", Kind::Vmid),
            opt("name", Kind::DnsName),
            opt(
                "description",
                Kind::Str {
                    max_len: Some(8192),
                },
            ),
            opt("full", Kind::Bool),
            opt("target", Kind::Node),
            opt("storage", Kind::StorageId),
            opt("format", Kind::Enum(&["raw", "qcow2", "vmdk"])),
            opt("pool", STR),
            opt("snapname", STR),
            opt(
                "bwlimit",
                Kind::Int {
                    min: Some(0),
                    max: None,
                },
            ),
        ],
    )?;
    let vmid = vmid_of(p);
    let newid: u32 = p.get("newid").and_then(|v| v.parse().ok()).unwrap_or(0);
    who.require(&format!("/vms/{vmid}"), &["VM.Clone"])?;
    if let Some(pool) = p.get("pool") {
        return Err(ApiError::forbidden(&format!(
            "pool '{pool}' does not exist"
        )));
    }
    if !who.has("VM.Allocate") {
        return Err(ApiError::forbidden(""));
    }
    let plan = {
        let mut st = shared.state();
        let src = st
            .vms
            .get(&vmid)
            .filter(|v| v.node == node)
            .ok_or_else(|| ApiError::die(no_config_for(node, vmid)))?;
        let target = p.get("target").unwrap_or_else(|| node.to_string());
        if st.node(&target).is_none() {
            return Err(ApiError::die(format!("no such cluster node '{target}'")));
        }
        let storage = match p.get("storage") {
            Some(sid) => {
                let s = st
                    .storage(&sid)
                    .cloned()
                    .ok_or_else(|| ApiError::die(format!("storage '{sid}' does not exist")))?;
                if !s.has_images() {
                    return Err(ApiError::param(
                        "storage",
                        format!("storage '{sid}' does not support vm images"),
                    ));
                }
                if target != node && !s.shared() {
                    return Err(ApiError::die(format!(
                        "can't clone to non-shared storage '{sid}'"
                    )));
                }
                Some(s)
            }
            None => None,
        };
        if let Some(l) = src.lock() {
            return Err(ApiError::die(format!("VM is locked ({l})")));
        }
        if let Some(snap) = p.get("snapname") {
            return Err(ApiError::die(format!("snapshot '{snap}' does not exist")));
        }
        let full = if p.has("full") {
            p.flag("full")
        } else {
            !src.is_template()
        };
        if !full {
            for k in ["storage", "format"] {
                if p.has(k) {
                    return Err(ApiError::die(format!(
                        "parameter '{k}' not allowed for linked clones"
                    )));
                }
            }
        }
        let mut drives = Vec::new();
        for (key, d) in src.drives() {
            let cloudinit = d.is_cloudinit();
            if d.is_cdrom() && !cloudinit {
                continue;
            }
            let Some(sid) = d.storage() else { continue };
            let Some(src_storage) = st.storage(sid).cloned() else {
                continue;
            };
            if target != node && !src_storage.shared() {
                return Err(ApiError::die(format!(
                    "can't clone VM to node '{target}' (VM uses local storage)"
                )));
            }
            if !full && !cloudinit && !d.volume.contains(":base-") {
                return Err(ApiError::die(format!(
                    "Linked clone feature is not supported for '{}' ({key})",
                    d.volume
                )));
            }
            let dest = if full {
                storage.clone().unwrap_or(src_storage)
            } else {
                src_storage
            };
            let format = match dest.kind {
                StorageKind::Lvmthin => "raw".to_string(),
                _ => p
                    .get("format")
                    .unwrap_or_else(|| file_format(&d.volume).to_string()),
            };
            let bytes = if cloudinit { 0 } else { d.size().unwrap_or(0) };
            drives.push(DrivePlan {
                key,
                source: d,
                storage: dest,
                format,
                bytes,
                cloudinit,
            });
        }
        if let Some(existing) = st.vms.get(&newid) {
            return Err(ApiError::die(if existing.node == node {
                format!("unable to create VM {newid}: config file already exists")
            } else {
                format!("VM {newid} already exists on node '{}'", existing.node)
            }));
        }
        for d in &drives {
            who.require(
                &format!("/storage/{}", d.storage.id),
                &["Datastore.AllocateSpace"],
            )?;
        }
        for (k, v) in &src.conf {
            if k.starts_with("net")
                && let Some(br) = vmconfig::parse_net(v)
                    .ok()
                    .and_then(|n| n.bridge().map(str::to_string))
            {
                who.require(&format!("/sdn/zones/localnetwork/{br}"), &["SDN.Use"])?;
            }
        }
        let src_name = src
            .conf
            .get("name")
            .cloned()
            .unwrap_or_else(|| vmid.to_string());
        let name = p
            .get("name")
            .unwrap_or_else(|| format!("Copy-of-VM-{src_name}"));
        let source_conf = src.conf.clone();
        let source_running = src.power != Power::Stopped;
        let source_has_pending = !src.pending.is_empty() || !src.pending_delete.is_empty();
        let draws = Draws::for_key(shared.seed, &shared.scenario, &name);
        st.clones_accepted += 1;
        let ordinal = st.clones_accepted;
        *st.clones_by_name.entry(name.clone()).or_default() += 1;
        let f = &shared.scenario.faults;
        let copy_s: f64 = if full {
            drives
                .iter()
                .map(|d| d.bytes as f64 / (d.storage.throughput_mb_s * 1e6))
                .sum()
        } else {
            draws.linked_clone_s
        };
        let alloc_s: f64 = drives
            .iter()
            .map(|d| {
                d.storage.alloc_s.min
                    + draws.alloc_s * (d.storage.alloc_s.max - d.storage.alloc_s.min)
            })
            .sum();
        let entry = st.vm_stats.entry(newid).or_default();
        *entry = super::stats::VmStats {
            vmid: newid,
            name: name.clone(),
            node: target.clone(),
            clone_index: Some(ordinal),
            clone_s: if full {
                draws.clone_overhead_s + copy_s + alloc_s
            } else {
                copy_s + alloc_s
            },
            start_s: draws.start_s,
            boot_s: draws.boot_s,
            agent_s: draws.agent_s,
            dhcp_s: draws.dhcp_s,
            agent_never: f.agent_never_up.contains(&ordinal),
            ip_never: f.ip_never.contains(&ordinal),
            ..Default::default()
        };
        let plan = ClonePlan {
            vmid,
            newid,
            node: node.to_string(),
            target,
            full,
            name,
            description: p.get("description"),
            drives,
            source_conf,
            source_running,
            source_has_pending,
            draws,
        };
        (plan, ordinal)
    };
    let (plan, ordinal) = plan;
    let upid = tasks::spawn(
        shared,
        node,
        "qmclone",
        &vmid.to_string(),
        who,
        move |ctx| run_clone(ctx, plan, ordinal),
    );
    Ok(ApiOk::data(json!(upid)))
}

async fn run_clone(ctx: TaskCtx, plan: ClonePlan, ordinal: usize) -> TaskResult {
    let sh = ctx.shared.clone();
    let src_lock = async {
        if plan.source_running {
            sh.locks
                .exclusive(&sh.clock, plan.vmid, CLONE_LOCK_TIMEOUT_S)
                .await
        } else {
            sh.locks
                .shared(&sh.clock, plan.vmid, CLONE_LOCK_TIMEOUT_S)
                .await
        }
    };
    let _src_guard: VmLockGuard = ctx
        .run(src_lock)
        .await?
        .map_err(|e| format!("clone failed: {e}"))?;
    let tgt_guard = ctx
        .run(
            sh.locks
                .exclusive(&sh.clock, plan.newid, CLONE_LOCK_TIMEOUT_S),
        )
        .await?
        .map_err(|e| format!("clone failed: {e}"))?;
    {
        let mut st = sh.state();
        if st.vms.get(&plan.vmid).is_none_or(|v| v.node != plan.node) {
            return Err(format!("clone failed: {}", no_config_for(&plan.node, plan.vmid)).into());
        }
        if st.vms.contains_key(&plan.newid) {
            return Err(format!(
                "clone failed: unable to create VM {}: config file already exists",
                plan.newid
            )
            .into());
        }
        let mut conf = Config::new();
        conf.insert("lock".into(), "clone".into());
        let now = sh.clock.now();
        st.vms.insert(
            plan.newid,
            Vm {
                vmid: plan.newid,
                node: plan.node.clone(),
                conf,
                pending: Config::new(),
                pending_delete: Vec::new(),
                created_at: now,
                power: Power::Stopped,
                guest: None,
                ordinal: Some(ordinal),
                draws: plan.draws,
                execs: Default::default(),
                next_exec_pid: 1000 + (plan.newid as i64 % 97) * 10,
            },
        );
        let f = &sh.scenario.faults;
        if let Some(s) = st.vm_stats.get_mut(&plan.newid) {
            s.clone_started_at = Some(now);
            // A second POST for the same newid (after a lost answer) may have been accepted
            // since and overwritten the entry; the clone that creates the VM is the truth.
            s.clone_index = Some(ordinal);
            s.agent_never = f.agent_never_up.contains(&ordinal);
            s.ip_never = f.ip_never.contains(&ordinal);
        }
    }
    // From here the `lock: clone` property guards the target.
    drop(tgt_guard);
    ctx.log(format!(
        "creating a clone of VM {} with ID {}",
        plan.vmid, plan.newid
    ));
    if plan.source_has_pending {
        ctx.warn("found pending changes, discarding for clone");
    }
    let mut created: Vec<(String, String)> = Vec::new();
    let result = copy_drives(&ctx, &plan, &mut created).await;
    let now = sh.clock.now();
    match result {
        Ok(new_drives) => {
            let mut st = sh.state();
            let mut conf = plan.source_conf.clone();
            conf.shift_remove("template");
            conf.shift_remove("lock");
            conf.retain(|k, _| !k.starts_with("unused"));
            for (k, v) in new_drives {
                conf.insert(k, v);
            }
            fresh_identity(&mut st, plan.newid, &mut conf);
            conf.insert("name".into(), plan.name.clone());
            if let Some(d) = &plan.description {
                conf.insert("description".into(), d.clone());
            }
            if let Some(vm) = st.vms.get_mut(&plan.newid) {
                vm.conf = conf;
                vm.node = plan.target.clone();
            }
            if let Some(s) = st.vm_stats.get_mut(&plan.newid) {
                s.clone_finished_at = Some(now);
                s.cloned_at = Some(now);
                s.node = plan.target.clone();
            }
            Ok(())
        }
        Err(e) => {
            let mut st = sh.state();
            for (volid, node) in &created {
                st.free_volume(volid, node);
            }
            st.vms.remove(&plan.newid);
            Err(match e {
                TaskError::Interrupted => "clone failed: interrupted by signal".to_string().into(),
                TaskError::Failed(m) => format!("clone failed: {m}").into(),
            })
        }
    }
}

fn interrupted(_: Interrupted) -> TaskError {
    TaskError::Interrupted
}

/// Allocates and copies every drive; returns the new drive strings.
async fn copy_drives(
    ctx: &TaskCtx,
    plan: &ClonePlan,
    created: &mut Vec<(String, String)>,
) -> Result<Vec<(String, String)>, TaskError> {
    let sh = &ctx.shared;
    let frozen = sh
        .state()
        .vm_stats
        .get(&plan.newid)
        .and_then(|v| v.clone_index)
        .is_some_and(|o| sh.scenario.faults.clone_freeze.contains(&o));
    if plan.full {
        ctx.sleep(plan.draws.clone_overhead_s).await?;
    }
    let mut out = Vec::new();
    for d in &plan.drives {
        let alloc_node = if d.storage.shared() {
            plan.node.clone()
        } else {
            plan.target.clone()
        };
        let io = sh.io.get(
            &storage_key(&d.storage.id, &alloc_node, d.storage.shared()),
            d.storage.throughput_mb_s,
        );
        let kind = if plan.full || d.cloudinit {
            "full"
        } else {
            "linked"
        };
        ctx.log(format!(
            "create {kind} clone of drive {} ({})",
            d.key, d.source.volume
        ));
        if sh.chance(sh.scenario.faults.p_storage_lock_timeout) {
            ctx.sleep(STORAGE_LOCK_TIMEOUT_S).await?;
            return Err(storage_lock_message(&d.storage.id, d.storage.shared()).into());
        }
        let hold = d.storage.alloc_s.min
            + plan.draws.alloc_s * (d.storage.alloc_s.max - d.storage.alloc_s.min);
        if io
            .allocate(&sh.clock, hold, &ctx.cancel)
            .await
            .map_err(interrupted)?
            .is_err()
        {
            return Err(storage_lock_message(&d.storage.id, d.storage.shared()).into());
        }
        let (volid, size) = {
            let mut st = sh.state();
            let vk = if d.cloudinit {
                VolumeKind::CloudInit
            } else {
                VolumeKind::Disk
            };
            let size = if d.cloudinit { 4 << 20 } else { d.bytes };
            let volid = st.alloc_volume(&d.storage, &alloc_node, plan.newid, vk, &d.format, size);
            (volid, size)
        };
        created.push((volid.clone(), alloc_node.clone()));
        let volname = volid
            .split_once(':')
            .map(|(_, n)| n)
            .unwrap_or("")
            .to_string();
        match d.storage.kind {
            StorageKind::Lvmthin => ctx.log(format!("  Logical volume \"{volname}\" created.")),
            _ => ctx.log(format!(
                "Formatting '/mnt/pve/{}/images/{volname}', fmt={} size={size}",
                d.storage.id, d.format
            )),
        }
        let mut drive = d.source.clone();
        drive.volume = if !plan.full && !d.cloudinit {
            // A linked clone references its base volume.
            let base = d
                .source
                .volume
                .split_once(':')
                .map(|(_, n)| n)
                .unwrap_or("");
            format!("{}:{base}/{volname}", d.storage.id)
        } else {
            volid.clone()
        };
        if plan.full && !d.cloudinit {
            let total = d.bytes as f64;
            let human_total = vmconfig::human_bytes(total);
            // PVE prints a line each time qemu-img's progress passes a whole percent.
            let mut last_percent = -1i64;
            let upid = ctx.upid.clone();
            let shared = sh.clone();
            let mut progress = move |done: f64| {
                let percent = if total > 0.0 {
                    (done / total * 100.0).floor() as i64
                } else {
                    100
                };
                if percent > last_percent {
                    last_percent = percent;
                    let pct = if total > 0.0 {
                        done / total * 100.0
                    } else {
                        100.0
                    };
                    let line = format!(
                        "transferred {} of {human_total} ({pct:.2}%)",
                        vmconfig::human_bytes(done)
                    );
                    let mut st = shared.state();
                    if let Some(t) = st.tasks.get_mut(&upid) {
                        t.log.push(line);
                    }
                }
            };
            // A frozen copy moves its first tenth, then nothing until the task is stopped.
            let copied = if frozen { total / 10.0 } else { total };
            io.transfer(&sh.clock, copied, &ctx.cancel, &mut progress)
                .await
                .map_err(interrupted)?;
            if frozen {
                ctx.run(std::future::pending::<()>()).await?;
            }
        }
        out.push((d.key.clone(), drive.render()));
    }
    if !plan.full {
        ctx.sleep(plan.draws.linked_clone_s).await?;
    }
    Ok(out)
}

/// Copies a config a config and give it a new identity.
fn fresh_identity(st: &mut Cluster, vmid: u32, conf: &mut Config) {
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
