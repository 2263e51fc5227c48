//! The migrate step of a VM whose template has local disks on another node: the clone was made
//! there (see `clone_node`), and the stopped VM moves to its own node, its disks onto its
//! `storage` there, before it is configured. It looks where the VM is before asking, so a
//! resume after a kill mid-migration waits for that migration instead of starting another.

use std::time::Duration;

use crate::pve::{ErrorClass, PveError, TaskState, Upid, VmConfig};

use super::super::event::{Level, Phase};
use super::super::journal::Entry;
use super::super::poll::{Attempt, Backoff, Wait};
use super::{Step, Stop, VmTask};

/// Asking where a VM being migrated is: every half second at first, every 5 s at most.
const LOOKUP: Backoff = Backoff::growing(Duration::from_millis(500), 1.5, Duration::from_secs(5));

impl VmTask {
    /// The node the clone is made on: where an adopted VM was found, the template's node for a
    /// VM migrated afterwards, else the VM's own.
    pub(super) fn clone_node(&self) -> String {
        match (&self.vm.adopted, self.vm.source.migrate) {
            (Some(found), _) => found.node.clone(),
            (None, true) => self.vm.source.node.clone(),
            (None, false) => self.vm.node.clone(),
        }
    }

    /// The new VM's config on `node`, where it was cloned; a clone migrated since (a resume)
    /// is read on its own node.
    pub(super) async fn cloned_config(&self, node: &str) -> Result<VmConfig, PveError> {
        let client = &self.shared.client;
        match client.vm_config(node, self.vm.vmid).await {
            Err(e) if e.class == ErrorClass::NotFound && self.vm.source.migrate => {
                client.vm_config(&self.vm.node, self.vm.vmid).await
            }
            other => other,
        }
    }

    /// Moves the clone to its node, unless it is there already.
    pub(super) async fn migrate_phase(&mut self) -> Step {
        if !self.vm.source.migrate {
            return Ok(());
        }
        self.gate().await?;
        let (from, to, vmid) = (
            self.vm.source.node.clone(),
            self.vm.node.clone(),
            self.vm.vmid,
        );
        if self.first_attempt
            && let Some(upid) = self.vm.migrate_upid.take()
        {
            self.await_earlier_migration(Upid(upid)).await?;
        }
        // A failed migration leaves the VM where it was: worth another try or two (a lock
        // timeout, a second request racing an earlier run's).
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            if self.on_target(&from, &to).await? {
                if let Some(found) = self.vm.adopted.as_mut() {
                    found.node = to.clone();
                }
                return Ok(());
            }
            if self.phase != Phase::Cloning {
                self.enter(Phase::Cloning);
            }
            let storage = self.vm.spec.storage.clone();
            let upid = match self.shared.client.migrate(&from, vmid, &to, &storage).await {
                Ok(upid) => upid,
                // Whether it was taken or not, where the VM is (and its lock) tells next round.
                Err(e)
                    if attempt < ATTEMPTS
                        && (e.outcome_unknown
                            || e.class.is_transient()
                            || e.class == ErrorClass::Locked) =>
                {
                    self.log(Level::Warning, format!("migrate: {e}; looking again"));
                    self.sleep(Duration::from_secs(2)).await?;
                    continue;
                }
                Err(e) => return Err(Stop::Failed(format!("migrate to {to}: {e}"))),
            };
            self.journal(Entry::MigrateAccepted {
                name: self.vm.name.clone(),
                vmid,
                target: to.clone(),
                upid: upid.0.clone(),
            })
            .await?;
            self.log(
                Level::Info,
                format!(
                    "migrating {vmid} from {from} (where the template's disks are) to {to}, disks onto {storage} ({})",
                    upid.0
                ),
            );
            let state = self
                .wait_task(&upid, self.shared.checks.clone_timeout, Wait::MigrateTask)
                .await?;
            match state {
                TaskState::Ok | TaskState::Warnings(_) => {
                    self.log(Level::Info, format!("migrated to {to}"));
                }
                TaskState::Failed(text) => {
                    self.task_log_tail(&upid).await;
                    if attempt == ATTEMPTS {
                        return Err(Stop::Failed(format!("migration to {to} failed: {text}")));
                    }
                    self.log(
                        Level::Warning,
                        format!("migration to {to} failed ({text}); trying again"),
                    );
                }
                TaskState::Running => unreachable!("wait_task returns stopped tasks only"),
            }
        }
        if self.on_target(&from, &to).await? {
            return Ok(());
        }
        Err(Stop::Failed(format!(
            "VM {vmid} is still on {from}, not on {to}"
        )))
    }

    /// A migration an earlier run started (the journal has its UPID): wait for it to end.
    async fn await_earlier_migration(&mut self, upid: Upid) -> Step {
        let Ok(status) = self.shared.client.task_status(&upid).await else {
            return Ok(());
        };
        if status.state != TaskState::Running {
            return Ok(());
        }
        self.enter(Phase::Cloning);
        self.log(
            Level::Info,
            format!(
                "waiting for the migration an earlier run started ({})",
                upid.0
            ),
        );
        let state = self
            .wait_task(&upid, self.shared.checks.clone_timeout, Wait::MigrateTask)
            .await?;
        if let TaskState::Failed(text) = state {
            self.log(
                Level::Warning,
                format!("the earlier migration failed: {text}"),
            );
        }
        Ok(())
    }

    /// Whether the VM is on `to` (true) or, unlocked, still on `from` (false). A config holds
    /// one node's copy at a time; a lock (`migrate`, during a migration, on either side) is
    /// waited for, within `clone_timeout` when one is set.
    async fn on_target(&mut self, from: &str, to: &str) -> Step<bool> {
        let vmid = self.vm.vmid;
        let timeout = self.shared.checks.clone_timeout;
        let shared = self.shared.clone();
        let mut poll = Self::poller(&shared, shared.clock.deadline_within(timeout), LOOKUP);
        loop {
            poll.due().await?;
            let client = &shared.client;
            let attempt = match client.vm_config(to, vmid).await {
                Ok(cfg) => match cfg.lock() {
                    None => Attempt::Done(true),
                    Some(lock) => Attempt::Pending(format!("locked ({lock}) on {to}")),
                },
                Err(e) if e.class == ErrorClass::NotFound => {
                    match client.vm_config(from, vmid).await {
                        Ok(cfg) => match cfg.lock() {
                            None => Attempt::Done(false),
                            Some(lock) => Attempt::Pending(format!("locked ({lock}) on {from}")),
                        },
                        Err(e) if e.class == ErrorClass::NotFound => {
                            return Err(Stop::Failed(format!(
                                "VM {vmid} is neither on {from} nor on {to}"
                            )));
                        }
                        Err(e) if e.class.is_transient() => {
                            Attempt::Pending(format!("unreachable ({e})"))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) if e.class.is_transient() => Attempt::Pending(format!("unreachable ({e})")),
                Err(e) => return Err(e.into()),
            };
            let timed_out = |waiting_for| {
                Err(Stop::Failed(format!(
                    "VM {vmid} still {waiting_for} after {}",
                    timeout.map_or_else(|| "ever".into(), crate::config::format_duration)
                )))
            };
            if let Some(there) = poll.answer(attempt, timed_out)? {
                return Ok(there);
            }
        }
    }
}
