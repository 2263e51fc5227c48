//! One VM's way through the phases: clone, configure, boot, await the agent, find the IP, verify.
//! A VM's failure stays local: it ends in `Failed { phase, reason }` and the rest go on.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc::UnboundedSender, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{CheckMode, ChecksConfig, ExecCheck, format_duration, format_size, parse_size};
use crate::pve::{
    Client, CloneRequest, ConfigUpdate, ErrorClass, PveError, TaskState, Upid, VmConfig,
};
use crate::report::CheckReport;

use super::clock::Clock;
use super::event::{Event, Level, Phase, VmState};
use super::hook::printable;
use super::ip::IpRules;
use super::journal::{Entry, Journal, Step as Journaled};
use super::plan::{self, PlannedVm};
use super::provision::{HookVm, Provisioned, Provisioner};
use super::schedule::{Lane, LaneGuard, Learned, Progress, Stagger, Wait, next_poll};

/// What every VM task shares.
pub(super) struct Shared {
    pub client: Client,
    pub clock: Clock,
    pub checks: ChecksConfig,
    pub ip_rules: IpRules,
    pub rollout_id: String,
    pub stagger: Arc<Stagger>,
    pub lane: Arc<Lane>,
    /// Graceful stop: tasks stop at their next step boundary.
    pub abort: CancellationToken,
    pub pause_all: watch::Receiver<bool>,
    pub events: UnboundedSender<Event>,
    /// Every transition that matters is on disk here before the next step.
    pub journal: Arc<Journal>,
    /// How long the earlier VMs' waits took, to time the later VMs' polls.
    pub learned: Learned,
    /// Per VM (plan order), the operator's guest checks run after the built-in ones.
    pub exec_checks: Vec<Vec<ExecCheck>>,
    /// Runs `on_verified`, when configured.
    pub provisioner: Option<Provisioner>,
}

/// What this VM's own calls already told, so a later phase need not ask again.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// net0's MAC in the config read after the clone (configure keeps it).
    pub mac: Option<Option<String>>,
    /// Configure saw the VM stopped just now: boot need not ask again.
    pub stopped: bool,
    /// Consecutive agent answers so far: the answer that ends the agent wait is the first ping.
    pub pings: u32,
}

/// How a VM task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Verified,
    Failed {
        phase: Phase,
        reason: String,
    },
    /// Stopped by `Abort` in this phase.
    Aborted {
        phase: Phase,
    },
    /// Verified, but the `on_verified` hook failed.
    HookFailed {
        reason: String,
    },
}

/// Why a step stopped early.
enum Stop {
    Aborted,
    Failed(String),
    HookFailed(String),
}

impl From<PveError> for Stop {
    fn from(e: PveError) -> Self {
        Stop::Failed(e.to_string())
    }
}

type Step<T = ()> = Result<T, Stop>;

pub(super) struct VmTask {
    pub shared: Arc<Shared>,
    pub vm: PlannedVm,
    pub paused: watch::Receiver<bool>,
    pub phase: Phase,
    /// True on the first attempt: the clone waits for its stagger turn.
    pub first_attempt: bool,
    /// Rollout-clock second at which the VM was seen started (to learn agent delays).
    pub started_at: Option<f64>,
    /// The stagger turn was taken (a re-clone within the attempt does not wait again).
    pub staggered: bool,
    /// Clones redone within this attempt because the VM vanished (its clone task failed).
    pub reclones: u32,
    /// The IP chosen (for the verified line).
    pub ip: Option<String>,
    pub seen: Seen,
}

impl VmTask {
    /// Runs from `from` to the end; never panics on API input.
    pub async fn run(mut self, from: Phase) -> Outcome {
        self.phase = from;
        let result = self.phases(from).await;
        if self.first_attempt {
            // Whatever happened, never hold up later clones.
            self.shared.stagger.release(self.vm.index);
        }
        match result {
            Ok(()) => Outcome::Verified,
            Err(Stop::Aborted) => Outcome::Aborted { phase: self.phase },
            Err(Stop::Failed(reason)) => Outcome::Failed {
                phase: self.phase,
                reason,
            },
            Err(Stop::HookFailed(reason)) => Outcome::HookFailed { reason },
        }
    }

    async fn phases(&mut self, from: Phase) -> Step {
        let mut config = None;
        if from <= Phase::Cloning {
            config = Some(self.clone_phase().await?);
        }
        if from <= Phase::Configuring {
            self.configure_phase(config.take()).await?;
            self.journal(Entry::Configured {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })?;
        }
        if from <= Phase::Booting {
            self.boot_phase().await?;
            self.journal(Entry::Started {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })?;
        }
        if from <= Phase::Verifying {
            // From here on the guest agent is talked to; in sequential mode the lane is held
            // for the whole check sequence, in pipelined mode per call.
            let held = match self.shared.checks.mode {
                CheckMode::Sequential => Some(self.enter_lane().await?),
                CheckMode::Pipelined => None,
            };
            let mac = self.net0_mac().await?;
            self.agent_phase(held.is_some()).await?;
            self.ip_phase(mac.as_deref(), held.is_some()).await?;
            self.verify_phase(held.is_some()).await?;
            drop(held);
            self.journal(Entry::Verified {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })?;
            // Done with the guest agent: the next VM's checks need not wait for the hook.
            self.shared.lane.pass(self.vm.index);
        }
        self.provision_phase().await?;
        self.set(VmState::Active {
            phase: Phase::Verified,
        });
        Ok(())
    }

