//! The coordinator of a running rollout: spawns a task per VM, forwards what the tasks say to
//! the watchers (keeping the record the summary is made from), carries out the watchers'
//! commands (pause, retry, skip, abort, export) and writes the outputs when every VM settled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckMode, CloneMode};
use crate::report::{HookReport, Summary};

use super::Rollout;
use super::clone_slots::CloneSlots;
use super::event::{Command, Event, Level, Phase, VmState};
use super::ip::IpRules;
use super::journal::{Entry, History, Journal};
use super::poll::Learned;
use super::provision::{self, HookVm, Provisioner};
use super::record::Record;
use super::schedule::{AgentLane, Stagger};
use super::task_watch::TaskWatch;
use super::vm::{Outcome, Prelude, Shared, VmTask};

mod restart;

/// What woke the coordinator.
enum Wake {
    /// A VM task said something.
    Event(Event),
    /// A watcher's command; `None` when the watchers are gone.
    Command(Option<Command>),
    /// A VM task ended (`None`: it was killed for a retry or a skip); `Err` if it panicked.
    Ended(Result<(tokio::task::Id, (usize, Option<Outcome>)), tokio::task::JoinError>),
    /// Time to tell the watchers what changed without a state change (requests, the ETA).
    Tick,
}

/// How often counts that change without a state change (the API requests, the ETA) are sent,
/// at most: a watcher's screen stays true within this, and a busy rollout's thousands of
/// requests become two events a second.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

pub(super) struct Coordinator {
    rollout: Rollout,
    events: mpsc::UnboundedSender<Event>,
    journal: Arc<Journal>,
    shared: Arc<Shared>,
    /// What the VM tasks say, before it is recorded and forwarded.
    from_tasks: mpsc::UnboundedReceiver<Event>,
    pause_all: watch::Sender<bool>,
    record: Record,
    paused: Vec<watch::Sender<bool>>,
    /// Per VM, the token that kills its running task.
    kills: Vec<Option<CancellationToken>>,
    tasks: JoinSet<(usize, Option<Outcome>)>,
    /// Which VM each running task is for (a panicking task's VM is known only through this).
    task_vm: HashMap<tokio::task::Id, usize>,
    /// Killed to be started again (how), or to be skipped, once their task has ended.
    retry_pending: HashMap<usize, Prelude>,
    skip_pending: HashSet<usize>,
    commands_open: bool,
    aborted: bool,
    finished_sent: bool,
    /// `on_finished` runs once, at the first finish: `Some` once it did (or had nothing to
    /// run), with its result, which every later summary carries too.
    on_finished: Option<Option<HookReport>>,
    last_summary: Option<Summary>,
    /// The progress the watchers were sent last.
    progress_sent: Option<super::event::Progress>,
    /// Settled VMs' files being written (the final export waits for them).
    vm_writes: JoinSet<()>,
}

impl Coordinator {
    pub fn new(
        rollout: Rollout,
        events: mpsc::UnboundedSender<Event>,
        journal: Arc<Journal>,
    ) -> Self {
        let n = rollout.plan.vms.len();
        let (to_coordinator, from_tasks) = mpsc::unbounded_channel::<Event>();
        let (pause_all, pause_all_rx) = watch::channel(false);
        let checks = rollout.config.checks.clone();
        // Which VMs' hooks ended ok in an earlier run (a resumed rollout does not run them
        // again); the journal was just opened, so it reads.
        let history = History::read(journal.path()).unwrap_or_default();
        let provisioner = Provisioner::new(
            &rollout.config.hooks,
            &rollout.config.output.dir,
            &rollout.plan.rollout_id,
            &history,
        );
        let exec_checks = (rollout.plan.vms.iter())
            .map(|vm| rollout.config.exec_checks_for(&vm.name))
            .collect();
        let shared = Arc::new(Shared {
            client: rollout.client.clone(),
            clock: rollout.clock,
            ip_rules: IpRules::from_checks(&checks),
            agent_lane: AgentLane::new(n, checks.mode == CheckMode::Sequential),
            checks,
            rollout_id: rollout.plan.rollout_id.clone(),
            stagger: Stagger::new(rollout.config.rollout.deployment_delay),
            abort: CancellationToken::new(),
            pause_all: pause_all_rx,
            events: to_coordinator,
            journal: journal.clone(),
            learned: Learned::default(),
            clone_slots: CloneSlots::new(
                rollout.config.rollout.max_clones_per_storage,
                rollout.config.rollout.deployment_delay.as_secs_f64(),
                &rollout
                    .plan
                    .vms
                    .iter()
                    // A linked clone copies nothing.
                    .filter(|vm| vm.adopted.is_none() && vm.spec.clone != CloneMode::Linked)
                    .map(|vm| (vm.index, vm.clone_storage.clone()))
                    .collect::<Vec<_>>(),
            ),
            task_watch: TaskWatch::new(rollout.client.clone(), rollout.clock),
            exec_checks,
            provisioner,
        });
        let record = Record::new(rollout.info(), &rollout.plan.planned());
        Coordinator {
            events,
            journal,
            shared,
            from_tasks,
            pause_all,
            record,
            paused: (0..n).map(|_| watch::channel(false).0).collect(),
            kills: vec![None; n],
            tasks: JoinSet::new(),
            task_vm: HashMap::new(),
            retry_pending: HashMap::new(),
            skip_pending: HashSet::new(),
            commands_open: true,
            aborted: false,
            finished_sent: false,
            on_finished: None,
            last_summary: None,
            progress_sent: None,
            vm_writes: JoinSet::new(),
            rollout,
        }
    }

