//! The clone phase: clone the template (or adopt the VM an earlier run or a lost answer left),
//! wait until the new VM is unlocked, and judge it ours before anything else touches it.

use std::time::Duration;

use crate::config::{CloneMode, format_duration};
use crate::pve::{CloneRequest, ErrorClass, TaskState, Upid, VmConfig};

use super::super::clone_slots::CloneSlot;
use super::super::event::{Level, Phase};
use super::super::journal::{Entry, Step as Journaled};
use super::super::plan;
use super::super::poll::{Attempt, Backoff, Wait};
use super::{Step, Stop, VmTask};

/// Asking about a VM being cloned: every half second at first, every 5 s at most.
const CLONE_LOOKUP: Backoff =
    Backoff::growing(Duration::from_millis(500), 1.5, Duration::from_secs(5));

impl VmTask {
    /// Clones (or adopts) the VM and waits until its config is unlocked; returns that config.
    pub(super) async fn clone_phase(&mut self) -> Step<VmConfig> {
        if self.first_attempt
            && let Some(upid) = self.vm.clone_upid.take()
        {
            self.await_earlier_clone(Upid(upid)).await?;
        }
        let exists = match &self.vm.adopted {
            Some(_) => true,
            // An earlier run asked for this clone but may have died before the answer: give a
            // request still on its way a moment to show, so the clone is not asked for twice.
            None if self.first_attempt && self.vm.journaled == Some(Journaled::CloneRequested) => {
                self.lookup_ours_within(Duration::from_secs(5)).await?
            }
            // A retry after a failed clone, or a resume: the VM may or may not be there.
            None if !self.first_attempt || self.vm.journaled.is_some() => {
                self.lookup_ours().await?
            }
            None => false,
        };
        if !exists {
            if self.first_attempt && !self.staggered {
                tokio::select! {
                    _ = self.shared.abort.cancelled() => return Err(Stop::Aborted),
                    _ = self.shared.stagger.wait_turn(self.vm.index, &self.shared.clock) => {}
                }
                self.staggered = true;
            }
            self.gate().await?;
            // A linked clone copies nothing: no slot on the storage.
            let slot = match self.vm.spec.clone {
                CloneMode::Linked => None,
                _ => Some(self.clone_slot().await?),
            };
            self.enter(Phase::Cloning);
            self.clone_with_retries().await?;
            // The clone task ended: the next clone onto this storage may start.
            drop(slot);
            // PVE makes a clone stopped, and nothing starts it before boot does.
            self.seen.stopped = true;
        } else {
            if self.phase != Phase::Cloning {
                self.enter(Phase::Cloning);
            }
            self.log(
                Level::Info,
                format!("VM {} exists and is ours: adopting it", self.vm.vmid),
            );
        }
        match self.await_unlocked().await? {
            Some(cfg) => Ok(cfg),
            None => {
                // The clone task failed after all (PVE removes the half-made VM): clone anew.
                self.log(
                    Level::Warning,
                    "the VM vanished while its clone ran; cloning it again",
                );
                self.vm.adopted = None;
                self.reclones += 1;
                Box::pin(self.clone_phase()).await
            }
        }
    }

    /// A place for this clone on its target storage (`max_clones_per_storage`), taken before
    /// the POST and held until the clone task ends.
    async fn clone_slot(&mut self) -> Step<CloneSlot> {
        let slots = self.shared.clone_slots.clone();
        let storage = self.vm.clone_storage.clone();
        let take = slots.take(self.vm.index, &storage);
        tokio::pin!(take);
        tokio::select! {
            biased;
            slot = &mut take => return Ok(slot),
            () = std::future::ready(()) => {}
        }
        self.log(
            Level::Info,
            format!("waiting for a clone slot on storage {storage} (max_clones_per_storage)"),
        );
        tokio::select! {
            _ = self.shared.abort.cancelled() => Err(Stop::Aborted),
            slot = take => Ok(slot),
        }
    }

