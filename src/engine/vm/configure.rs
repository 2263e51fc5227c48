//! The configure phase: the VM's settings (CPU, memory, network, firmware, cloud-init user,
//! tags) and its boot disk's size, set while it is still stopped.

use std::time::Duration;

use crate::pve::{
    ConfigUpdate, DiskSize, ErrorClass, IpConfig, NetDevice, NewEfiDisk, TaskState, VmConfig,
};

use super::super::event::{Level, Phase};
use super::super::plan::{self, PlannedVm};
use super::super::poll::Wait;
use super::{Step, Stop, VmTask};

impl VmTask {
    pub(super) async fn configure_phase(&mut self, config: Option<VmConfig>) -> Step {
        self.gate().await?;
        self.enter(Phase::Configuring);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let config = match config {
            Some(c) => c,
            None => self.shared.client.vm_config(&node, vmid).await?,
        };
        self.seen.mac = Some(config.net0_mac());
        let running = self
            .shared
            .client
            .vm_status(&node, vmid)
            .await?
            .is_running();
        self.seen.stopped = !running;
        if running {
            // Configured before it was first started; changing a running VM would only leave
            // pending changes behind.
            self.log(
                Level::Info,
                "the VM runs already: keeping its configuration",
            );
            return Ok(());
        }
        let update = config_update(&self.vm, &config);
        // The clone's lock is gone by now; a config lock held this long is a stall.
        let deadline = self
            .shared
            .clock
            .deadline(self.shared.checks.clone_stall_timeout);
        loop {
            match self.shared.client.set_config(&node, vmid, &update).await {
                Ok(()) => break,
                Err(e)
                    if matches!(e.class, ErrorClass::Locked | ErrorClass::Transient)
                        && !self.shared.clock.left(deadline).is_zero() =>
                {
                    self.log(Level::Warning, format!("configure: {e}; retrying"));
                    self.sleep(Duration::from_secs(2)).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.grow_disk(&config).await
    }

    /// Grows the boot disk to the wanted size (never shrinks: PVE refuses and so do we).
    async fn grow_disk(&mut self, config: &VmConfig) -> Step {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let disk = self.vm.spec.disk.clone();
        let wanted = DiskSize(self.vm.spec.disk_size);
        match config.disk_size(&disk) {
            Some(current) if current > wanted => self.log(
                Level::Warning,
                format!("{disk} is {current} already, larger than disk_size {wanted}; left as is"),
            ),
            Some(current) if current == wanted => {}
            _ => {
                let size = wanted.to_string();
                if let Some(upid) = self.shared.client.resize(&node, vmid, &disk, &size).await? {
                    match self
                        .wait_task(
                            &upid,
                            Some(self.shared.checks.clone_stall_timeout),
                            Wait::ResizeTask,
                        )
                        .await?
                    {
                        TaskState::Ok | TaskState::Warnings(_) => {}
                        TaskState::Failed(text) => {
                            return Err(Stop::Failed(format!("resize {disk} to {size}: {text}")));
                        }
                        TaskState::Running => unreachable!("wait_task returns stopped tasks only"),
                    }
                }
                self.log(Level::Info, format!("{disk} resized to {size}"));
            }
        }
        Ok(())
    }
}

/// The config keys a VM gets after its clone (the settings of the original wait_for_vm.sh flow
/// and the per-VM overrides).
pub(super) fn config_update(vm: &PlannedVm, current: &VmConfig) -> ConfigUpdate {
    let spec = &vm.spec;
    // The model and the MAC the clone was given stay (setting net0 without a MAC would make PVE
    // generate yet another one); only the bridge changes.
    let net0 = NetDevice {
        bridge: Some(spec.bridge.clone()),
        ..current.net0().unwrap_or_else(|| NetDevice::new("virtio"))
    };
    let mut set = vec![
        ("cores".to_string(), spec.cores.to_string()),
        ("sockets".to_string(), spec.sockets.to_string()),
        ("memory".to_string(), spec.memory.to_string()),
        ("net0".to_string(), net0.to_string()),
        ("ipconfig0".to_string(), IpConfig::Dhcp.to_string()),
        ("agent".to_string(), "1".to_string()),
        ("bios".to_string(), "ovmf".to_string()),
        ("machine".to_string(), "q35".to_string()),
        (
            "tags".to_string(),
            current.tags().with(plan::TAG).to_string(),
        ),
    ];
    if current.get("efidisk0").is_none() {
        let efidisk = NewEfiDisk {
            storage: spec.storage.clone(),
            pre_enrolled_keys: spec.secure_boot,
        };
        set.push(("efidisk0".to_string(), efidisk.to_string()));
    }
    if let Some(user) = &spec.ciuser {
        set.push(("ciuser".to_string(), user.clone()));
    }
    if let Some(keys) = &spec.sshkeys {
        set.push(("sshkeys".to_string(), keys.clone()));
    }
    ConfigUpdate {
        set,
        delete: Vec::new(),
        digest: current.get("digest").map(str::to_string),
    }
}
