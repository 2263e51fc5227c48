//! Between the engine and whoever watches it (dashboard or headless lines): every event is
//! recorded as a `tracing` record (the log file) and, with `--events ndjson`, written to stdout
//! as one JSON line, before it is passed on.

use std::io::Write;
use std::time::SystemTime;

use clap::ValueEnum;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use pve_rollout::engine::event::{Event, Level, PlannedVm, VmState};
use pve_rollout::headless::json::EventEncoder;

/// The `tracing` target of the engine's events: the log file records it, the terminal's
/// diagnostics leave it out (the dashboard or the headless lines already show these).
pub const EVENTS_TARGET: &str = "pve_rollout::events";

/// `--events`: the machine-readable stream on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// One JSON object per engine event, one per line (schema version 1; see the README).
    Ndjson,
}

/// Passes every event from `from` to `to`, recording it on the way. Ends when the engine does.
pub async fn tee(
    mut from: UnboundedReceiver<Event>,
    to: UnboundedSender<Event>,
    format: Option<EventsFormat>,
) {
    let mut encoder = EventEncoder::default();
    let mut vms: Vec<PlannedVm> = Vec::new();
    let mut stdout_open = format.is_some();
    while let Some(event) = from.recv().await {
        record(&event, &mut vms);
        if stdout_open {
            let line = encoder.line(&event, SystemTime::now());
            let mut stdout = std::io::stdout().lock();
            // A reader that went away (`| head`) ends the stream, not the rollout.
            stdout_open = stdout
                .write_all(line.as_bytes())
                .and_then(|()| stdout.flush())
                .is_ok();
        }
        // A watcher that is gone (the dashboard after a forced quit) needs nothing more.
        let _ = to.send(event);
    }
}

/// The event as a `tracing` record.
fn record(event: &Event, vms: &mut Vec<PlannedVm>) {
    let name = |vm: usize| vms.get(vm).map_or("?", |v| v.name.as_str()).to_string();
    match event {
        Event::Planned {
            rollout,
            cluster,
            vms: planned,
        } => {
            *vms = planned.clone();
            tracing::info!(target: EVENTS_TARGET, %rollout, %cluster, vms = planned.len(), "planned");
        }
        Event::VmState { vm, state, .. } => match state {
            VmState::Failed { phase, reason } => {
                tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), %phase, "failed: {reason}");
            }
            other => {
                tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), phase = %other.phase(), "{}", other.label());
            }
        },
        Event::Log { vm, level, text } => {
            let vm = vm.map(name).unwrap_or_default();
            match level {
                Level::Error => tracing::error!(target: EVENTS_TARGET, %vm, "{text}"),
                Level::Warning => tracing::warn!(target: EVENTS_TARGET, %vm, "{text}"),
                Level::Info | Level::Success => {
                    tracing::info!(target: EVENTS_TARGET, %vm, level = level.as_str(), "{text}")
                }
            }
        }
        Event::VmIp { vm, ip, candidates } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), %ip, ?candidates, "IP");
        }
        Event::VmGuest { vm, uname, os } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), ?uname, ?os, "guest");
        }
        Event::Check { vm, check } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), check = %check.name, passed = check.passed, exit_code = ?check.exit_code, "guest check");
        }
        Event::Hook { vm, hook } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), state = %hook.state, exit_code = ?hook.exit_code, "on_verified hook");
        }
        Event::TaskLog { vm, lines } => {
            tracing::debug!(target: EVENTS_TARGET, vm = %name(*vm), ?lines, "task log");
        }
        Event::CopyProgress { vm, percent, eta_s } => {
            tracing::debug!(target: EVENTS_TARGET, vm = %name(*vm), percent, ?eta_s, "copy progress");
        }
        Event::VmNics { vm, nics } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), ?nics, "NICs");
        }
        Event::VmReported { vm, addresses } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), "no usable IP yet; the agent reports: {addresses}");
        }
        Event::Progress(p) => tracing::debug!(target: EVENTS_TARGET, ?p, "progress"),
        Event::Attempt { vm, attempt } => {
            tracing::info!(target: EVENTS_TARGET, vm = %name(*vm), attempt, "attempt");
        }
        Event::Exported { paths } => tracing::info!(target: EVENTS_TARGET, ?paths, "exported"),
        Event::Finished { summary } => {
            tracing::info!(target: EVENTS_TARGET, tally = %summary.tally(), aborted = summary.rollout.aborted, "finished");
        }
    }
}
