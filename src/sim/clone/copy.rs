//! A clone's copy phase: each drive in sorted order allocated under the storage lock and copied
//! at the storage's shared throughput (allocated data only), logging as `clone_disk` does, with
//! the new VM's whole config written after each drive.

use crate::sim::cluster::VolumeKind;
use crate::sim::scenario::StorageKind;
use crate::sim::storage::{Interrupted, STORAGE_LOCK_TIMEOUT_S, storage_key, storage_lock_message};
use crate::sim::tasks::{TaskCtx, TaskError};
use crate::sim::vmconfig::{self, Config};

use super::{ClonePlan, DrivePlan};

fn interrupted(_: Interrupted) -> TaskError {
    TaskError::Interrupted
}

/// Allocates and copies every drive; returns the new drive strings.
pub(super) async fn copy_drives(
    ctx: &TaskCtx,
    plan: &ClonePlan,
    newconf: &mut Config,
    created: &mut Vec<(String, String)>,
) -> Result<(), TaskError> {
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
    let mut drives: Vec<&DrivePlan> = plan.drives.iter().collect();
    drives.sort_by(|a, b| a.key.cmp(&b.key));
    for d in drives {
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
            let allocated = if d.cloudinit { size } else { d.allocated };
            let volid = st.alloc_volume(
                &d.storage,
                &alloc_node,
                plan.newid,
                vk,
                &d.format,
                allocated,
            );
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
        // efidisk0 goes through `qemu-img dd`, which prints no progress.
        if plan.full && !d.cloudinit && d.key == "efidisk0" {
            io.transfer(&sh.clock, d.allocated as f64, &ctx.cancel, &mut |_| {})
                .await
                .map_err(interrupted)?;
        } else if plan.full && !d.cloudinit {
            let total = d.bytes as f64;
            // qemu-img reports progress over the virtual size, but only allocated data takes
            // time to copy.
            let scale = if d.allocated > 0 {
                total / d.allocated as f64
            } else {
                1.0
            };
            let human_total = vmconfig::human_bytes(total);
            // PVE prints a line each time qemu-img's progress passes a whole percent.
            let mut last_percent = -1i64;
            let upid = ctx.upid.clone();
            let shared = sh.clone();
            let mut progress = move |done: f64| {
                let done = (done * scale).min(total);
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
            let copied = if frozen {
                d.allocated as f64 / 10.0
            } else {
                d.allocated as f64
            };
            io.transfer(&sh.clock, copied, &ctx.cancel, &mut progress)
                .await
                .map_err(interrupted)?;
            if frozen {
                ctx.run(std::future::pending::<()>()).await?;
            }
        }
        newconf.insert(d.key.clone(), drive.render());
        // The whole new config (with `lock: clone`) is written after each drive.
        let mut st = sh.state();
        if let Some(vm) = st.vms.get_mut(&plan.newid) {
            vm.conf = newconf.clone();
        }
    }
    if !plan.full {
        ctx.sleep(plan.draws.linked_clone_s).await?;
    }
    Ok(())
}
