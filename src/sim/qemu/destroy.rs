//! `DELETE /nodes/{node}/qemu/{vmid}`: the synchronous protection and running checks, then a
//! `qmdestroy` task that frees the volumes (refusing a base still used by linked clones).

use std::sync::Arc;

use serde_json::json;

use super::{root_only, vm_path};
use crate::sim::Shared;
use crate::sim::auth::Identity;
use crate::sim::cluster::{Cluster, Power};
use crate::sim::envelope::{ApiError, ApiOk};
use crate::sim::locks::CONFIG_LOCK_TIMEOUT_S;
use crate::sim::params::{self, Kind, NODE, Params, VMID, opt, vmid_of};
use crate::sim::scenario::StorageKind;
use crate::sim::tasks::{self, TaskCtx, TaskError};
use crate::sim::vmconfig;

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
        if vm.ha && !p.flag("purge") {
            return Err(ApiError::die(format!(
                "unable to remove VM {vmid} - used in HA resources and purge parameter not set."
            )));
        }
        if vm.power != Power::Stopped {
            return Err(ApiError::die(format!(
                "VM {vmid} is running - destroy failed"
            )));
        }
    }
    let purge = p.flag("purge");
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
            let _guard = ctx.lock(vmid, false, CONFIG_LOCK_TIMEOUT_S).await?;
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
            // The config says `lock: destroyed` while the disks go.
            if let Ok(vm) = sh.state().vm_on_mut(&node_s, vmid) {
                vm.conf.insert("lock".into(), "destroyed".into());
            }
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
                        // Unlinking a file on a directory or NFS storage prints nothing.
                        if let Some(StorageKind::Lvmthin) = kind {
                            ctx_log_locked(
                                &mut st,
                                &ctx.upid,
                                format!("  Logical volume \"{name}\" successfully removed."),
                            );
                        }
                    }
                }
                st.vms.remove(&vmid);
                if purge {
                    ctx_log_locked(
                        &mut st,
                        &ctx.upid,
                        format!("purging VM {vmid} from related configurations.."),
                    );
                    for members in st.pools.values_mut() {
                        members.remove(&vmid);
                    }
                }
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
