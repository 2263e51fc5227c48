//! The provisioning phase: the `on_verified` hook (see `engine::provision`), while the VM shows
//! `provisioning`.

use super::super::event::Phase;
use super::super::provision::{HookVm, Provisioned};
use super::{Step, Stop, VmTask};

impl VmTask {
    /// `on_verified`, when configured.
    pub(super) async fn provision_phase(&mut self) -> Step {
        let shared = self.shared.clone();
        let Some(provisioner) = &shared.provisioner else {
            return Ok(());
        };
        self.gate().await?;
        self.enter(Phase::Provisioning);
        // Done with the guest agent: the next VM's checks need not wait for the hook.
        shared.agent_lane.pass(self.vm.index);
        let vm = HookVm {
            index: self.vm.index,
            name: &self.vm.name,
            vmid: self.vm.vmid,
            node: &self.vm.node,
            ip: self.ip.as_deref(),
        };
        match provisioner
            .run(vm, &shared.abort, &shared.journal, &shared.events)
            .await
        {
            Provisioned::Done => Ok(()),
            Provisioned::Failed(reason) => Err(Stop::HookFailed(reason)),
            Provisioned::Aborted => Err(Stop::Aborted),
            Provisioned::Journal(e) => Err(Stop::Failed(format!("cannot write the journal: {e}"))),
        }
    }
}
