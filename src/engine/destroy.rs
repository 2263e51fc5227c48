//! `destroy`: remove exactly the VMs this rollout created. Candidates come from the journal (ids
//! it assigned), the config (names) and the tag; each is then judged by its own config, and only
//! a VM carrying this rollout's marker line is ever stopped or deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::Config;
use crate::pve::{Client, ErrorClass, ResourceType, Tags, TaskState, Upid};

use super::clock::Clock;
use super::error::EngineError;
use super::journal::{self, Entry, History, Journal, Step};
use super::plan::{TAG, is_ours};
use super::poll::{Attempt, Backoff, Poller};

/// A VM that will be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    pub status: String,
}

/// What `destroy` found: what it will remove, and what it leaves alone and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub targets: Vec<Target>,
    pub spared: Vec<String>,
}

/// Finds this rollout's VMs. Read-only.
pub async fn find(client: &Client, config: &Config) -> Result<Found, EngineError> {
    let rollout_id = &config.rollout.name;
    let journal_path = journal::path_in(&config.output.dir);
    let history = History::read(&journal_path)?;
    if let Some(other) = history.rollout.as_deref().filter(|r| *r != rollout_id) {
        return Err(EngineError::Preflight(vec![format!(
            "output.dir: the journal {} belongs to rollout '{other}', not '{rollout_id}'",
            journal_path.display()
        )]));
    }
    let journal_ids: BTreeSet<u32> = history
        .vms
        .values()
        .filter(|r| r.step != Step::Destroyed)
        .map(|r| r.vmid)
        .collect();
    let names: BTreeSet<String> = config.vms().into_iter().map(|v| v.name).collect();

    let mut found = Found::default();
    for r in client.cluster_resources(Some(ResourceType::Vm)).await? {
        let (Some(vmid), Some(node)) = (r.vmid, r.node.clone()) else {
            continue;
        };
        if !r.is_qemu() || r.template {
            continue;
        }
        let tagged = r
            .tags
            .as_deref()
            .is_some_and(|t| Tags::parse(t).contains(TAG));
        let named = r.name.as_ref().is_some_and(|n| names.contains(n));
        // The resources list lags behind new VMs (no name yet): look at those too.
        let unseen = r.name.is_none();
        let in_journal = journal_ids.contains(&vmid);
        if !(in_journal || tagged || named || unseen) {
            continue;
        }
        let cfg = match client.vm_config(&node, vmid).await {
            Ok(cfg) => cfg,
            Err(e) if e.class == ErrorClass::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let name = cfg.get("name").unwrap_or("(no name)").to_string();
        if is_ours(&cfg, rollout_id) {
            let status = client
                .vm_status(&node, vmid)
                .await
                .map(|s| s.status)
                .unwrap_or_else(|_| "unknown".into());
            found.targets.push(Target {
                name,
                vmid,
                node,
                status,
            });
        } else if in_journal && cfg.is_being_cloned() {
            found.spared.push(format!(
                "VM {vmid} on {node} is still being cloned and carries no marker yet; run destroy again once its clone ended"
            ));
        } else if in_journal || named {
            found.spared.push(format!(
                "VM {vmid} '{name}' on {node} does not carry the marker of rollout '{rollout_id}'; left alone"
            ));
        }
    }
    found.targets.sort_by_key(|t| t.vmid);
    Ok(found)
}

/// How removing one VM went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub target: Target,
    pub result: Result<(), String>,
}

/// Stops (when running) and deletes with purge every target, one after the other, waiting for
/// each task; each removal is journaled. Holding the open journal keeps a deploy of the same
/// rollout from running meanwhile (see [`Journal::open`]).
pub async fn remove(
    client: &Client,
    journal: &Journal,
    clock: Clock,
    targets: Vec<Target>,
) -> Vec<Removed> {
    let mut out = Vec::new();
    for target in targets {
        let mut result = remove_one(client, clock, &target).await;
        if result.is_ok()
            && let Err(e) = journal
                .append(Entry::Destroyed {
                    name: target.name.clone(),
                    vmid: target.vmid,
                })
                .await
        {
            result = Err(format!("removed, but {e}"));
        }
        out.push(Removed { target, result });
    }
    out
}

