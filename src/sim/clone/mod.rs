//! `POST …/clone`: PVE's synchronous checks, then a `qmclone` task (id = source vmid) that takes
//! the source lock (shared when stopped) and the target's lock, and holds the target's for the
//! whole clone: the temporary `lock: clone` config, each drive allocated under the storage lock
//! and copied (allocated data only, at the storage's shared throughput), the full config written
//! after each drive in sorted order, the pool membership at the end. Only failures inside the
//! copy are undone and prefixed `clone failed: `.

mod copy;

use std::sync::Arc;

use serde_json::json;

use super::auth::Identity;
use super::cluster::{Cluster, Draws, Power, Vm, no_config_for};
use super::envelope::{ApiError, ApiOk};
use super::locks::CLONE_LOCK_TIMEOUT_S;
use super::params::{self, Kind, NODE, Params, STR, VMID, opt, req, vmid_of};
use super::scenario::{PveVersion, StorageKind, StorageSpec};
use super::tasks::{self, TaskCtx, TaskError, TaskResult};
use super::vmconfig::{self, Config, Drive};
use super::{NO_QUORUM, Shared};

/// One drive to clone, decided synchronously.
#[derive(Debug, Clone)]
pub(super) struct DrivePlan {
    pub(super) key: String,
    pub(super) source: Drive,
    pub(super) storage: StorageSpec,
    pub(super) format: String,
    /// Virtual size.
    pub(super) bytes: u64,
    /// Data a full copy moves (zero and unallocated clusters are skipped).
    pub(super) allocated: u64,
    pub(super) cloudinit: bool,
}

