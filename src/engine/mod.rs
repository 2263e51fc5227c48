//! The rollout itself; knows no terminal. It emits `Event`s and takes `Command`s.
//!
//! How a rollout runs, in order:
//! - `plan` resolves the config against the cluster (ids, nodes, template, resume from the
//!   `journal`), read-only; `run` journals the plan before anything is created.
//! - `coordinator` spawns one task per VM, forwards their events (keeping the `record` the
//!   summary is made from), carries out the watchers' commands and writes the outputs.
//! - `vm` is one VM's state machine, a file per phase; its waits are `poll`'s `Poller`, its
//!   pacing `schedule`'s clone stagger and guest-agent lane, its IP choice `ip`'s rules.
//! - `destroy` removes what a rollout made; `clock` scales every duration for the simulator.

mod addresses;
pub mod clock;
mod clone_slots;
mod coordinator;
pub mod destroy;
pub mod error;
pub mod event;
mod extra_disks;
pub mod hook;
pub mod ip;
pub mod journal;
mod nics;
pub mod plan;
mod poll;
pub mod provision;
pub mod record;
pub mod schedule;
pub mod settings;
mod snippets;
mod source;
mod task_watch;
mod vm;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::pve::Client;
use crate::report::{RolloutInfo, Summary};

pub use clock::Clock;
use coordinator::Coordinator;
pub use error::EngineError;
use event::{Command, Event, Level, Phase, VmState};
use journal::{Entry, Journal};
use plan::Plan;
use record::Record;

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

/// Runs the rollout to its end (or to an abort), writing the outputs on the way out.
/// Returns the final summary; the same summary went out in `Event::Finished`.
pub async fn run(
    rollout: Rollout,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
) -> Summary {
    let journal = match journal_plan(&rollout).await {
        Ok(journal) => journal,
        Err(e) => return refuse_without_journal(&rollout, &events, &e.to_string()),
    };
    let mut coordinator = Coordinator::new(rollout, events, journal);
    coordinator.start();
    coordinator.serve(commands).await
}

/// Opens the journal and records the plan: every id is on disk before any clone is asked
/// for, so a rerun finds the same ones.
async fn journal_plan(rollout: &Rollout) -> Result<Arc<Journal>, journal::JournalError> {
    let journal = Journal::open(&rollout.config.output.dir)?;
    let values = settings::of(&rollout.plan);
    // Queued together, on disk together (one sync); each line's own outcome is awaited.
    let mut queued = vec![journal.submit(Entry::RolloutStarted {
        rollout: rollout.plan.rollout_id.clone(),
        settings: settings::digest(&values),
        values: Some(values),
    })];
    for vm in rollout.plan.vms.iter().filter(|vm| vm.journaled.is_none()) {
        queued.push(
            journal.submit(Entry::Assigned {
                name: vm.name.clone(),
                vmid: vm.vmid,
                node: vm.node.clone(),
                address: vm.static_address().map(|a| a.to_string()),
                nic_addresses: vm
                    .spec
                    .networks
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter_map(|(i, nic)| match nic.address {
                        crate::config::Addressing::Static(host) => {
                            Some((format!("net{i}"), host.to_string()))
                        }
                        _ => None,
                    })
                    .collect(),
            }),
        );
    }
    for on_disk in queued {
        on_disk.await?;
    }
    Ok(Arc::new(journal))
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

/// Writes the summary files (each fsynced, on a blocking thread: a slow disk never stalls the
/// async threads) and tells the watchers where (or why not).
pub(crate) async fn export(dir: &Path, summary: Summary, events: &mpsc::UnboundedSender<Event>) {
    let to = dir.to_path_buf();
    let written = tokio::task::spawn_blocking(move || crate::report::write_all(&to, &summary))
        .await
        .unwrap_or_else(|e| {
            Err(crate::report::ReportError::Write {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e),
            })
        });
    match written {
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