pub(super) async fn remove_one(client: &Client, clock: Clock, t: &Target) -> Result<(), String> {
    let status = match client.vm_status(&t.node, t.vmid).await {
        Ok(s) => s,
        // Gone already (removed by hand, or a second destroy racing this one).
        Err(e) if e.class == ErrorClass::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let mut stopped = status.is_stopped();
    let mut asked = 0;
    while !stopped {
        asked += 1;
        match client.stop(&t.node, t.vmid).await {
            Ok(upid) => {
                if let TaskState::Failed(text) = wait_task(client, clock, &upid).await? {
                    return Err(format!("stop: {text}"));
                }
                stopped = true;
            }
            // The answer was lost (596): the stop may still run. Stopping a stopped VM is
            // harmless, but look first.
            Err(e) if e.outcome_unknown && asked < 3 => {
                clock.sleep(Duration::from_secs(5)).await;
                stopped = client
                    .vm_status(&t.node, t.vmid)
                    .await
                    .map_err(|e| format!("stop: {e}"))?
                    .is_stopped();
            }
            Err(e) => return Err(format!("stop: {e}")),
        }
    }
    let mut asked = 0;
    let upid = loop {
        asked += 1;
        match client.delete_vm(&t.node, t.vmid, true).await {
            Ok(upid) => break upid,
            Err(e) if e.class == ErrorClass::NotFound => return Ok(()),
            // The answer was lost (596): the delete may still run. It did once the VM is gone;
            // only a VM still there after a while is asked for again.
            Err(e) if e.outcome_unknown && asked < 3 => {
                if gone_within(client, clock, t, Duration::from_secs(60)).await? {
                    return Ok(());
                }
            }
            Err(e) => return Err(format!("delete: {e}")),
        }
    };
    match wait_task(client, clock, &upid).await? {
        // A delete asked for twice: the other one removed it first.
        state if state.failure_class() == Some(ErrorClass::NotFound) => Ok(()),
        TaskState::Failed(text) => Err(format!("delete: {text}")),
        _ => Ok(()),
    }
}

/// Whether the VM disappears within `grace` (rollout time).
async fn gone_within(
    client: &Client,
    clock: Clock,
    t: &Target,
    grace: Duration,
) -> Result<bool, String> {
    let backoff = Backoff::growing(Duration::from_secs(1), 1.5, Duration::from_secs(5));
    let mut poll = Poller::new(clock, clock.deadline(grace), backoff);
    loop {
        poll.due().await?;
        let attempt = match client.vm_status(&t.node, t.vmid).await {
            Err(e) if e.class == ErrorClass::NotFound => Attempt::Done(true),
            _ => Attempt::Pending(String::new()),
        };
        if let Some(gone) = poll.answer(attempt, |_| Ok::<_, String>(false))? {
            return Ok(gone);
        }
    }
}

/// Polls a task until it stops (10 minutes at most, rollout time).
async fn wait_task(client: &Client, clock: Clock, upid: &Upid) -> Result<TaskState, String> {
    let backoff = Backoff::growing(Duration::from_millis(300), 1.5, Duration::from_secs(3));
    let mut poll = Poller::new(clock, clock.deadline(Duration::from_secs(600)), backoff)
        .starting_at(Duration::from_millis(300));
    loop {
        poll.due().await?;
        let attempt = match client.task_status(upid).await {
            Ok(s) if s.state != TaskState::Running => Attempt::Done(s.state),
            Ok(_) => Attempt::Pending(String::new()),
            Err(e) if e.class.is_transient() => Attempt::Pending(String::new()),
            Err(e) => return Err(format!("task {}: {e}", upid.0)),
        };
        let timed_out = |_| Err(format!("task {} still running after 10m", upid.0));
        if let Some(state) = poll.answer(attempt, timed_out)? {
            return Ok(state);
        }
    }
}