    /// Tells the watchers the plan, and starts every VM (each waits for its stagger turn).
    pub fn start(&mut self) {
        let plan = &self.rollout.plan;
        let config = &self.rollout.config;
        self.emit(Event::Planned {
            rollout: plan.rollout_id.clone(),
            cluster: plan.cluster.clone(),
            vms: plan.planned(),
        });
        self.emit(Event::Log {
            vm: None,
            level: Level::Info,
            text: format!(
                "rolling out {} VM(s) from template '{}' ({} checks, {} between clones)",
                plan.vms.len(),
                plan.template_name,
                config.checks.mode,
                crate::config::format_duration(config.rollout.deployment_delay)
            ),
        });
        for i in 0..plan.vms.len() {
            self.spawn(i, Phase::Queued, true, Prelude::None);
        }
    }

    /// Serves the tasks and the watchers until the end; returns the final summary.
    pub async fn serve(mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> Summary {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                Some(e) = self.from_tasks.recv() => Wake::Event(e),
                cmd = commands.recv(), if self.commands_open => Wake::Command(cmd),
                Some(ended) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Wake::Ended(ended),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Event(e) => self.forward(e),
                Wake::Command(None) => self.watchers_gone(),
                Wake::Command(Some(cmd)) => self.command(cmd),
                Wake::Ended(ended) => self.task_ended(ended),
                Wake::Tick => self.send_progress(false),
            }
            if self.tasks.is_empty() {
                if !self.finished_sent {
                    self.finish(&mut commands).await;
                }
                if !self.rollout.linger || self.aborted || !self.commands_open {
                    return self.last_summary.take().unwrap_or_else(|| {
                        self.record.summary(Some(SystemTime::now()), self.aborted)
                    });
                }
            }
        }
    }

    // ---- spawn scheduling -----------------------------------------------------------------

    fn spawn(&mut self, i: usize, from: Phase, first_attempt: bool, prelude: Prelude) {
        let kill = CancellationToken::new();
        self.kills[i] = Some(kill.clone());
        let mut task = VmTask::new(
            self.shared.clone(),
            self.rollout.plan.vms[i].clone(),
            self.paused[i].subscribe(),
            from,
            first_attempt,
        );
        task.prelude = prelude;
        if from == Phase::Provisioning {
            // The hook alone runs again: it is told the IP the VM was verified with.
            task.ip = self.record.ip(i);
        }
        let handle = self.tasks.spawn(async move {
            tokio::select! {
                outcome = task.run(from) => (i, Some(outcome)),
                _ = kill.cancelled() => (i, None),
            }
        });
        self.task_vm.insert(handle.id(), i);
    }

    fn task_ended(
        &mut self,
        ended: Result<(tokio::task::Id, (usize, Option<Outcome>)), tokio::task::JoinError>,
    ) {
        // Everything the task said before it ended comes first.
        while let Ok(e) = self.from_tasks.try_recv() {
            self.forward(e);
        }
        let (i, outcome) = match ended {
            Ok((id, ended)) => {
                self.task_vm.remove(&id);
                ended
            }
            Err(e) => match self.task_vm.remove(&e.id()) {
                Some(i) => (i, Some(self.panicked(i, e))),
                None => return,
            },
        };
        self.kills[i] = None;
        let phase = self.phase_of(i);
        let lane = &self.shared.agent_lane;
        match outcome {
            Some(Outcome::Verified) => lane.pass(i),
            Some(Outcome::Aborted { phase }) => {
                self.settle(i, VmState::Aborted { phase });
                self.shared.agent_lane.pass(i);
            }
            Some(Outcome::Failed { phase, reason }) => {
                self.settle(i, VmState::Failed { phase, reason });
                self.shared.agent_lane.pass(i);
            }
            Some(Outcome::HookFailed { reason }) => {
                self.settle(i, VmState::HookFailed { reason });
                self.shared.agent_lane.pass(i);
            }
            // Skipping a running hook: its process group ended with its task.
            None if phase == Phase::Provisioning && self.skip_pending.remove(&i) => {
                self.retry_pending.remove(&i);
                self.skip_hook(i);
            }
            None if self.skip_pending.remove(&i) => {
                self.retry_pending.remove(&i);
                self.settle(i, VmState::Skipped { phase });
                self.shared.agent_lane.pass(i);
                self.shared.stagger.release(i);
            }
            None if self.retry_pending.contains_key(&i) => {
                let how = self.retry_pending.remove(&i).unwrap_or(Prelude::None);
                self.shared.stagger.release(i);
                self.respawn(i, phase, how);
            }
            None => {}
        }
        // A restart asked for while the attempt was ending on its own (the kill came too late):
        // start it now.
        if let Some(how) = self.retry_pending.remove(&i)
            && !self.aborted
        {
            let phase = self.phase_of(i);
            self.respawn(i, phase, how);
        }
        if self.kills[i].is_none() {
            self.write_vm_files(i);
        }
    }

    /// A settled VM's own files, written now in the background (see `report::write_vm_files`).
    fn write_vm_files(&mut self, i: usize) {
        let Some(vm) = self.record.vm_summary(i) else {
            return;
        };
        while self.vm_writes.try_join_next().is_some() {}
        let info = self.record.info().clone();
        let dir = self.rollout.config.output.dir.clone();
        let events = self.events.clone();
        self.vm_writes.spawn_blocking(move || {
            if let Err(e) = crate::report::write_vm_files(&dir, &info, &vm) {
                let _ = events.send(Event::Log {
                    vm: None,
                    level: Level::Warning,
                    text: format!(
                        "could not write {}'s files (written again at the end): {e}",
                        vm.name
                    ),
                });
            }
        });
    }

    // ---- commands ------------------------------------------------------------------------

    fn command(&mut self, cmd: Command) {
        let n = self.paused.len();
        match cmd {
            Command::Pause(i) => self.pause(i, true),
            Command::Resume(i) => self.pause(i, false),
            Command::PauseAll => {
                let _ = self.pause_all.send(true);
                self.note(
                    Level::Warning,
                    "paused: no new clones or checks until resumed",
                );
            }
            Command::ResumeAll => {
                let _ = self.pause_all.send(false);
                self.note(Level::Info, "resumed");
            }
            Command::Abort if !self.aborted => {
                self.abort();
                self.note(
                    Level::Warning,
                    "aborting: no new work; calls in flight finish, then the outputs are written",
                );
            }
            Command::Export => {
                let mut summary = self.record.summary(None, self.aborted);
                summary.on_finished = self.on_finished.clone().flatten();
                let (dir, events) = (self.rollout.config.output.dir.clone(), self.events.clone());
                tokio::spawn(async move { super::export(&dir, summary, &events).await });
            }
            Command::Retry(i) if i < n && !self.aborted => self.retry(i),
            Command::RebootAndWait(i) if i < n && !self.aborted => self.restart(i, Prelude::Reboot),
            Command::Recreate(i) if i < n && !self.aborted => self.restart(i, Prelude::Recreate),
            Command::Skip(i) if i < n => self.skip(i),
            _ => {}
        }
    }

    fn pause(&self, i: usize, paused: bool) {
        if let Some(p) = self.paused.get(i) {
            let _ = p.send(paused);
        }
    }

    /// The watcher is gone (quit): stop gracefully and write the outputs.
    fn watchers_gone(&mut self) {
        self.commands_open = false;
        if !self.tasks.is_empty() {
            self.abort();
        }
    }

    fn abort(&mut self) {
        self.aborted = true;
        self.shared.abort.cancel();
    }

    fn skip(&mut self, i: usize) {
        match (&self.kills[i], self.record.state(i)) {
            (
                _,
                Some(VmState::Active {
                    phase: Phase::Verified,
                })
                | Some(VmState::Skipped { .. }),
            ) => {}
            (Some(kill), _) => {
                kill.cancel();
                self.skip_pending.insert(i);
            }
            (None, Some(VmState::HookFailed { .. })) => {
                self.skip_hook(i);
                // The outputs are written again with the VM verified.
                self.finished_sent = false;
            }
            (None, Some(state)) => {
                let phase = state.phase();
                self.settle(i, VmState::Skipped { phase });
            }
            (None, None) => {}
        }
    }

    /// The operator goes on without VM `i`'s `on_verified` hook: journaled (a resumed run
    /// does not run it either), and the VM is verified.
    fn skip_hook(&mut self, i: usize) {
        let vm = &self.rollout.plan.vms[i];
        let hook_vm = HookVm {
            index: i,
            name: &vm.name,
            vmid: vm.vmid,
            node: &vm.node,
            ip: None,
        };
        match Provisioner::skip(hook_vm, &self.journal) {
            Ok(e) => self.forward(e),
            Err(e) => self.emit(Event::Log {
                vm: Some(i),
                level: Level::Error,
                text: format!("cannot write the journal: {e}"),
            }),
        }
        self.forward(Event::VmState {
            vm: i,
            state: VmState::Active {
                phase: Phase::Verified,
            },
            at: SystemTime::now(),
        });
        self.emit(Event::Log {
            vm: Some(i),
            level: Level::Warning,
            text: "on_verified hook skipped by the operator; verified without it".into(),
        });
    }

    // ---- events and the record -----------------------------------------------------------

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn note(&self, level: Level, text: &str) {
        self.emit(Event::Log {
            vm: None,
            level,
            text: text.to_string(),
        });
    }

    fn phase_of(&self, i: usize) -> Phase {
        self.record
            .state(i)
            .map(VmState::phase)
            .unwrap_or(Phase::Queued)
    }

    /// Applies a VM event to the record, forwards it, and follows state changes with progress.
    fn forward(&mut self, e: Event) {
        self.record.apply(&e);
        let state_change = matches!(e, Event::VmState { .. });
        self.emit(e);
        if state_change {
            self.send_progress(true);
        }
    }

    /// Sends the progress when `always` (a state changed) or when anything in it changed.
    fn send_progress(&mut self, always: bool) {
        let progress = self.progress();
        if always || self.progress_sent != Some(progress) {
            self.emit(Event::Progress(progress));
            self.progress_sent = Some(progress);
        }
    }

    fn progress(&self) -> super::event::Progress {
        self.record
            .progress(self.shared.client.stats().requests_total)
    }

    /// Queued now (so it precedes whatever the VM's next attempt journals), confirmed in the
    /// background: the coordinator never waits for a disk.
    fn journal_in_background(&self, i: usize, entry: Entry) {
        let on_disk = self.journal.submit(entry);
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Err(e) = on_disk.await {
                let _ = events.send(Event::Log {
                    vm: Some(i),
                    level: Level::Error,
                    text: format!("cannot write the journal: {e}"),
                });
            }
        });
    }

    /// A VM that ended here (failed or skipped): journaled, recorded, forwarded and logged.
    fn settle(&mut self, i: usize, state: VmState) {
        let level = match &state {
            VmState::Failed { .. } | VmState::HookFailed { .. } => Level::Error,
            _ => Level::Warning,
        };
        let (name, vmid) = (
            self.rollout.plan.vms[i].name.clone(),
            self.rollout.plan.vms[i].vmid,
        );
        let entry = match &state {
            VmState::Failed { phase, reason } => Some(Entry::Failed {
                name,
                vmid,
                phase: phase.to_string(),
                reason: reason.clone(),
            }),
            VmState::Skipped { .. } => Some(Entry::Skipped { name, vmid }),
            _ => None,
        };
        if let Some(entry) = entry {
            self.journal_in_background(i, entry);
        }
        let text = match &state {
            VmState::Failed { phase, reason } => format!("failed in {phase}: {}", reason.trim()),
            VmState::Skipped { phase } => format!("skipped in {phase}"),
            VmState::Aborted { phase } => format!("aborted in {phase}"),
            VmState::HookFailed { reason } => format!("hook-failed: {}", reason.trim()),
            other => other.label().to_string(),
        };
        self.forward(Event::VmState {
            vm: i,
            state,
            at: SystemTime::now(),
        });
        self.emit(Event::Log {
            vm: Some(i),
            level,
            text,
        });
    }

    // ---- finishing ---------------------------------------------------------------------

    /// Every VM settled: the summary is written and sent (again after a retry settles). The
    /// first time, `on_finished` runs after the outputs are written, and they are written again
    /// with its result.
    async fn finish(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) {
        while let Ok(e) = self.from_tasks.try_recv() {
            self.forward(e);
        }
        // No VM's own write may land after (and over) the final one.
        while self.vm_writes.join_next().await.is_some() {}
        let mut summary = self.record.summary(Some(SystemTime::now()), self.aborted);
        summary.on_finished = self.on_finished.clone().flatten();
        let dir = self.rollout.config.output.dir.clone();
        super::export(&dir, summary.clone(), &self.events).await;
        if self.on_finished.is_none() {
            let hooks = &self.rollout.config.hooks;
            let report =
                provision::after_the_outputs(hooks, &dir, self.aborted, commands, &self.events)
                    .await;
            if report.is_some() {
                summary.on_finished = report.clone();
                super::export(&dir, summary.clone(), &self.events).await;
            }
            self.on_finished = Some(report);
        }
        self.send_progress(true);
        self.emit(Event::Finished {
            summary: Box::new(summary.clone()),
        });
        self.last_summary = Some(summary);
        self.finished_sent = true;
    }
}
