//! The configure phase: the VM's settings (CPU, memory, network, firmware, cloud-init user,
//! tags) and its boot disk's size, set while it is still stopped.

use std::time::Duration;

use crate::config::{Ip6Addressing, Nic};
use crate::pve::{
    ConfigUpdate, DiskSize, ErrorClass, Ip6Config, IpConfig, NetDevice, NewEfiDisk, TaskState,
    VmConfig,
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
        // A clone this attempt made is stopped; an adopted VM may run (ask).
        let running = !self.seen.stopped
            && self
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
        let new_disks: Vec<String> = super::disks::new_disk_keys(&self.vm, &config)
            .into_iter()
            .map(|(slot, volume)| format!("{slot} ({volume})"))
            .collect();
        // The clone's lock is gone by now; a config lock held this long is a stall.
        let deadline = self
            .shared
            .clock
            .deadline(self.shared.checks.clone_stall_timeout);
        loop {
            let e = match self.shared.client.set_config(&node, vmid, &update).await {
                Ok(()) => break,
                Err(e) => e,
            };
            if self.shared.clock.left(deadline).is_zero() {
                return Err(e.into());
            }
            if e.outcome_unknown || e.class == ErrorClass::DigestMismatch {
                // Its answer was lost (or another write got in first, such as this very update
                // run late): this rollout is the VM's only writer, so a config that changed since
                // it was read has our update.
                let now = self.shared.client.vm_config(&node, vmid).await?;
                if update.digest.is_some() && now.get("digest") != update.digest.as_deref() {
                    self.log(
                        Level::Info,
                        format!("configure: {e}; the config changed since: taken as applied"),
                    );
                    break;
                }
                self.log(
                    Level::Warning,
                    format!("configure: {e}; not applied, sending it again"),
                );
            } else if e.class == ErrorClass::Locked || e.config_lock_timeout() == Some(vmid) {
                // A clone of this VM still holds its lock: it is still being cloned.
                self.wait_unlocked(&e.to_string()).await?;
                continue;
            } else if e.class.is_transient() {
                self.log(Level::Warning, format!("configure: {e}; retrying"));
            } else {
                return Err(e.into());
            }
            self.sleep(Duration::from_secs(2)).await?;
        }
        if !new_disks.is_empty() {
            self.log(
                Level::Info,
                format!("extra disks allocated: {}", new_disks.join(", ")),
            );
        }
        self.grow_disk(&config).await
    }

    /// Waits until the VM's config has no `lock` (a clone holds the new VM's lock for as long
    /// as it copies, and its config says `lock: clone`), within `clone_timeout` when one is set
    /// (a copy may take hours; its own task's stall is judged where the task is followed).
    pub(super) async fn wait_unlocked(&mut self, because: &str) -> Step {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        self.log(
            Level::Info,
            format!("VM {vmid} is still being cloned ({because}); waiting for its lock"),
        );
        let timeout = self.shared.checks.clone_timeout;
        let deadline = self.shared.clock.deadline_within(timeout);
        let mut interval = Duration::from_millis(500);
        loop {
            match self.shared.client.vm_config(&node, vmid).await {
                Ok(cfg) if cfg.lock().is_none() => return Ok(()),
                Ok(_) => {}
                Err(e) if e.class.is_transient() => {}
                Err(e) => return Err(e.into()),
            }
            if self.shared.clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "VM {vmid} still locked after {}",
                    timeout.map_or_else(|| "ever".into(), crate::config::format_duration)
                )));
            }
            self.sleep(interval).await?;
            interval = interval.mul_f64(1.5).min(Duration::from_secs(5));
        }
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
                let resized = match self.shared.client.resize(&node, vmid, &disk, &size).await {
                    Ok(upid) => upid,
                    Err(e) if e.outcome_unknown => {
                        // The resize may run late: the size is absolute, so asking again is safe
                        // once the config shows it has not happened.
                        self.log(Level::Warning, format!("resize: {e}; checking the disk"));
                        self.sleep(Duration::from_secs(5)).await?;
                        let now = self.shared.client.vm_config(&node, vmid).await?;
                        if now.disk_size(&disk) == Some(wanted) {
                            None
                        } else {
                            self.shared.client.resize(&node, vmid, &disk, &size).await?
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Some(upid) = resized {
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

/// NIC `index`'s cloud-init address setup (`ipconfigN`): the plan has turned a pool into its
/// static address.
fn ip_config(vm: &PlannedVm, index: usize) -> String {
    let nic = &vm.spec.networks[index];
    let v4 = match vm.nic_address(index) {
        Some(host) => IpConfig::Static {
            address: host.ip,
            prefix: host.prefix,
            gateway: nic.gateway,
        },
        None => IpConfig::Dhcp,
    };
    let v6 = nic.ip6.map(|ip6| match ip6 {
        Ip6Addressing::Auto => Ip6Config::Auto,
        Ip6Addressing::Dhcp => Ip6Config::Dhcp,
        Ip6Addressing::Static(host) => Ip6Config::Static {
            address: host.ip,
            prefix: host.prefix,
            gateway: nic.gateway6,
        },
    });
    match v6 {
        Some(v6) => format!("{v4},{v6}"),
        None => v4.to_string(),
    }
}

/// `netN` for `nic`: the device the clone has (its model and MAC stay: setting a NIC without a
/// MAC makes PVE generate yet another one), or a new one PVE gives a MAC; the bridge and the
/// options deploy.toml sets replace the template's.
fn net_device(nic: &Nic, current: Option<NetDevice>) -> NetDevice {
    let mut device = current.unwrap_or_else(|| NetDevice::new("virtio"));
    if let Some(model) = &nic.model {
        device.model = model.clone();
    }
    device.bridge = Some(nic.bridge.clone());
    if let Some(tag) = nic.vlan {
        device.set_option("tag", &tag.to_string());
    }
    if let Some(mtu) = nic.mtu {
        device.set_option("mtu", &mtu.to_string());
    }
    if let Some(on) = nic.firewall {
        device.set_option("firewall", if on { "1" } else { "0" });
    }
    device
}

/// The config keys a VM gets after its clone (the settings of the original wait_for_vm.sh flow
/// and the per-VM overrides).
pub(super) fn config_update(vm: &PlannedVm, current: &VmConfig) -> ConfigUpdate {
    let spec = &vm.spec;
    let mut set = vec![
        ("cores".to_string(), spec.cores.to_string()),
        ("sockets".to_string(), spec.sockets.to_string()),
        ("memory".to_string(), spec.memory.to_string()),
        ("agent".to_string(), "1".to_string()),
        ("bios".to_string(), "ovmf".to_string()),
        ("machine".to_string(), "q35".to_string()),
        (
            "tags".to_string(),
            spec.guest
                .tags
                .iter()
                .fold(current.tags(), |tags, tag| tags.with(tag))
                .with(plan::TAG)
                .to_string(),
        ),
    ];
    for (i, nic) in spec.networks.iter().enumerate() {
        let device = net_device(nic, current.net(i));
        set.push((format!("net{i}"), device.to_string()));
        set.push((format!("ipconfig{i}"), ip_config(vm, i)));
    }
    let guest = &spec.guest;
    let flag = |on: bool| if on { "1" } else { "0" }.to_string();
    if let Some(upgrade) = guest.ciupgrade {
        set.push(("ciupgrade".to_string(), flag(upgrade)));
    }
    if let Some(onboot) = guest.onboot {
        set.push(("onboot".to_string(), flag(onboot)));
    }
    if let Some(startup) = guest.startup {
        set.push(("startup".to_string(), startup.to_string()));
    }
    if let Some(cpu) = &guest.cpu {
        set.push(("cpu".to_string(), cpu.clone()));
    }
    if let Some(balloon) = guest.balloon {
        set.push(("balloon".to_string(), balloon.to_string()));
    }
    if current.get("efidisk0").is_none() {
        let efidisk = NewEfiDisk {
            storage: spec.storage.clone(),
            pre_enrolled_keys: spec.secure_boot,
        };
        set.push(("efidisk0".to_string(), efidisk.to_string()));
    }
    set.extend(super::disks::new_disk_keys(vm, current));
    if let Some(user) = &spec.ciuser {
        set.push(("ciuser".to_string(), user.clone()));
    }
    if let Some(keys) = &spec.sshkeys {
        set.push(("sshkeys".to_string(), keys.clone()));
    }
    if !spec.nameservers.is_empty() {
        // PVE's `nameserver` is one space-separated list.
        let list: Vec<String> = spec.nameservers.iter().map(|ip| ip.to_string()).collect();
        set.push(("nameserver".to_string(), list.join(" ")));
    }
    if let Some(custom) = &spec.cicustom {
        set.push(("cicustom".to_string(), custom.to_string()));
    }
    if let Some(domain) = &spec.searchdomain {
        set.push(("searchdomain".to_string(), domain.clone()));
    }
    ConfigUpdate {
        set,
        delete: Vec::new(),
        digest: current.get("digest").map(str::to_string),
    }
}
