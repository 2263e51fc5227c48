//! Extra disks (`disks`): the config keys that allocate them, and the check after boot that
//! the VM's config holds each one, on its storage, at its size.

use crate::pve::{DiskSize, NewDisk, VmConfig};

use super::super::event::Level;
use super::super::plan::PlannedVm;
use super::{Step, Stop, VmTask};

/// `(slot, <storage>:<GiB>[,format=])` for every extra disk whose slot the config leaves
/// free. A slot already filled is this rollout's own disk from an earlier run (the plan
/// refused templates using the slot): asking again would replace it with an empty volume.
pub(super) fn new_disk_keys(vm: &PlannedVm, current: &VmConfig) -> Vec<(String, String)> {
    vm.spec
        .disks
        .iter()
        .filter(|d| current.get(&d.slot).is_none())
        .map(|d| {
            let disk = NewDisk {
                storage: d.storage.clone(),
                size: d.size,
                format: d.format.clone(),
            };
            (d.slot.clone(), disk.to_string())
        })
        .collect()
}

impl VmTask {
    /// Every extra disk is in the VM's config on its storage, at least its size.
    pub(super) async fn verify_disks(&mut self) -> Step {
        if self.vm.spec.disks.is_empty() {
            return Ok(());
        }
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let config = self.shared.client.vm_config(&node, vmid).await?;
        let mut found = Vec::new();
        for disk in &self.vm.spec.disks {
            let wanted = DiskSize(disk.size);
            let Some(line) = config.get(&disk.slot) else {
                return Err(Stop::Failed(format!(
                    "extra disk {} is not in the VM's config",
                    disk.slot
                )));
            };
            let volume = line.split(',').next().unwrap_or_default();
            let storage = volume.split_once(':').map(|(sid, _)| sid);
            if storage != Some(disk.storage.as_str()) {
                return Err(Stop::Failed(format!(
                    "extra disk {} is {volume}, not a volume on storage {}",
                    disk.slot, disk.storage
                )));
            }
            match config.disk_size(&disk.slot) {
                Some(size) if size >= wanted => found.push(format!("{} {size}", disk.slot)),
                other => {
                    return Err(Stop::Failed(format!(
                        "extra disk {} is {}, not {wanted}",
                        disk.slot,
                        other.map_or_else(|| "of unknown size".to_string(), |s| s.to_string())
                    )));
                }
            }
        }
        self.log(
            Level::Info,
            format!("extra disks in the config: {}", found.join(", ")),
        );
        Ok(())
    }
}