pub(super) struct ClonePlan {
    pub(super) vmid: u32,
    pub(super) newid: u32,
    pub(super) node: String,
    pub(super) target: String,
    pub(super) full: bool,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) drives: Vec<DrivePlan>,
    pub(super) source_conf: Config,
    pub(super) source_running: bool,
    /// Keys with pending changes on the source (discarded by the clone).
    pub(super) source_pending: Vec<String>,
    pub(super) pool: Option<String>,
    pub(super) draws: Draws,
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
    let pool = p.get("pool");
    if let Some(pool) = &pool
        && !shared.state().pools.contains_key(pool)
    {
        return Err(ApiError::forbidden(&format!(
            "pool '{pool}' does not exist"
        )));
    }
    if shared.quorum_lost(shared.clock.now()) {
        return Err(ApiError::die(NO_QUORUM));
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
                s.check_usable(&target).map_err(ApiError::die)?;
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
            src_storage.check_usable(node).map_err(ApiError::die)?;
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
            let allocated = st
                .volume_allocated(&d.volume, node)
                .map_or(bytes, |a| a.min(bytes));
            drives.push(DrivePlan {
                key,
                source: d,
                storage: dest,
                format,
                bytes,
                allocated,
                cloudinit,
            });
        }
        // Only the local config file is checked here; a VM with this id on another node makes
        // the task fail when it writes the temporary config.
        if st.vms.get(&newid).is_some_and(|v| v.node == node) {
            return Err(ApiError::die(exists_message(newid)));
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
        let source_pending: Vec<String> = src
            .pending
            .keys()
            .cloned()
            .chain(src.pending_delete.iter().cloned())
            .collect();
        let draws = Draws::for_key(shared.seed, &shared.scenario, &name);
        st.clones_accepted += 1;
        let ordinal = st.clones_accepted;
        *st.clones_by_name.entry(name.clone()).or_default() += 1;
        let f = &shared.scenario.faults;
        let copy_s: f64 = if full {
            drives
                .iter()
                .map(|d| d.allocated as f64 / (d.storage.throughput_mb_s * 1e6))
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
        // The physical storage the copy shares (the first copied drive's), for lower bounds.
        let copy_storage = drives
            .iter()
            .find(|d| d.bytes > 0)
            .map(|d| {
                let alloc_node = if d.storage.shared() { node } else { &target };
                super::storage::storage_key(&d.storage.id, alloc_node, d.storage.shared())
            })
            .unwrap_or_default();
        let entry = st.vm_stats.entry(newid).or_default();
        *entry = super::stats::VmStats {
            vmid: newid,
            name: name.clone(),
            node: target.clone(),
            clone_index: Some(ordinal),
            copy_s: if full { copy_s } else { 0.0 },
            copy_storage,
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
            source_pending,
            pool,
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

fn exists_message(newid: u32) -> String {
    format!("unable to create VM {newid}: config file already exists")
}

/// The cluster filesystem refuses a config for a vmid that exists on another node.
fn exists_elsewhere_message(node: &str, newid: u32) -> String {
    format!(
        "close (rename) atomic file '/etc/pve/nodes/{node}/qemu-server/{newid}.conf' failed: File exists"
    )
}

async fn run_clone(ctx: TaskCtx, plan: ClonePlan, ordinal: usize) -> TaskResult {
    let sh = ctx.shared.clone();
    // Lock timeouts and the re-run checks fail without the `clone failed: ` prefix.
    let _src_guard = ctx
        .lock(plan.vmid, !plan.source_running, CLONE_LOCK_TIMEOUT_S)
        .await?;
    // Held until the clone ends: config changes, start, resize or delete of the new VM wait for
    // it and time out.
    let _tgt_guard = ctx.lock(plan.newid, false, CLONE_LOCK_TIMEOUT_S).await?;
    {
        let st = sh.state();
        if st.vms.get(&plan.vmid).is_none_or(|v| v.node != plan.node) {
            return Err(no_config_for(&plan.node, plan.vmid).into());
        }
        match st.vms.get(&plan.newid) {
            Some(v) if v.node == plan.node => return Err(exists_message(plan.newid).into()),
            Some(_) => return Err(exists_elsewhere_message(&plan.node, plan.newid).into()),
            None => {}
        }
    }
    if sh.scenario.pve_version == PveVersion::V9_1 {
        ctx.log(format!(
            "creating a clone of VM {} with ID {}",
            plan.vmid, plan.newid
        ));
    }
    let mut newconf = {
        let mut st = sh.state();
        let mut conf = plan.source_conf.clone();
        conf.shift_remove("template");
        conf.retain(|k, _| !k.starts_with("unused") && !vmconfig::is_disk_key(k));
        fresh_identity(&mut st, plan.newid, &mut conf);
        conf.insert("name".into(), plan.name.clone());
        if let Some(d) = &plan.description {
            conf.insert("description".into(), d.clone());
        }
        conf.insert("lock".into(), "clone".into());
        // The temporary config: `# qmclone temporary file` and `lock: clone`.
        let mut temp = Config::new();
        temp.insert("lock".into(), "clone".into());
        let now = sh.clock.now();
        st.vms.insert(
            plan.newid,
            Vm {
                vmid: plan.newid,
                node: plan.node.clone(),
                conf: temp,
                pending: Config::new(),
                pending_delete: Vec::new(),
                created_at: now,
                power: Power::Stopped,
                guest: None,
                ordinal: Some(ordinal),
                draws: plan.draws,
                execs: Default::default(),
                next_exec_pid: 1000 + (plan.newid as i64 % 97) * 10,
                ha: sh.scenario.cluster.ha_managed.contains(&ordinal),
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
        conf
    };
    let mut created: Vec<(String, String)> = Vec::new();
    let result = copy::copy_drives(&ctx, &plan, &mut newconf, &mut created).await;
    let now = sh.clock.now();
    match result {
        Ok(()) => {
            newconf.shift_remove("lock");
            if !plan.source_pending.is_empty() {
                // Perl's `warn`: a plain log line that does not make the task end in WARNINGS.
                ctx.log(format!(
                    "found pending changes for '{}', discarding for clone",
                    plan.source_pending.join(",")
                ));
            }
            let mut st = sh.state();
            if let Some(vm) = st.vms.get_mut(&plan.newid) {
                vm.conf = newconf;
                vm.node = plan.target.clone();
            }
            if let Some(pool) = &plan.pool
                && let Some(members) = st.pools.get_mut(pool)
            {
                members.insert(plan.newid);
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
