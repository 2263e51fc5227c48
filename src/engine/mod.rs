//! The rollout itself: plan, per-VM state machine, scheduler, IP selection, verification.
//! Emits `Event`s, takes `Command`s; knows no terminal.

pub mod clock;
pub mod destroy;
pub mod error;
pub mod event;
pub mod ip;
pub mod journal;
pub mod plan;
pub mod record;
pub mod schedule;
pub mod settings;
mod vm;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckMode, Config};
use crate::pve::Client;
use crate::report::{RolloutInfo, Summary};

pub use clock::Clock;
pub use error::EngineError;
use event::{Command, Event, Level, Phase, VmState};
use ip::IpRules;
use journal::{Entry, Journal};
use plan::Plan;
use record::Record;
use schedule::{Lane, Learned, Stagger};
use vm::{Outcome, Shared, VmTask};

/// Everything a rollout needs once the plan is made.
pub struct Rollout {
    pub client: Client,
    pub config: Config,
    pub plan: Plan,
    pub clock: Clock,
    /// Keep serving commands after every VM settled (the dashboard: a failed VM can still be
    /// retried); the headless runner stops at the first finish.
    pub linger: bool,
}

impl Rollout {
    fn info(&self) -> RolloutInfo {
        let c = &self.config;
        RolloutInfo {
            id: self.plan.rollout_id.clone(),
            proxmox_url: self.client.url().to_string(),
            template: self.plan.template_name.clone(),
            mode: c.checks.mode.to_string(),
            vm_count: self.plan.vms.len(),
            deployment_delay: crate::config::format_duration(c.rollout.deployment_delay),
            nodes: {
                let mut nodes: Vec<String> = self.plan.vms.iter().map(|v| v.node.clone()).collect();
                nodes.sort();
                nodes.dedup();
                nodes
            },
            started: Timestamp::now(),
            finished: None,
            aborted: false,
        }
    }
}

/// Where a retry re-enters: the failed phase, with the agent checks restarting as a whole.
fn retry_from(phase: Phase) -> Phase {
    match phase {
        Phase::Queued | Phase::Cloning => Phase::Cloning,
        Phase::Configuring => Phase::Configuring,
        Phase::Booting => Phase::Booting,
        _ => Phase::AwaitingAgent,
    }
}