    /// Waits until the clone's `lock: clone` is gone (bpg does the same) and judges the VM
    /// ours; `None` when the VM vanished (and may be cloned again).
    async fn await_unlocked(&mut self) -> Step<Option<VmConfig>> {
        let (node, vmid) = (self.clone_node(), self.vm.vmid);
        // The clone task has ended (or an earlier run's was judged over): a lock that outlives
        // it this long is stuck.
        let timeout = self.shared.checks.clone_stall_timeout;
        let shared = self.shared.clone();
        let mut poll = Self::poller(&shared, shared.clock.deadline(timeout), CLONE_LOOKUP);
        // Each `Pending` says what kept us waiting: the lock, or a node that did not answer.
        let found = loop {
            poll.due().await?;
            let attempt = match self.cloned_config(&node).await {
                // Our migration's lock (a resume): the clone ended before it began.
                Ok(cfg)
                    if cfg.lock().is_none()
                        || (self.vm.source.migrate && cfg.lock() == Some("migrate")) =>
                {
                    Attempt::Done(Some(cfg))
                }
                Ok(cfg) => Attempt::Pending(format!("locked ({})", cfg.lock().unwrap_or_default())),
                Err(e) if e.class == ErrorClass::NotFound && self.reclones < 2 => {
                    Attempt::Done(None)
                }
                Err(e) if e.class == ErrorClass::Transient => {
                    Attempt::Pending(format!("unreachable ({e})"))
                }
                Err(e) => return Err(e.into()),
            };
            let timed_out = |waiting_for| {
                Err(Stop::Failed(format!(
                    "VM {vmid} still {waiting_for} after {}",
                    format_duration(timeout)
                )))
            };
            if let Some(found) = poll.answer(attempt, timed_out)? {
                break found;
            }
        };
        let Some(cfg) = found else {
            return Ok(None);
        };
        // An adopted VM that was mid-clone could not be judged before: judge it now.
        if !plan::is_ours(&cfg, &self.shared.rollout_id) {
            return Err(self.not_ours());
        }
        self.journal(Entry::Cloned {
            name: self.vm.name.clone(),
            vmid,
        })
        .await?;
        self.seen.mac = Some(cfg.net0_mac());
        Ok(Some(cfg))
    }

