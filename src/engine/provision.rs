//! The `on_verified` hook of one VM (its `provisioning` phase) and the rollout's `on_finished`
//! hook: what they are told (placeholders, the per-VM inventory), how their output reaches the
//! VM's log, and the journal lines that let a resumed rollout skip a hook that already ran.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::config::{HooksConfig, Placeholder};
use crate::report::{HookReport, VmSummary};

use super::event::{Command, Event, Level, VmIndex};
use super::hook::{self, HookCommand, HookLimits, HookResult, HookSlots, Stream};
use super::journal::{Entry, History, Journal};

/// What the VM tasks share to run `on_verified`.
#[derive(Debug)]
pub struct Provisioner {
    command: Vec<String>,
    slots: HookSlots,
    timeout: Duration,
    output_dir: PathBuf,
    rollout_id: String,
    /// `(name, vmid)` whose hook ended ok (or was skipped) in an earlier run of this rollout.
    done_before: HashSet<(String, u32)>,
}

/// The VM a hook runs for.
#[derive(Debug, Clone, Copy)]
pub struct HookVm<'a> {
    pub index: VmIndex,
    pub name: &'a str,
    pub vmid: u32,
    pub node: &'a str,
    pub ip: Option<&'a str>,
}

/// How `on_verified` ended for a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// Ran and exited 0, or had done so in an earlier run.
    Done,
    /// Non-zero exit, timeout, could not start: the VM becomes `hook-failed` with this reason.
    Failed(String),
    /// The rollout was aborted while it ran (its process group was ended).
    Aborted,
    /// The journal could not be written.
    Journal(String),
}

impl Provisioner {
    /// `None` when no `on_verified` hook is configured. `history` is the journal as the run
    /// found it (which VMs' hooks are done).
    pub fn new(
        hooks: &HooksConfig,
        output_dir: &Path,
        rollout_id: &str,
        history: &History,
    ) -> Option<Provisioner> {
        let command = hooks.on_verified.clone()?;
        let done_before = history
            .vms
            .iter()
            .filter(|(_, r)| r.hook_done)
            .map(|(name, r)| (name.clone(), r.vmid))
            .collect();
        Some(Provisioner {
            command,
            slots: HookSlots::new(hooks.max_parallel),
            timeout: hooks.timeout,
            output_dir: output_dir.to_path_buf(),
            rollout_id: rollout_id.to_string(),
            done_before,
        })
    }

    /// Runs the hook for `vm` (unless it is done from an earlier run), journaled before and
    /// after; its output goes to the VM's log line by line.
    pub async fn run(
        &self,
        vm: HookVm<'_>,
        abort: &CancellationToken,
        journal: &Journal,
        events: &UnboundedSender<Event>,
    ) -> Provisioned {
        let send = |e: Event| {
            let _ = events.send(e);
        };
        let log = |level: Level, text: String| {
            send(Event::Log {
                vm: Some(vm.index),
                level,
                text,
            })
        };
        let report = |state: &str, result: Option<&HookResult>| Event::Hook {
            vm: vm.index,
            hook: HookReport {
                state: state.to_string(),
                exit_code: result.and_then(HookResult::exit_code),
                result: result.map(HookResult::describe),
                tail: result.map(|r| r.tail.clone()).unwrap_or_default(),
            },
        };
        if self.done_before.contains(&(vm.name.to_string(), vm.vmid)) {
            log(
                Level::Info,
                "on_verified hook: done in an earlier run; not run again".to_string(),
            );
            send(report("done-before", None));
            return Provisioned::Done;
        }
        let (name, vmid) = (vm.name.to_string(), vm.vmid);
        let inventory = match self.inventory(vm) {
            Ok(path) => path,
            Err(e) => return Provisioned::Failed(format!("cannot write its inventory: {e}")),
        };
        let command = HookCommand::new(
            &self.command,
            &[
                (Placeholder::Name, vm.name.to_string()),
                (Placeholder::Vmid, vm.vmid.to_string()),
                (Placeholder::Ip, vm.ip.unwrap_or_default().to_string()),
                (Placeholder::Node, vm.node.to_string()),
                (Placeholder::Inventory, inventory.display().to_string()),
                (
                    Placeholder::Summary,
                    summary_path(&self.output_dir).display().to_string(),
                ),
                (
                    Placeholder::OutputDir,
                    self.output_dir.display().to_string(),
                ),
            ],
        );
        if let Err(e) = journal
            .append(Entry::HookStarted {
                name: name.clone(),
                vmid,
            })
            .await
        {
            return Provisioned::Journal(e.to_string());
        }
        send(report("running", None));
        log(
            Level::Info,
            format!("on_verified hook: {}", command.argv.join(" ")),
        );
        let result = self
            .slots
            .run(
                &command,
                HookLimits::new(self.timeout),
                abort,
                |stream, line| log(Level::Info, output_line(stream, line)),
            )
            .await;
        if result.end == hook::HookEnd::Cancelled {
            // Cut off: not journaled as ended, so a resumed run runs it again.
            log(
                Level::Warning,
                "on_verified hook: stopped by the abort".to_string(),
            );
            send(report("aborted", Some(&result)));
            return Provisioned::Aborted;
        }
        let ok = result.succeeded();
        if let Err(e) = journal.append(Entry::HookEnded { name, vmid, ok }).await {
            return Provisioned::Journal(e.to_string());
        }
        if ok {
            log(Level::Success, "on_verified hook: exit 0".to_string());
            send(report("succeeded", Some(&result)));
            Provisioned::Done
        } else {
            send(report("failed", Some(&result)));
            Provisioned::Failed(failure(&result))
        }
    }