    /// Records a transition durably; a journal that cannot be written stops the VM, since
    /// going on would leave a VM a later run could not account for.
    fn journal(&self, entry: Entry) -> Step {
        self.shared
            .journal
            .append(entry)
            .map_err(|e| Stop::Failed(format!("cannot write the journal: {e}")))
    }

    // ---- events -------------------------------------------------------------------------

    fn send(&self, event: Event) {
        // The coordinator outlives every task; a send error only means it is shutting down.
        let _ = self.shared.events.send(event);
    }

    fn set(&mut self, state: VmState) {
        self.phase = state.phase();
        self.send(Event::VmState {
            vm: self.vm.index,
            state,
            at: SystemTime::now(),
        });
    }

    fn enter(&mut self, phase: Phase) {
        self.set(VmState::Active { phase });
    }

    fn log(&self, level: Level, text: impl Into<String>) {
        self.send(Event::Log {
            vm: Some(self.vm.index),
            level,
            text: text.into(),
        });
    }

    // ---- pacing -------------------------------------------------------------------------

    /// A step boundary: stop on abort, hold while paused.
    async fn gate(&mut self) -> Step {
        if self.shared.abort.is_cancelled() {
            return Err(Stop::Aborted);
        }
        let mut mine = self.paused.clone();
        let mut all = self.shared.pause_all.clone();
        if !*mine.borrow() && !*all.borrow() {
            return Ok(());
        }
        let phase = self.phase;
        self.set(VmState::Paused { phase });
        while *mine.borrow_and_update() || *all.borrow_and_update() {
            tokio::select! {
                _ = self.shared.abort.cancelled() => return Err(Stop::Aborted),
                r = mine.changed() => if r.is_err() { break },
                r = all.changed() => if r.is_err() { break },
            }
        }
        self.set(VmState::Active { phase });
        Ok(())
    }

    /// Sleeps rollout time `d`; wakes early only to abort.
    async fn sleep(&self, d: Duration) -> Step {
        tokio::select! {
            _ = self.shared.abort.cancelled() => Err(Stop::Aborted),
            _ = self.shared.clock.sleep(d) => Ok(()),
        }
    }

    async fn enter_lane(&mut self) -> Step<LaneGuard> {
        tokio::select! {
            _ = self.shared.abort.cancelled() => Err(Stop::Aborted),
            g = self.shared.lane.enter(self.vm.index) => Ok(g),
        }
    }

    /// Runs one guest-agent call in the lane (pipelined) or under the lane already held.
    async fn agent_call<T, F, Fut>(&mut self, held: bool, call: F) -> Step<Result<T, PveError>>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, PveError>>,
    {
        self.gate().await?;
        let _guard = if held {
            None
        } else {
            Some(self.enter_lane().await?)
        };
        Ok(call(self.shared.client.clone()).await)
    }

    // ---- tasks --------------------------------------------------------------------------