    /// Whether the VM exists on its node and carries this rollout's marker. A clone still in
    /// flight (its answer lost, or a retry right after) is waited for: until its task ends the
    /// new VM is locked, lacks the marker and, for a cross-node clone, sits on the source node,
    /// so judging it earlier would call our own clone someone else's.
    ///
    /// Such a clone's task is not ours to follow (its answer was lost), so no progress tells a
    /// stall: only `clone_timeout`, when set, ends the wait; an operator sees it and can skip.
    async fn lookup_ours(&mut self) -> Step<bool> {
        let (node, vmid) = (self.clone_node(), self.vm.vmid);
        let timeout = self.shared.checks.clone_timeout;
        let shared = self.shared.clone();
        let mut poll = Self::poller(&shared, shared.clock.deadline_within(timeout), CLONE_LOOKUP);
        let mut waiting_for = "being cloned".to_string();
        loop {
            poll.due().await?;
            // Each arm that does not return means: still cloning (or briefly unreachable).
            match shared.client.vm_config(&node, vmid).await {
                Ok(cfg) if plan::is_ours(&cfg, &shared.rollout_id) => return Ok(true),
                Ok(cfg) if cfg.is_being_cloned() => waiting_for = "being cloned".into(),
                Ok(_) => return Err(self.not_ours()),
                Err(e) if e.class == ErrorClass::NotFound => {
                    match shared.client.find_vm(vmid).await {
                        Ok(None) => return Ok(false),
                        Ok(Some(found)) if found.is_being_cloned() => {
                            waiting_for = "being cloned".into();
                        }
                        // Its clone ended between the two questions: ask the node again.
                        Ok(Some(found)) if found.node.as_deref() == Some(node.as_str()) => {}
                        Ok(Some(found)) => {
                            return Err(Stop::Failed(format!(
                                "VM {vmid} exists on {}, not on {node}, and is not being cloned; not touching it",
                                found.node.as_deref().unwrap_or("another node")
                            )));
                        }
                        Err(e) if e.class == ErrorClass::Transient => {
                            waiting_for = format!("unreachable ({e})");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) if e.class == ErrorClass::Transient => {
                    waiting_for = format!("unreachable ({e})");
                }
                Err(e) => return Err(e.into()),
            }
            let timed_out = |waiting_for| {
                Err(Stop::Failed(format!(
                    "VM {vmid} still {waiting_for} after {}",
                    timeout.map_or_else(|| "ever".into(), format_duration)
                )))
            };
            let attempt: Attempt<bool> = Attempt::Pending(waiting_for.clone());
            if let Some(ours) = poll.answer(attempt, timed_out)? {
                return Ok(ours);
            }
        }
    }

    /// [`Self::lookup_ours`], asked again every half second for `grace` (rollout time) while
    /// the VM is absent.
    async fn lookup_ours_within(&mut self, grace: Duration) -> Step<bool> {
        let shared = self.shared.clone();
        let every = Backoff::fixed(Duration::from_millis(500));
        let mut poll = Self::poller(&shared, shared.clock.deadline(grace), every);
        loop {
            poll.due().await?;
            let attempt = match self.lookup_ours().await? {
                true => Attempt::Done(true),
                false => Attempt::Pending(String::new()),
            };
            if let Some(ours) = poll.answer(attempt, |_| Ok::<_, Stop>(false))? {
                return Ok(ours);
            }
        }
    }

    fn not_ours(&self) -> Stop {
        Stop::Failed(format!(
            "VM {} exists but was not created by rollout '{}'; not touching it",
            self.vm.vmid, self.shared.rollout_id
        ))
    }

    /// A clone an earlier run started (the journal has its UPID): wait for it to end before
    /// deciding anything, so it is never asked for twice. A task the node no longer knows is
    /// over.
    async fn await_earlier_clone(&mut self, upid: Upid) -> Step {
        match self.shared.client.task_status(&upid).await {
            Ok(status) if status.state == TaskState::Running => {
                self.enter(Phase::Cloning);
                self.log(
                    Level::Info,
                    format!("waiting for the clone an earlier run started ({})", upid.0),
                );
                let state = self
                    .wait_task(&upid, self.shared.checks.clone_timeout, Wait::CloneTask)
                    .await?;
                if let TaskState::Failed(text) = state {
                    self.log(Level::Warning, format!("the earlier clone failed: {text}"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn clone_with_retries(&mut self) -> Step {
        // Storage-lock timeouts come in bursts when many clones share a storage; back-off
        // 5, 10, 20, 40, 80 s spreads six tries over ~2.5 min.
        const ATTEMPTS: u32 = 6;
        let s = &self.vm.source;
        let linked = self.vm.spec.clone == CloneMode::Linked;
        let request = CloneRequest {
            newid: self.vm.vmid,
            name: self.vm.name.clone(),
            // The marker line stays last: it is how a rerun knows the VM as its own.
            description: Some(match &self.vm.spec.guest.description {
                Some(text) => format!("{text}\n\n{}", plan::marker_line(&self.shared.rollout_id)),
                None => plan::marker_line(&self.shared.rollout_id),
            }),
            full: !linked,
            target: s.target.clone(),
            storage: (!linked).then(|| self.vm.spec.storage.clone()),
            format: (!linked).then(|| self.vm.spec.format.clone()),
            pool: self.vm.spec.guest.pool.clone(),
        };
        let (snode, svmid) = (s.node.clone(), s.vmid);
        let mut backoff = Duration::from_secs(5);
        for attempt in 1..=ATTEMPTS {
            self.journal(Entry::CloneRequested {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })
            .await?;
            let upid = match self.shared.client.clone_vm(&snode, svmid, &request).await {
                Ok(upid) => {
                    self.journal(Entry::CloneAccepted {
                        name: self.vm.name.clone(),
                        vmid: self.vm.vmid,
                        upid: upid.0.clone(),
                    })
                    .await?;
                    upid
                }
                Err(e) if e.class == ErrorClass::AlreadyExists => {
                    // The clone happened but its answer was lost (or an earlier attempt's did):
                    // the VM is ours if it carries our marker, and its clone may still run.
                    if self.lookup_ours().await? {
                        self.log(Level::Warning, format!("{e}; adopting the VM"));
                        return Ok(());
                    }
                    if attempt < ATTEMPTS {
                        // Gone again: that clone task failed and PVE removed its VM.
                        self.log(
                            Level::Warning,
                            format!("{e}; it is gone again, cloning anew"),
                        );
                        continue;
                    }
                    return Err(e.into());
                }
                Err(e) if e.class.is_transient() && attempt < ATTEMPTS => {
                    // Retrying with the same newid can clone at most once: PVE refuses an id
                    // that exists, and the client reports that as AlreadyExists.
                    self.log(Level::Warning, format!("clone refused ({e}); retrying"));
                    self.sleep(backoff).await?;
                    backoff *= 2;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.log(
                Level::Info,
                format!("cloning {} -> {} ({})", svmid, self.vm.vmid, upid.0),
            );
            let state = self
                .wait_task(&upid, self.shared.checks.clone_timeout, Wait::CloneTask)
                .await?;
            let text = match &state {
                TaskState::Ok => return Ok(()),
                TaskState::Warnings(n) => {
                    self.log(
                        Level::Warning,
                        format!("clone finished with {n} warning(s)"),
                    );
                    return Ok(());
                }
                TaskState::Failed(text) => text,
                TaskState::Running => unreachable!("wait_task returns stopped tasks only"),
            };
            match state.failure_class() {
                Some(ErrorClass::AlreadyExists) => {
                    // Another request for the same id got there first (an earlier run's, whose
                    // answer was lost): adopt its VM if it is ours.
                    if self.lookup_ours().await? {
                        self.log(Level::Warning, format!("{text}; adopting the VM"));
                        return Ok(());
                    }
                    return Err(Stop::Failed(format!("clone task failed: {text}")));
                }
                // The new VM's own lock: another clone of this id (an earlier request whose
                // answer was lost) holds it for as long as it copies. Wait for that clone, and
                // adopt its VM if it is ours.
                Some(ErrorClass::Transient)
                    if state.config_lock_timeout() == Some(self.vm.vmid) =>
                {
                    self.log(
                        Level::Info,
                        format!(
                            "{text}: VM {} is being cloned already; waiting for that clone",
                            self.vm.vmid
                        ),
                    );
                    if self.lookup_ours().await? {
                        self.log(
                            Level::Info,
                            format!("VM {} is ours: adopting it", self.vm.vmid),
                        );
                        return Ok(());
                    }
                    if attempt == ATTEMPTS {
                        return Err(Stop::Failed(format!("clone task failed: {text}")));
                    }
                }
                // Lock timeouts, storage lock contention, worker trouble: worth another try.
                Some(ErrorClass::Transient) if attempt < ATTEMPTS => {
                    self.task_log_tail(&upid).await;
                    self.log(
                        Level::Warning,
                        format!(
                            "clone task failed ({text}); retrying in {}",
                            format_duration(backoff)
                        ),
                    );
                    self.sleep(backoff).await?;
                    backoff *= 2;
                }
                _ => {
                    self.task_log_tail(&upid).await;
                    return Err(Stop::Failed(format!("clone task failed: {text}")));
                }
            }
        }
        Err(Stop::Failed("clone failed after retries".into()))
    }
}