    /// The operator went on without the hook: journaled so a resumed run does not run it.
    /// Returns the event that says so.
    pub fn skip(vm: HookVm<'_>, journal: &Journal) -> Result<Event, String> {
        // Queued in order now; its sync is confirmed in the background (the caller cannot wait).
        let on_disk = journal.submit(Entry::HookSkipped {
            name: vm.name.to_string(),
            vmid: vm.vmid,
        });
        tokio::spawn(async move {
            if let Err(e) = on_disk.await {
                tracing::error!("cannot write the journal: {e}");
            }
        });
        Ok(Event::Hook {
            vm: vm.index,
            hook: HookReport {
                state: "skipped".to_string(),
                exit_code: None,
                result: None,
                tail: Vec::new(),
            },
        })
    }

    fn inventory(&self, vm: HookVm<'_>) -> Result<PathBuf, crate::report::ReportError> {
        let mut summary = VmSummary::planned(vm.name, vm.vmid, vm.node);
        summary.ip = vm.ip.map(str::to_string);
        crate::report::write_vm_inventory(&self.output_dir, &self.rollout_id, &summary)
    }
}

/// `hook-failed` reason: how it ended and its last lines.
fn failure(result: &HookResult) -> String {
    let mut reason = format!("on_verified hook failed: {}", result.describe());
    if !result.tail.is_empty() {
        reason.push_str("; last lines:\n");
        reason.push_str(&result.tail.join("\n"));
    }
    reason
}

/// A hook's output line as the VM's log shows it.
fn output_line(stream: Stream, line: &str) -> String {
    match stream {
        Stream::Stdout => format!("hook | {line}"),
        Stream::Stderr => format!("hook ! {line}"),
    }
}

fn summary_path(output_dir: &Path) -> PathBuf {
    output_dir.join("summary.json")
}

/// `on_finished` once the outputs are written. After an abort it does not run; an `Abort` (or
/// the watchers going) while it runs ends its process group.
pub(super) async fn after_the_outputs(
    hooks: &HooksConfig,
    out_dir: &Path,
    aborted: bool,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<Command>,
    events: &UnboundedSender<Event>,
) -> Option<HookReport> {
    hooks.on_finished.as_ref()?;
    if aborted {
        let _ = events.send(Event::Log {
            vm: None,
            level: Level::Warning,
            text: "on_finished hook: not run (the rollout was aborted)".to_string(),
        });
        return None;
    }
    let stop = CancellationToken::new();
    let run = on_finished(hooks, out_dir, &stop, events);
    tokio::pin!(run);
    let mut listening = true;
    loop {
        tokio::select! {
            report = &mut run => return report,
            cmd = commands.recv(), if listening => match cmd {
                Some(Command::Abort) | None => {
                    listening = false;
                    stop.cancel();
                }
                Some(_) => {}
            },
        }
    }
}

/// Runs `on_finished` once, after the outputs are written: its output goes to the rollout's
/// log; the result is what the summary records.
async fn on_finished(
    hooks: &HooksConfig,
    output_dir: &Path,
    abort: &CancellationToken,
    events: &UnboundedSender<Event>,
) -> Option<HookReport> {
    let template = hooks.on_finished.as_ref()?;
    let log = |level: Level, text: String| {
        let _ = events.send(Event::Log {
            vm: None,
            level,
            text,
        });
    };
    let command = HookCommand::new(
        template,
        &[
            (
                Placeholder::Inventory,
                output_dir.join("inventory.ini").display().to_string(),
            ),
            (
                Placeholder::Summary,
                summary_path(output_dir).display().to_string(),
            ),
            (Placeholder::OutputDir, output_dir.display().to_string()),
        ],
    );
    log(
        Level::Info,
        format!("on_finished hook: {}", command.argv.join(" ")),
    );
    let result = hook::run(
        &command,
        HookLimits::new(hooks.timeout),
        abort,
        |stream, line| {
            log(
                Level::Info,
                format!("on_finished {}", output_line(stream, line)),
            )
        },
    )
    .await;
    let ok = result.succeeded();
    if ok {
        log(Level::Success, "on_finished hook: exit 0".to_string());
    } else {
        log(
            Level::Error,
            format!("on_finished hook failed: {}", result.describe()),
        );
    }
    Some(HookReport {
        state: if ok { "succeeded" } else { "failed" }.to_string(),
        exit_code: result.exit_code(),
        result: Some(result.describe()),
        tail: result.tail,
    })
}
