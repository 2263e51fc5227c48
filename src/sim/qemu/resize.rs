//! `PUT …/resize`: a `resize` task under the config lock, `+` relative sizes, no shrinking,
//! LVM's or qemu-img's log lines.

use std::sync::Arc;

use serde_json::json;

use super::{root_only, vm_path};
use crate::sim::Shared;
use crate::sim::auth::Identity;
use crate::sim::envelope::{ApiError, ApiOk};
use crate::sim::locks::CONFIG_LOCK_TIMEOUT_S;
use crate::sim::params::{self, Kind, NODE, Params, VMID, opt, req, vmid_of};
use crate::sim::scenario::StorageKind;
use crate::sim::tasks::{self, TaskCtx, TaskError};
use crate::sim::vmconfig;

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
            let _guard = ctx.lock(vmid, false, CONFIG_LOCK_TIMEOUT_S).await?;
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