/// Runs the rollout to its end (or to an abort), writing the outputs on the way out.
/// Returns the final summary; the same summary went out in `Event::Finished`.
pub async fn run(
    rollout: Rollout,
    events: mpsc::UnboundedSender<Event>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Summary {
    let n = rollout.plan.vms.len();
    let out_dir = rollout.config.output.dir.clone();
    let journal = Journal::open(&out_dir).and_then(|j| {
        let values = settings::of(&rollout.plan);
        j.append(Entry::RolloutStarted {
            rollout: rollout.plan.rollout_id.clone(),
            settings: settings::digest(&values),
            values: Some(values),
        })?;
        // Every id is on disk before any clone is asked for, so a rerun finds the same ones.
        for vm in rollout.plan.vms.iter().filter(|vm| vm.journaled.is_none()) {
            j.append(Entry::Assigned {
                name: vm.name.clone(),
                vmid: vm.vmid,
                node: vm.node.clone(),
            })?;
        }
        Ok(Arc::new(j))
    });
    let journal = match journal {
        Ok(j) => j,
        Err(e) => return refuse_without_journal(&rollout, &events, &e.to_string()),
    };
    let (itx, mut irx) = mpsc::unbounded_channel::<Event>();
    let (pause_all_tx, pause_all_rx) = watch::channel(false);
    let abort = CancellationToken::new();
    let checks = rollout.config.checks.clone();
    let shared = Arc::new(Shared {
        client: rollout.client.clone(),
        clock: rollout.clock,
        ip_rules: IpRules::from_checks(&checks),
        lane: Lane::new(n, checks.mode == CheckMode::Sequential),
        checks,
        rollout_id: rollout.plan.rollout_id.clone(),
        stagger: Stagger::new(rollout.config.rollout.deployment_delay),
        abort: abort.clone(),
        pause_all: pause_all_rx,
        events: itx,
        journal: journal.clone(),
        learned: Learned::default(),
    });
    let planned = rollout.plan.planned();
    let mut record = Record::new(rollout.info(), &planned);
    let emit = |e: Event| {
        let _ = events.send(e);
    };
    emit(Event::Planned {
        rollout: rollout.plan.rollout_id.clone(),
        cluster: rollout.plan.cluster.clone(),
        vms: planned,
    });
    emit(Event::Log {
        vm: None,
        level: Level::Info,
        text: format!(
            "rolling out {n} VM(s) from template '{}' ({} checks, {} between clones)",
            rollout.plan.template_name,
            record_mode(&rollout.config),
            crate::config::format_duration(rollout.config.rollout.deployment_delay)
        ),
    });

    let mut paused: Vec<watch::Sender<bool>> = (0..n).map(|_| watch::channel(false).0).collect();
    let mut kills: Vec<Option<CancellationToken>> = vec![None; n];
    let mut tasks: JoinSet<(usize, Option<Outcome>)> = JoinSet::new();
    let spawn = |tasks: &mut JoinSet<(usize, Option<Outcome>)>,
                 kills: &mut Vec<Option<CancellationToken>>,
                 paused: &mut Vec<watch::Sender<bool>>,
                 i: usize,
                 from: Phase,
                 first_attempt: bool| {
        let kill = CancellationToken::new();
        kills[i] = Some(kill.clone());
        let task = VmTask {
            shared: shared.clone(),
            vm: rollout.plan.vms[i].clone(),
            paused: paused[i].subscribe(),
            phase: from,
            first_attempt,
            started_at: None,
            staggered: false,
            reclones: 0,
            ip: None,
            seen: Default::default(),
        };
        tasks.spawn(async move {
            tokio::select! {
                outcome = task.run(from) => (i, Some(outcome)),
                _ = kill.cancelled() => (i, None),
            }
        });
    };
    for i in 0..n {
        spawn(&mut tasks, &mut kills, &mut paused, i, Phase::Queued, true);
    }

    let mut retry_pending: HashSet<usize> = HashSet::new();
    let mut skip_pending: HashSet<usize> = HashSet::new();
    let mut commands_open = true;
    let mut aborted = false;
    let mut finished_sent = false;
    let mut last_summary: Option<Summary> = None;

    // Applies a VM event to the record, forwards it, and follows state changes with progress.
    let forward = |record: &mut Record, e: Event| {
        record.apply(&e);
        let state_change = matches!(e, Event::VmState { .. });
        let _ = events.send(e);
        if state_change {
            let _ = events.send(Event::Progress(
                record.progress(shared.client.stats().requests_total),
            ));
        }
    };
    let settle = |record: &mut Record, i: usize, state: VmState| {
        let level = match &state {
            VmState::Failed { .. } => Level::Error,
            _ => Level::Warning,
        };
        let (name, vmid) = (rollout.plan.vms[i].name.clone(), rollout.plan.vms[i].vmid);
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
        if let Some(Err(e)) = entry.map(|e| journal.append(e)) {
            let _ = events.send(Event::Log {
                vm: Some(i),
                level: Level::Error,
                text: format!("cannot write the journal: {e}"),
            });
        }
        let text = match &state {
            VmState::Failed { phase, reason } => format!("failed in {phase}: {}", reason.trim()),
            VmState::Skipped { phase } => format!("skipped in {phase}"),
            other => other.label().to_string(),
        };
        forward(
            record,
            Event::VmState {
                vm: i,
                state,
                at: SystemTime::now(),
            },
        );
        let _ = events.send(Event::Log {
            vm: Some(i),
            level,
            text,
        });
    };

    loop {
        tokio::select! {
            Some(e) = irx.recv() => forward(&mut record, e),
            cmd = commands.recv(), if commands_open => match cmd {
                None => {
                    // The watcher is gone (quit): stop gracefully and write the outputs.
                    commands_open = false;
                    if !tasks.is_empty() {
                        aborted = true;
                        abort.cancel();
                    }
                }
                Some(Command::Pause(i)) => if let Some(p) = paused.get(i) { let _ = p.send(true); },
                Some(Command::Resume(i)) => if let Some(p) = paused.get(i) { let _ = p.send(false); },
                Some(Command::PauseAll) => {
                    let _ = pause_all_tx.send(true);
                    emit(Event::Log { vm: None, level: Level::Warning, text: "paused: no new clones or checks until resumed".into() });
                }
                Some(Command::ResumeAll) => {
                    let _ = pause_all_tx.send(false);
                    emit(Event::Log { vm: None, level: Level::Info, text: "resumed".into() });
                }
                Some(Command::Abort) => {
                    if !aborted {
                        aborted = true;
                        abort.cancel();
                        emit(Event::Log { vm: None, level: Level::Warning, text: "aborting: no new work; calls in flight finish, then the outputs are written".into() });
                    }
                }
                Some(Command::Export) => {
                    let s = record.summary(None, aborted);
                    export(&out_dir, &s, &events);
                }
                Some(Command::Retry(i)) if i < n && !aborted => {
                    match record.state(i).cloned() {
                        Some(VmState::Active { phase: Phase::Verified }) => {
                            emit(Event::Log { vm: Some(i), level: Level::Info, text: "already verified; nothing to retry".into() });
                        }
                        Some(VmState::Failed { .. }) | Some(VmState::Skipped { .. }) if kills[i].is_none() => {
                            let phase = record.state(i).map(VmState::phase).unwrap_or(Phase::Queued);
                            let attempt = record.attempts(i) + 1;
                            forward(&mut record, Event::Attempt { vm: i, attempt });
                            emit(Event::Log { vm: Some(i), level: Level::Info, text: format!("retry #{attempt} from {}", retry_from(phase)) });
                            spawn(&mut tasks, &mut kills, &mut paused, i, retry_from(phase), false);
                            finished_sent = false;
                        }
                        Some(_) if kills[i].is_some() => {
                            // Stuck: stop the current attempt, then start again from its phase.
                            retry_pending.insert(i);
                            if let Some(k) = &kills[i] { k.cancel(); }
                        }
                        _ => {}
                    }
                }
                Some(Command::Skip(i)) if i < n => {
                    match (&kills[i], record.state(i)) {
                        (_, Some(VmState::Active { phase: Phase::Verified })) | (_, Some(VmState::Skipped { .. })) => {}
                        (Some(k), _) => { skip_pending.insert(i); k.cancel(); }
                        (None, Some(s)) => {
                            let phase = s.phase();
                            settle(&mut record, i, VmState::Skipped { phase });
                        }
                        (None, None) => {}
                    }
                }
                Some(_) => {}
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                // Everything the task said before it ended comes first.
                while let Ok(e) = irx.try_recv() { forward(&mut record, e); }
                let Ok((i, outcome)) = joined else {
                    // A panicking VM task is a bug; its VM cannot be trusted to a state.
                    continue;
                };
                kills[i] = None;
                let phase = record.state(i).map(VmState::phase).unwrap_or(Phase::Queued);
                match outcome {
                    Some(Outcome::Verified) => shared.lane.pass(i),
                    Some(Outcome::Failed { phase, reason }) => {
                        settle(&mut record, i, VmState::Failed { phase, reason });
                        shared.lane.pass(i);
                    }
                    Some(Outcome::Aborted { .. }) => shared.lane.pass(i),
                    None if skip_pending.remove(&i) => {
                        retry_pending.remove(&i);
                        settle(&mut record, i, VmState::Skipped { phase });
                        shared.lane.pass(i);
                        shared.stagger.release(i);
                    }
                    None if retry_pending.remove(&i) => {
                        let attempt = record.attempts(i) + 1;
                        forward(&mut record, Event::Attempt { vm: i, attempt });
                        emit(Event::Log { vm: Some(i), level: Level::Info, text: format!("retry #{attempt} from {}", retry_from(phase)) });
                        shared.stagger.release(i);
                        spawn(&mut tasks, &mut kills, &mut paused, i, retry_from(phase), false);
                    }
                    None => {}
                }
            },
            else => {}
        }

        if tasks.is_empty() {
            if !finished_sent {
                while let Ok(e) = irx.try_recv() {
                    forward(&mut record, e);
                }
                let summary = record.summary(Some(SystemTime::now()), aborted);
                export(&out_dir, &summary, &events);
                emit(Event::Progress(
                    record.progress(shared.client.stats().requests_total),
                ));
                emit(Event::Finished {
                    summary: Box::new(summary.clone()),
                });
                last_summary = Some(summary);
                finished_sent = true;
            }
            if !rollout.linger || aborted || !commands_open {
                return last_summary
                    .unwrap_or_else(|| record.summary(Some(SystemTime::now()), aborted));
            }
        }
    }
}

/// Without a journal nothing is started (a crash could not be resumed): every VM fails at once.
fn refuse_without_journal(
    rollout: &Rollout,
    events: &mpsc::UnboundedSender<Event>,
    error: &str,
) -> Summary {
    let planned = rollout.plan.planned();
    let mut record = Record::new(rollout.info(), &planned);
    let _ = events.send(Event::Planned {
        rollout: rollout.plan.rollout_id.clone(),
        cluster: rollout.plan.cluster.clone(),
        vms: planned,
    });
    let reason = format!("nothing was started: {error}");
    let _ = events.send(Event::Log {
        vm: None,
        level: Level::Error,
        text: reason.clone(),
    });
    for i in 0..rollout.plan.vms.len() {
        let e = Event::VmState {
            vm: i,
            state: VmState::Failed {
                phase: Phase::Queued,
                reason: reason.clone(),
            },
            at: SystemTime::now(),
        };
        record.apply(&e);
        let _ = events.send(e);
    }
    let summary = record.summary(Some(SystemTime::now()), false);
    let _ = events.send(Event::Finished {
        summary: Box::new(summary.clone()),
    });
    summary
}

fn record_mode(config: &Config) -> &'static str {
    config.checks.mode.as_str()
}

/// Writes the summary files and tells the watchers where (or why not).
fn export(dir: &Path, summary: &Summary, events: &mpsc::UnboundedSender<Event>) {
    match crate::report::write_all(dir, summary) {
        Ok(paths) => {
            let _ = events.send(Event::Exported { paths });
        }
        Err(e) => {
            let _ = events.send(Event::Log {
                vm: None,
                level: Level::Error,
                text: format!("could not write the outputs to {}: {e}", dir.display()),
            });
        }
    }
}