    /// Polls a task until it stops. The first poll comes when the fastest such task of this
    /// rollout was done; a copying task is then followed through its log (one small GET of the
    /// new lines: `transferred X of Y (p%)` predicts the end, `TASK ...` says it is over), others
    /// back off; so a ten-minute clone costs a handful of requests, not one every few seconds.
    async fn wait_task(&mut self, upid: &Upid, timeout: Duration, wait: Wait) -> Step<TaskState> {
        let clock = self.shared.clock;
        let deadline = clock.deadline(timeout);
        let t0 = clock.now_s();
        let mut interval = self
            .shared
            .learned
            .quantile(wait, 0.0)
            .map_or(0.5, |fastest| fastest * 0.9)
            .max(0.2);
        let mut progress = Progress::default();
        let mut lines_read = 0u64;
        let follow_log = wait == Wait::CloneTask;
        loop {
            self.sleep(Duration::from_secs_f64(interval)).await?;
            if follow_log {
                match self.shared.client.task_log(upid, lines_read, 0).await {
                    Ok(lines) => {
                        let mut ended = false;
                        let mut percent = None;
                        for line in lines.iter().filter(|l| l.t != "no content") {
                            lines_read = lines_read.max(line.n);
                            ended |= line.t.starts_with("TASK ");
                            percent = Progress::percent_of(&line.t).or(percent);
                        }
                        // One sample per poll: lines read together carry no timing of their own.
                        if let Some(p) = percent {
                            progress.observe(clock.now_s(), p);
                        }
                        if !ended {
                            let waited = clock.now_s() - t0;
                            interval = next_poll(progress.remaining(), interval, waited, 0.5);
                            interval = interval.min(clock.left(deadline).as_secs_f64().max(0.2));
                            if clock.left(deadline).is_zero() {
                                return Err(Stop::Failed(format!(
                                    "task {} still running after {}",
                                    upid.0,
                                    format_duration(timeout)
                                )));
                            }
                            continue;
                        }
                    }
                    // Fall through to the status, which classifies the trouble.
                    Err(e) => self.log(Level::Warning, format!("task log: {e}")),
                }
            }
            match self.shared.client.task_status(upid).await {
                Ok(status) if status.state != TaskState::Running => {
                    self.shared.learned.record(wait, clock.now_s() - t0);
                    return Ok(status.state);
                }
                Ok(_) => {}
                // A task not visible yet on a busy cluster answers "no such task"; keep asking.
                Err(e)
                    if matches!(
                        e.class,
                        ErrorClass::Transient | ErrorClass::InvalidParameter
                    ) =>
                {
                    self.log(Level::Warning, format!("task status: {e}"));
                }
                Err(e) => return Err(e.into()),
            }
            if clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "task {} still running after {}",
                    upid.0,
                    format_duration(timeout)
                )));
            }
            interval = (interval * 1.5).min(10.0);
        }
    }

    /// The last lines of a task's log, shown in the detail pane when something went wrong.
    async fn task_log_tail(&self, upid: &Upid) {
        if let Ok(lines) = self.shared.client.task_log(upid, 0, 0).await {
            let tail: Vec<String> = lines
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|l| l.t.clone())
                .collect();
            self.send(Event::TaskLog {
                vm: self.vm.index,
                lines: tail,
            });
        }
    }

    // ---- phases -------------------------------------------------------------------------

    /// Clones (or adopts) the VM and waits until its config is unlocked; returns that config.
    async fn clone_phase(&mut self) -> Step<VmConfig> {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let timeout = self.shared.checks.clone_timeout;
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
            self.enter(Phase::Cloning);
            self.clone_with_retries().await?;
        } else {
            if self.phase != Phase::Cloning {
                self.enter(Phase::Cloning);
            }
            self.log(
                Level::Info,
                format!("VM {vmid} exists and is ours: adopting it"),
            );
        }
        // Wait until the clone's `lock: clone` is gone (bpg does the same).
        let deadline = self.shared.clock.deadline(timeout);
        let mut interval = Duration::from_millis(500);
        // What kept us waiting last: the lock, or a node that did not answer.
        let mut waiting_for: String;
        loop {
            match self.shared.client.vm_config(&node, vmid).await {
                Ok(cfg) if cfg.lock().is_none() => {
                    // An adopted VM that was mid-clone could not be judged before: judge it now.
                    if !plan::is_ours(&cfg, &self.shared.rollout_id) {
                        return Err(self.not_ours());
                    }
                    self.journal(Entry::Cloned {
                        name: self.vm.name.clone(),
                        vmid,
                    })?;
                    self.seen.mac = Some(cfg.net0_mac());
                    return Ok(cfg);
                }
                Ok(cfg) => {
                    waiting_for = format!("locked ({})", cfg.lock().unwrap_or_default());
                }
                Err(e) if e.class == ErrorClass::NotFound && self.reclones < 2 => {
                    // The clone task failed after all (PVE removes the half-made VM): clone anew.
                    self.log(
                        Level::Warning,
                        "the VM vanished while its clone ran; cloning it again",
                    );
                    self.vm.adopted = None;
                    self.reclones += 1;
                    return Box::pin(self.clone_phase()).await;
                }
                Err(e) if e.class == ErrorClass::Transient => {
                    waiting_for = format!("unreachable ({e})");
                }
                Err(e) => return Err(e.into()),
            }
            if self.shared.clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "VM {vmid} still {waiting_for} after {}",
                    format_duration(timeout)
                )));
            }
            self.sleep(interval).await?;
            interval = (interval.mul_f64(1.5)).min(Duration::from_secs(5));
        }
    }

    /// Whether the VM exists on its node and carries this rollout's marker. A clone still in
    /// flight (its answer lost, or a retry right after) is waited for: until its task ends the
    /// new VM is locked, lacks the marker and, for a cross-node clone, sits on the source node,
    /// so judging it earlier would call our own clone someone else's.
    async fn lookup_ours(&mut self) -> Step<bool> {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let timeout = self.shared.checks.clone_timeout;
        let deadline = self.shared.clock.deadline(timeout);
        let mut interval = Duration::from_millis(500);
        let mut waiting_for = "being cloned".to_string();
        loop {
            // Each arm that does not return means: still cloning (or briefly unreachable).
            match self.shared.client.vm_config(&node, vmid).await {
                Ok(cfg) if plan::is_ours(&cfg, &self.shared.rollout_id) => return Ok(true),
                Ok(cfg) if cfg.lock() == Some("clone") => waiting_for = "being cloned".into(),
                Ok(_) => return Err(self.not_ours()),
                Err(e) if e.class == ErrorClass::NotFound => {
                    match self.shared.client.find_vm(vmid).await {
                        Ok(None) => return Ok(false),
                        Ok(Some(found)) if found.lock.as_deref() == Some("clone") => {
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
            if self.shared.clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "VM {vmid} still {waiting_for} after {}",
                    format_duration(timeout)
                )));
            }
            self.sleep(interval).await?;
            interval = (interval.mul_f64(1.5)).min(Duration::from_secs(5));
        }
    }

    /// [`Self::lookup_ours`], asked again for `grace` (rollout time) while the VM is absent.
    async fn lookup_ours_within(&mut self, grace: Duration) -> Step<bool> {
        let deadline = self.shared.clock.deadline(grace);
        loop {
            if self.lookup_ours().await? {
                return Ok(true);
            }
            if self.shared.clock.left(deadline).is_zero() {
                return Ok(false);
            }
            self.sleep(Duration::from_millis(500)).await?;
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
        let request = CloneRequest {
            newid: self.vm.vmid,
            name: self.vm.name.clone(),
            description: Some(plan::marker_line(&self.shared.rollout_id)),
            full: true,
            target: s.target.clone(),
            storage: Some(self.vm.spec.storage.clone()),
            format: Some(self.vm.spec.format.clone()),
            pool: None,
        };
        let (snode, svmid) = (s.node.clone(), s.vmid);
        let mut backoff = Duration::from_secs(5);
        for attempt in 1..=ATTEMPTS {
            self.journal(Entry::CloneRequested {
                name: self.vm.name.clone(),
                vmid: self.vm.vmid,
            })?;
            let upid = match self.shared.client.clone_vm(&snode, svmid, &request).await {
                Ok(upid) => {
                    self.journal(Entry::CloneAccepted {
                        name: self.vm.name.clone(),
                        vmid: self.vm.vmid,
                        upid: upid.0.clone(),
                    })?;
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
            match self
                .wait_task(&upid, self.shared.checks.clone_timeout, Wait::CloneTask)
                .await?
            {
                TaskState::Ok => return Ok(()),
                TaskState::Warnings(n) => {
                    self.log(
                        Level::Warning,
                        format!("clone finished with {n} warning(s)"),
                    );
                    return Ok(());
                }
                TaskState::Failed(text) if text.contains("already exists") => {
                    // Another request for the same id got there first (an earlier run's, whose
                    // answer was lost): adopt its VM if it is ours.
                    if self.lookup_ours().await? {
                        self.log(Level::Warning, format!("{text}; adopting the VM"));
                        return Ok(());
                    }
                    return Err(Stop::Failed(format!("clone task failed: {text}")));
                }
                TaskState::Failed(text) => {
                    self.task_log_tail(&upid).await;
                    if is_transient_task_error(&text) && attempt < ATTEMPTS {
                        self.log(
                            Level::Warning,
                            format!(
                                "clone task failed ({text}); retrying in {}",
                                format_duration(backoff)
                            ),
                        );
                        self.sleep(backoff).await?;
                        backoff *= 2;
                        continue;
                    }
                    return Err(Stop::Failed(format!("clone task failed: {text}")));
                }
                TaskState::Running => unreachable!("wait_task returns stopped tasks only"),
            }
        }
        Err(Stop::Failed("clone failed after retries".into()))
    }

    async fn configure_phase(&mut self, config: Option<VmConfig>) -> Step {
        self.gate().await?;
        self.enter(Phase::Configuring);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let config = match config {
            Some(c) => c,
            None => self.shared.client.vm_config(&node, vmid).await?,
        };
        self.seen.mac = Some(config.net0_mac());
        let status = self.shared.client.vm_status(&node, vmid).await?;
        self.seen.stopped = status.status != "running";
        if status.status == "running" {
            // Configured before it was first started; changing a running VM would only leave
            // pending changes behind.
            self.log(Level::Info, "already running: keeping its configuration");
            return Ok(());
        }
        let update = config_update(&self.vm, &config);
        let deadline = self.shared.clock.deadline(self.shared.checks.clone_timeout);
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
        // Grow the boot disk to the wanted size (never shrink: PVE refuses and so do we).
        let disk = self.vm.spec.disk.clone();
        let current = config.get(&disk).and_then(disk_size_of);
        let wanted = self.vm.spec.disk_size;
        match current {
            Some(cur) if cur > wanted => self.log(
                Level::Warning,
                format!(
                    "{disk} is {} already, larger than disk_size {}; left as is",
                    format_size(cur),
                    format_size(wanted)
                ),
            ),
            Some(cur) if cur == wanted => {}
            _ => {
                let size = format_size(wanted);
                if let Some(upid) = self.shared.client.resize(&node, vmid, &disk, &size).await? {
                    match self
                        .wait_task(&upid, self.shared.checks.clone_timeout, Wait::ResizeTask)
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

    async fn boot_phase(&mut self) -> Step {
        self.gate().await?;
        self.enter(Phase::Booting);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        // Configure (just before, in this attempt) saw it stopped; else ask.
        let stopped = std::mem::take(&mut self.seen.stopped)
            || self.shared.client.vm_status(&node, vmid).await?.status != "running";
        if stopped {
            let Some(upid) = self.start_vm().await? else {
                self.mark_started();
                return Ok(());
            };
            match self
                .wait_task(&upid, self.shared.checks.boot_timeout, Wait::StartTask)
                .await?
            {
                TaskState::Ok | TaskState::Warnings(_) => {}
                // bpg's lesson: qmstart can fail yet the VM runs; "already running" is fine.
                TaskState::Failed(text) if text.contains("already running") => {}
                TaskState::Failed(text) => {
                    self.task_log_tail(&upid).await;
                    return Err(Stop::Failed(format!("start failed: {text}")));
                }
                TaskState::Running => unreachable!("wait_task returns stopped tasks only"),
            }
        }
        self.mark_started();
        Ok(())
    }

    /// `POST status/start`; a transient failure (a 596 whose start may or may not have
    /// happened) is checked against the VM's status and retried. `None`: it runs already.
    async fn start_vm(&mut self) -> Step<Option<Upid>> {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let mut attempt = 1;
        loop {
            match self.shared.client.start(&node, vmid).await {
                Ok(upid) => return Ok(Some(upid)),
                Err(e) if e.class.is_transient() && attempt < 4 => {
                    self.log(Level::Warning, format!("start: {e}; checking the VM"));
                    self.sleep(Duration::from_secs(2)).await?;
                    if self.shared.client.vm_status(&node, vmid).await?.status == "running" {
                        return Ok(None);
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn mark_started(&mut self) {
        self.started_at = Some(self.shared.clock.now_s());
    }
}

/// Task errors worth another try (lock timeouts, storage lock contention, worker trouble).
pub(super) fn is_transient_task_error(text: &str) -> bool {
    text.contains("got timeout")
        || text.contains("can't lock file")
        || text.contains("got lock request timeout")
        || text.contains("got no worker upid")
}

/// The config keys a VM gets after its clone (the seed's settings and the per-VM overrides).
pub(super) fn config_update(vm: &PlannedVm, current: &VmConfig) -> ConfigUpdate {
    let spec = &vm.spec;
    let mut set = vec![
        ("cores".to_string(), spec.cores.to_string()),
        ("sockets".to_string(), spec.sockets.to_string()),
        ("memory".to_string(), spec.memory.to_string()),
        (
            "net0".to_string(),
            net0_value(current.get("net0"), &spec.bridge),
        ),
        ("ipconfig0".to_string(), "ip=dhcp".to_string()),
        ("agent".to_string(), "1".to_string()),
        ("bios".to_string(), "ovmf".to_string()),
        ("machine".to_string(), "q35".to_string()),
        ("tags".to_string(), merge_tags(current.get("tags"))),
    ];
    if current.get("efidisk0").is_none() {
        set.push((
            "efidisk0".to_string(),
            format!(
                "{}:1,efitype=4m,pre-enrolled-keys={}",
                spec.storage,
                u8::from(spec.secure_boot)
            ),
        ));
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

/// `net0` on the wanted bridge, keeping the model and the MAC the clone was given (setting
/// net0 without a MAC would make PVE generate yet another one).
fn net0_value(current: Option<&str>, bridge: &str) -> String {
    let model_mac = current
        .and_then(|v| v.split(',').next())
        .filter(|first| first.contains('='))
        .unwrap_or("virtio");
    let mut parts = vec![model_mac.to_string(), format!("bridge={bridge}")];
    if let Some(v) = current {
        parts.extend(
            v.split(',')
                .skip(1)
                .filter(|p| !p.starts_with("bridge="))
                .map(str::to_string),
        );
    }
    parts.join(",")
}

fn merge_tags(current: Option<&str>) -> String {
    let mut tags: Vec<&str> = current
        .unwrap_or("")
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .collect();
    if !tags.contains(&plan::TAG) {
        tags.push(plan::TAG);
    }
    tags.join(";")
}

/// `size=128G` of a disk line, in bytes (PVE writes a unit, or plain bytes).
fn disk_size_of(line: &str) -> Option<u64> {
    let size = line.split(',').find_map(|p| p.strip_prefix("size="))?;
    parse_size(size).ok().or_else(|| size.parse().ok())
}

impl VmTask {
    /// The MAC of net0 as configured, to match the agent's interface (read after the clone, or
    /// asked when the run resumes past configure).
    async fn net0_mac(&mut self) -> Step<Option<String>> {
        if let Some(mac) = self.seen.mac.clone() {
            return Ok(mac);
        }
        let cfg = self
            .shared
            .client
            .vm_config(&self.vm.node, self.vm.vmid)
            .await?;
        Ok(cfg.net0_mac())
    }

    /// When to send the first ping: a little before the earliest agent start seen so far in
    /// this rollout, because a ping to an agent that is not up yet holds a pvedaemon worker for
    /// 3 s. The first VMs, with nothing learned, ping from the start.
    fn predicted_agent_delay(&self) -> Duration {
        self.shared
            .learned
            .quantile(Wait::Agent, 0.0)
            .map_or(Duration::ZERO, |earliest| {
                Duration::from_secs_f64(earliest * 0.8)
            })
    }

    async fn agent_phase(&mut self, held: bool) -> Step {
        self.gate().await?;
        self.enter(Phase::AwaitingAgent);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let clock = self.shared.clock;
        let timeout = self.shared.checks.agent_timeout;
        let deadline = clock.deadline(timeout);
        let started = self.started_at.unwrap_or_else(|| clock.now_s());
        let wait = self
            .predicted_agent_delay()
            .saturating_sub(Duration::from_secs_f64((clock.now_s() - started).max(0.0)));
        if !wait.is_zero() {
            self.sleep(wait).await?;
        }
        let mut interval = Duration::from_secs(1);
        let mut last_error;
        loop {
            let n = node.clone();
            match self
                .agent_call(held, |c| async move { c.agent_ping(&n, vmid).await })
                .await?
            {
                Ok(()) => break,
                Err(e)
                    if matches!(
                        e.class,
                        ErrorClass::AgentNotReady | ErrorClass::NotRunning | ErrorClass::Transient
                    ) =>
                {
                    last_error = e.to_string();
                }
                Err(e) => return Err(e.into()),
            }
            if clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "guest agent did not answer within {} ({last_error})",
                    format_duration(timeout)
                )));
            }
            self.sleep(interval).await?;
            interval = (interval.mul_f64(1.25)).min(Duration::from_secs(3));
        }
        let delay = clock.now_s() - started;
        self.shared.learned.record(Wait::Agent, delay);
        self.seen.pings = 1;
        self.log(
            Level::Info,
            format!("guest agent answered {delay:.1}s after start"),
        );
        Ok(())
    }

    async fn ip_phase(&mut self, mac: Option<&str>, held: bool) -> Step {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let clock = self.shared.clock;
        let timeout = self.shared.checks.ip_timeout;
        let deadline = clock.deadline(timeout);
        let t0 = clock.now_s();
        // DHCP takes a while after the agent is up: first ask when the earliest lease seen did
        // (pipelined only: in sequential mode the lane is held, and the seed asked at once).
        if let Some(earliest) = self
            .shared
            .learned
            .quantile(Wait::Ip, 0.0)
            .filter(|_| !held)
        {
            self.sleep(Duration::from_secs_f64(earliest * 0.8)).await?;
        }
        let mut interval = Duration::from_secs(1);
        loop {
            let n = node.clone();
            match self
                .agent_call(held, |c| async move {
                    c.agent_network_interfaces(&n, vmid).await
                })
                .await?
            {
                Ok(interfaces) => {
                    let choice = self.shared.ip_rules.select(&interfaces, mac);
                    if let Some(ip) = choice.ip {
                        let candidates: Vec<String> =
                            choice.candidates.iter().map(|c| c.to_string()).collect();
                        let others: Vec<&str> = candidates
                            .iter()
                            .map(String::as_str)
                            .filter(|c| *c != ip.to_string())
                            .collect();
                        let text = if others.is_empty() {
                            format!("IP {ip}")
                        } else {
                            format!("IP {ip} (other candidates: {})", others.join(", "))
                        };
                        self.send(Event::VmIp {
                            vm: self.vm.index,
                            ip: ip.to_string(),
                            candidates,
                        });
                        self.enter(Phase::IpFound);
                        self.log(Level::Info, text);
                        self.ip = Some(ip.to_string());
                        self.shared.learned.record(Wait::Ip, clock.now_s() - t0);
                        return Ok(());
                    }
                }
                Err(e)
                    if matches!(
                        e.class,
                        ErrorClass::AgentNotReady | ErrorClass::NotRunning | ErrorClass::Transient
                    ) =>
                {
                    self.seen.pings = 0;
                }
                Err(e) => return Err(e.into()),
            }
            if clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "no usable IP address reported within {}",
                    format_duration(timeout)
                )));
            }
            self.sleep(interval).await?;
            interval = (interval.mul_f64(1.5)).min(Duration::from_secs(5));
        }
    }

    async fn verify_phase(&mut self, held: bool) -> Step {
        self.gate().await?;
        self.enter(Phase::Verifying);
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let clock = self.shared.clock;
        let timeout = self.shared.checks.verify_timeout;
        let deadline = clock.deadline(timeout);

        // N consecutive pings.
        let wanted = self.shared.checks.pings;
        let mut ok = std::mem::take(&mut self.seen.pings).min(wanted);
        while ok < wanted {
            let n = node.clone();
            match self
                .agent_call(held, |c| async move { c.agent_ping(&n, vmid).await })
                .await?
            {
                Ok(()) => ok += 1,
                Err(e) if matches!(e.class, ErrorClass::AgentNotReady | ErrorClass::Transient) => {
                    ok = 0;
                    if clock.left(deadline).is_zero() {
                        return Err(Stop::Failed(format!(
                            "guest agent stopped answering pings: {e}"
                        )));
                    }
                    self.sleep(Duration::from_secs(1)).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.log(
            Level::Info,
            format!("{wanted} consecutive agent pings answered"),
        );

        // Let the guest settle (the seed waited 30 s); the lane is free meanwhile in pipelined mode.
        let settle = self.shared.checks.stabilization;
        if !settle.is_zero() {
            self.sleep(settle).await?;
        }

        // guest-exec works at all.
        let probe = "pve-rollout-exec-ok";
        let echo = self.exec(held, &["echo", probe], deadline).await?;
        if echo.exitcode != Some(0) || !echo.stdout.contains(probe) {
            return Err(Stop::Failed(format!(
                "guest-exec test failed: exit {:?}, output {:?}",
                echo.exitcode,
                echo.stdout.trim()
            )));
        }

        // The agent's own service (informational: it answered, so it runs).
        let service = self
            .exec(
                held,
                &["systemctl", "is-active", "qemu-guest-agent"],
                deadline,
            )
            .await?;
        let word = service.stdout.trim().to_string();
        if word == "active" {
            self.log(Level::Info, "qemu-guest-agent service is active");
        } else {
            self.log(
                Level::Warning,
                format!(
                    "systemctl is-active qemu-guest-agent said {:?} (exit {:?})",
                    if word.is_empty() {
                        service.stderr.trim()
                    } else {
                        &word
                    },
                    service.exitcode
                ),
            );
        }

        let uname = self.exec(held, &["uname", "-a"], deadline).await?;
        let uname = (uname.exitcode == Some(0)).then(|| uname.stdout.trim().to_string());
        let n = node.clone();
        let os = match self
            .agent_call(held, |c| async move { c.agent_os_info(&n, vmid).await })
            .await?
        {
            Ok(info) => info.pretty_name.or(info.name),
            Err(e) => {
                self.log(Level::Warning, format!("get-osinfo: {e}"));
                None
            }
        };
        self.send(Event::VmGuest {
            vm: self.vm.index,
            uname: uname.clone(),
            os,
        });

        if self.shared.checks.cloud_init {
            self.cloud_init(held, deadline).await?;
        }
        self.guest_checks(held).await?;
        self.log(
            Level::Success,
            format!(
                "verified: IP {}, {wanted}/{wanted} pings, guest-exec works",
                self.ip.as_deref().unwrap_or("?")
            ),
        );
        Ok(())
    }

    /// `cloud-init status --wait`: 0 done, 2 done but degraded (warning), 1 error (failed).
    /// Very early in boot it can exit with other codes (129); those are asked again.
    async fn cloud_init(&mut self, held: bool, deadline: tokio::time::Instant) -> Step {
        loop {
            let r = self
                .exec(held, &["cloud-init", "status", "--wait"], deadline)
                .await?;
            match r.exitcode {
                Some(0) => {
                    self.log(Level::Info, "cloud-init: done");
                    return Ok(());
                }
                Some(2) => {
                    self.log(
                        Level::Warning,
                        format!("cloud-init: done but degraded: {}", r.stdout.trim()),
                    );
                    return Ok(());
                }
                Some(1) => {
                    return Err(Stop::Failed(format!(
                        "cloud-init reported an error: {}",
                        r.stdout.trim()
                    )));
                }
                other => {
                    if self.shared.clock.left(deadline).is_zero() {
                        return Err(Stop::Failed(format!(
                            "cloud-init status kept failing (exit {other:?})"
                        )));
                    }
                    self.sleep(Duration::from_secs(5)).await?;
                }
            }
        }
    }

    /// Runs a command through the agent and waits for it to exit. The commands run here are
    /// harmless to repeat, so a transient failure (an agent command timeout, a lost answer, a
    /// pid the agent already forgot) runs the command again, a few times.
    async fn exec(
        &mut self,
        held: bool,
        argv: &[&str],
        deadline: tokio::time::Instant,
    ) -> Step<ExecResult> {
        const ATTEMPTS: u32 = 4;
        let mut attempt = 1;
        loop {
            let error = match self.exec_once(held, argv, deadline).await? {
                Ok(result) => return Ok(result),
                Err(e) => e,
            };
            let again = error.class.is_transient()
                || error.class == ErrorClass::AgentNotReady
                || error.to_string().contains("Invalid parameter 'pid'");
            if !again || attempt >= ATTEMPTS || self.shared.clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "guest-exec {}: {error}",
                    argv.join(" ")
                )));
            }
            self.log(
                Level::Warning,
                format!("guest-exec {}: {error}; running it again", argv.join(" ")),
            );
            attempt += 1;
            self.sleep(Duration::from_secs(1)).await?;
        }
    }

    async fn exec_once(
        &mut self,
        held: bool,
        argv: &[&str],
        deadline: tokio::time::Instant,
    ) -> Step<Result<ExecResult, PveError>> {
        let vmid = self.vm.vmid;
        let args: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let n = self.vm.node.clone();
        let pid = match self
            .agent_call(held, |c| async move {
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                c.agent_exec(&n, vmid, &argv, None).await
            })
            .await?
        {
            Ok(pid) => pid,
            Err(e) => return Ok(Err(e)),
        };
        // First ask when most commands of this rollout had exited (a status that says "running"
        // is a request wasted); commands that run longer are then asked about less and less.
        // Sequential mode holds the lane meanwhile and asks at once, as the seed did.
        let clock = self.shared.clock;
        let t0 = clock.now_s();
        let learned = self
            .shared
            .learned
            .quantile(Wait::Exec, 0.75)
            .map_or(0.5, |s| s * 1.1)
            .clamp(0.1, 2.0);
        let mut interval = Duration::from_secs_f64(if held { 0.0 } else { learned });
        loop {
            self.sleep(interval).await?;
            let n = self.vm.node.clone();
            let status = match self
                .agent_call(
                    held,
                    |c| async move { c.agent_exec_status(&n, vmid, pid).await },
                )
                .await?
            {
                Ok(status) => status,
                Err(e) => return Ok(Err(e)),
            };
            if status.exited {
                self.shared.learned.record(Wait::Exec, clock.now_s() - t0);
                return Ok(Ok(ExecResult {
                    exitcode: status.exitcode,
                    stdout: status.out_data.unwrap_or_default(),
                    stderr: status.err_data.unwrap_or_default(),
                }));
            }
            if self.shared.clock.left(deadline).is_zero() {
                return Err(Stop::Failed(format!(
                    "guest-exec {} did not finish in time",
                    argv.join(" ")
                )));
            }
            interval = (interval * 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        }
    }
}

struct ExecResult {
    exitcode: Option<i64>,
    stdout: String,
    stderr: String,
}

impl VmTask {
    /// `on_verified`, when configured: the VM is `provisioning` while it runs.
    async fn provision_phase(&mut self) -> Step {
        let shared = self.shared.clone();
        let Some(provisioner) = &shared.provisioner else {
            return Ok(());
        };
        self.gate().await?;
        self.enter(Phase::Provisioning);
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

/// Lines of a check's stdout and stderr kept in its report (and shown when it failed).
const CHECK_TAIL_LINES: usize = 10;
/// Between the runs of a failing check: 2 s, doubling, at most 30 s.
const CHECK_RETRY_START: Duration = Duration::from_secs(2);
const CHECK_RETRY_CAP: Duration = Duration::from_secs(30);

impl VmTask {
    /// Runs this VM's guest checks in order; the first that fails for good fails the VM.
    async fn guest_checks(&mut self, held: bool) -> Step {
        let checks = self.shared.exec_checks.get(self.vm.index).cloned();
        for check in checks.iter().flatten() {
            self.guest_check(held, check).await?;
        }
        Ok(())
    }

    async fn guest_check(&mut self, held: bool, check: &ExecCheck) -> Step {
        let argv: Vec<&str> = check.command.iter().map(String::as_str).collect();
        let shared = self.shared.clone();
        let runs_allowed = check.retries + 1;
        let mut wait = CHECK_RETRY_START;
        let mut runs = 0;
        loop {
            self.gate().await?;
            runs += 1;
            let deadline = shared.clock.deadline(check.timeout);
            let report = match self.exec(held, &argv, deadline).await {
                Ok(result) => judge(check, &result, runs),
                Err(Stop::Failed(reason)) => CheckReport {
                    name: check.name.clone(),
                    passed: false,
                    exit_code: None,
                    runs,
                    error: Some(reason),
                    stdout_tail: Vec::new(),
                    stderr_tail: Vec::new(),
                },
                Err(stop) => return Err(stop),
            };
            self.log_check(&report);
            self.send(Event::Check {
                vm: self.vm.index,
                check: report.clone(),
            });
            if report.passed {
                return Ok(());
            }
            if runs >= runs_allowed {
                return Err(Stop::Failed(failure(&report)));
            }
            self.log(
                Level::Warning,
                format!(
                    "check \"{}\": running it again (run {} of {runs_allowed})",
                    check.name,
                    runs + 1
                ),
            );
            self.sleep(wait).await?;
            wait = (wait * 2).min(CHECK_RETRY_CAP);
        }
    }

    fn log_check(&self, report: &CheckReport) {
        for line in &report.stdout_tail {
            self.log(Level::Info, format!("check \"{}\" | {line}", report.name));
        }
        for line in &report.stderr_tail {
            self.log(Level::Info, format!("check \"{}\" ! {line}", report.name));
        }
        match (&report.error, report.passed) {
            (None, true) => self.log(
                Level::Success,
                format!(
                    "check \"{}\" passed (exit {})",
                    report.name,
                    report.exit_code.unwrap_or_default()
                ),
            ),
            (error, _) => self.log(
                Level::Warning,
                format!(
                    "check \"{}\" failed: {}",
                    report.name,
                    error.as_deref().unwrap_or("?")
                ),
            ),
        }
    }
}

/// The check's verdict on one run.
fn judge(check: &ExecCheck, result: &ExecResult, runs: u32) -> CheckReport {
    let error = match result.exitcode {
        None => Some(format!(
            "no exit code (killed in the guest?), expected exit {}",
            check.expect_exit
        )),
        Some(code) if code != check.expect_exit => {
            Some(format!("exit {code}, expected {}", check.expect_exit))
        }
        Some(_) => check
            .expect_output
            .as_ref()
            .filter(|pattern| !pattern.is_match(&result.stdout))
            .map(|pattern| format!("stdout does not match /{}/", pattern.as_str())),
    };
    CheckReport {
        name: check.name.clone(),
        passed: error.is_none(),
        exit_code: result.exitcode,
        runs,
        error,
        stdout_tail: tail(&result.stdout),
        stderr_tail: tail(&result.stderr),
    }
}

fn tail(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(CHECK_TAIL_LINES);
    lines[skip..]
        .iter()
        .map(|l| printable(l.as_bytes()))
        .collect()
}

/// The VM's failure: the check's name, what went wrong, and the last lines of its stderr.
fn failure(report: &CheckReport) -> String {
    let mut reason = format!(
        "check \"{}\" failed: {}",
        report.name,
        report.error.as_deref().unwrap_or("?")
    );
    if !report.stderr_tail.is_empty() {
        reason.push_str("; stderr:\n");
        reason.push_str(&report.stderr_tail.join("\n"));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_sizes_read_from_config_lines() {
        assert_eq!(
            disk_size_of("ssd:vm-101-disk-0,iothread=1,size=128G"),
            Some(128 << 30)
        );
        assert_eq!(
            disk_size_of("ssd:vm-101-disk-0,size=1073741824"),
            Some(1 << 30)
        );
        assert_eq!(disk_size_of("ssd:vm-101-disk-0"), None);
    }

    #[test]
    fn net0_keeps_model_and_mac_and_sets_bridge() {
        assert_eq!(
            net0_value(
                Some("virtio=BC:24:11:4F:2A:9E,bridge=vmbr0,firewall=1"),
                "vmbr1"
            ),
            "virtio=BC:24:11:4F:2A:9E,bridge=vmbr1,firewall=1"
        );
        assert_eq!(net0_value(None, "vmbr1"), "virtio,bridge=vmbr1");
    }

    #[test]
    fn tags_gain_ours_once() {
        assert_eq!(merge_tags(Some("web;prod")), "web;prod;pve-rollout");
        assert_eq!(merge_tags(Some("pve-rollout")), "pve-rollout");
        assert_eq!(merge_tags(None), "pve-rollout");
    }

    #[test]
    fn transient_task_errors_are_recognised() {
        assert!(is_transient_task_error(
            "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-ssd' - got timeout"
        ));
        assert!(is_transient_task_error(
            "clone failed: cfs-lock 'storage-shared' error: got lock request timeout"
        ));
        assert!(!is_transient_task_error(
            "clone failed: storage 'x' does not exist"
        ));
    }
}
