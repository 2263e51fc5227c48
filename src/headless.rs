//! The headless runner: the engine's events as the original wait_for_vm.sh flow's coloured
//! lines (`[INFO]`, `[SUCCESS]`, `[WARNING]`, `[ERROR]`, each naming the VM), a progress line now
//! and then, a final table, and Ctrl-C handling (first = abort gracefully and write the outputs, second =
//! stop now); SIGTERM and SIGHUP (a CI job's time limit, a systemd stop, a closed SSH session)
//! count as Ctrl-C.

use std::io::Write;
use std::path::PathBuf;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::engine::event::{Command, Event, Level, Phase, PlannedVm, Progress, VmState};
use crate::report::{Summary, format_elapsed};

pub mod json;

/// Exit code when the operator stopped the run with a second Ctrl-C (or signal): 128 + SIGINT,
/// as shells report it.
pub const EXIT_FORCED: i32 = 130;
/// Every VM verified, but the `on_finished` hook failed.
pub const EXIT_ON_FINISHED_FAILED: i32 = 4;

/// Exit code of a rollout aborted (Ctrl-C, SIGTERM, SIGHUP) before every VM was verified: the
/// outputs were written, and the same `deploy` resumes it.
pub const EXIT_ABORTED: i32 = 5;

/// What asked the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    CtrlC,
    Terminate,
    Hangup,
}

impl Interrupt {
    fn name(self) -> &'static str {
        match self {
            Interrupt::CtrlC => "Ctrl-C",
            Interrupt::Terminate => "SIGTERM",
            Interrupt::Hangup => "SIGHUP",
        }
    }
}

/// Ctrl-C, SIGTERM and SIGHUP, each time one comes, until `to` is gone.
pub async fn forward_interrupts(to: UnboundedSender<Interrupt>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            let got = tokio::select! {
                r = tokio::signal::ctrl_c() => match r {
                    Ok(()) => Interrupt::CtrlC,
                    Err(_) => return,
                },
                _ = term.recv() => Interrupt::Terminate,
                _ = hangup.recv() => Interrupt::Hangup,
            };
            if to.send(got).is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    while tokio::signal::ctrl_c().await.is_ok() {
        if to.send(Interrupt::CtrlC).is_err() {
            return;
        }
    }
}

/// Print a progress line at least every this many `Progress` events, even when no VM settled.
const PROGRESS_EVERY: u64 = 10;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

fn level_color(level: Level) -> &'static str {
    match level {
        Level::Info => "\x1b[34m",
        Level::Success => "\x1b[32m",
        Level::Warning => "\x1b[33m",
        Level::Error => "\x1b[31m",
    }
}

/// Colour by default on a terminal; `NO_COLOR` (any non-empty value) turns it off, then
/// `CLICOLOR_FORCE` (non-empty, not `0`) turns it on even when piped; `TERM=dumb` turns it off.
pub fn color_enabled(stdout_is_tty: bool) -> bool {
    color_enabled_with(stdout_is_tty, |name| std::env::var(name).ok())
}

/// `color_enabled` with the environment passed in.
pub fn color_enabled_with(stdout_is_tty: bool, env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if set("NO_COLOR").is_some() {
        return false;
    }
    if set("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
        return true;
    }
    stdout_is_tty && env("TERM").as_deref() != Some("dumb")
}

/// Turns events into lines on `out`.
pub struct Printer<W: Write> {
    out: W,
    color: bool,
    vms: Vec<PlannedVm>,
    ips: Vec<Option<String>>,
    progress_events: u64,
    /// (verified, failed, skipped) when the last progress line was printed.
    last_settled: Option<(usize, usize, usize)>,
    exported: Vec<PathBuf>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, color: bool) -> Printer<W> {
        Printer {
            out,
            color,
            vms: Vec::new(),
            ips: Vec::new(),
            progress_events: 0,
            last_settled: None,
            exported: Vec::new(),
        }
    }

    /// The writer back (tests read what was printed).
    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Planned {
                rollout,
                cluster,
                vms,
            } => {
                self.vms = vms.clone();
                self.ips = vec![None; vms.len()];
                self.line(
                    Level::Info,
                    None,
                    &format!("rollout {rollout} on {cluster}: {} VMs", vms.len()),
                );
                for vm in vms {
                    self.line(
                        Level::Info,
                        Some(vm.index),
                        &format!("planned on {}", vm.node),
                    );
                }
            }
            Event::VmState { vm, state, .. } => self.state(*vm, state),
            Event::Log { vm, level, text } => self.line(*level, *vm, text),
            // The engine logs the IP with its candidates; keep it for the final table.
            Event::VmIp { vm, ip, .. } => {
                if let Some(slot) = self.ips.get_mut(*vm) {
                    *slot = Some(ip.clone());
                }
            }
            Event::VmGuest { vm, uname, os } => {
                let parts: Vec<&str> = [os.as_deref(), uname.as_deref()]
                    .into_iter()
                    .flatten()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if !parts.is_empty() {
                    self.line(
                        Level::Info,
                        Some(*vm),
                        &format!("guest: {}", parts.join("; ")),
                    );
                }
            }
            // Task logs, copy percentages, checks and hooks are for the dashboard; failures, and
            // every check's and hook's results and output, reach us as Log lines, the rollout's
            // ETA as part of the progress line.
            Event::TaskLog { .. }
            | Event::CopyProgress { .. }
            | Event::Check { .. }
            | Event::Hook { .. } => {}
            Event::VmNics { vm, nics } if nics.len() > 1 => {
                let nics: Vec<String> = nics.iter().map(|n| n.describe()).collect();
                self.line(
                    Level::Info,
                    Some(*vm),
                    &format!("NICs: {}", nics.join("; ")),
                )
            }
            Event::VmNics { .. } => {}
            Event::VmReported { vm, addresses } => self.line(
                Level::Info,
                Some(*vm),
                &format!("no usable IP yet; the agent reports: {addresses}"),
            ),
            Event::Progress(progress) => self.progress(progress),
            Event::Attempt { vm, attempt } => {
                self.line(
                    Level::Info,
                    Some(*vm),
                    &format!("retrying (attempt {attempt})"),
                );
            }
            Event::Exported { paths } => self.exported = paths.clone(),
            Event::Finished { summary } => self.finished(summary),
        }
        let _ = self.out.flush();
    }

    /// Tells the operator what the first Ctrl-C (or signal) does.
    pub fn aborting(&mut self, by: Interrupt) {
        let text = match by {
            Interrupt::CtrlC => "aborting: no new work starts, calls in flight finish, then the \
                                 outputs are written. Press Ctrl-C again to stop now."
                .to_string(),
            other => format!(
                "{} received; aborting: no new work starts, calls in flight finish, then the \
                 outputs are written. A second signal (or Ctrl-C) stops at once.",
                other.name()
            ),
        };
        self.line(Level::Warning, None, &text);
        let _ = self.out.flush();
    }

    fn name(&self, vm: usize) -> String {
        match self.vms.iter().find(|p| p.index == vm) {
            Some(p) => format!("{} ({})", p.name, p.vmid),
            None => format!("vm #{vm}"),
        }
    }

    fn line(&mut self, level: Level, vm: Option<usize>, text: &str) {
        let tag = format!("[{}]", level.as_str());
        let tag = if self.color {
            format!("{}{tag}{RESET}", level_color(level))
        } else {
            tag
        };
        let _ = match vm {
            Some(vm) => {
                let name = self.name(vm);
                writeln!(self.out, "{tag} {name}: {text}")
            }
            None => writeln!(self.out, "{tag} {text}"),
        };
    }

    /// Phase changes and pauses. Verified, failed and skipped come as the engine's own
    /// SUCCESS/ERROR/WARNING lines (with the details), so they are not printed twice.
    fn state(&mut self, vm: usize, state: &VmState) {
        let (level, text) = match state {
            VmState::Active {
                phase: Phase::Verified,
            }
            | VmState::Failed { .. }
            | VmState::Skipped { .. }
            | VmState::Aborted { .. }
            | VmState::HookFailed { .. } => return,
            VmState::Active { phase } => (Level::Info, phase.as_str().to_string()),
            VmState::Paused { phase } => (Level::Warning, format!("paused (in {phase})")),
        };
        self.line(level, Some(vm), &text);
    }

    /// A progress line when a VM settled since the last one, or every `PROGRESS_EVERY` events.
    fn progress(&mut self, p: &Progress) {
        self.progress_events += 1;
        let settled = (p.verified, p.failed, p.skipped);
        let changed = self.last_settled.is_some_and(|last| last != settled)
            || (self.last_settled.is_none() && settled != (0, 0, 0));
        if !changed && !self.progress_events.is_multiple_of(PROGRESS_EVERY) {
            return;
        }
        self.last_settled = Some(settled);
        let mut text = format!(
            "progress: {}/{} verified, {} failed, {} skipped, {} in flight, {} queued, {} paused; \
             {} API requests",
            p.verified, p.total, p.failed, p.skipped, p.in_flight, p.queued, p.paused, p.requests
        );
        if let Some(eta) = p.eta_s {
            text.push_str(&format!(
                "; ETA {}",
                format_elapsed(std::time::Duration::from_secs(eta))
            ));
        }
        self.line(Level::Info, None, &text);
    }

    fn finished(&mut self, summary: &Summary) {
        let tally = summary.tally();
        let (level, text) = if summary.rollout.aborted {
            (Level::Warning, format!("rollout aborted: {tally}"))
        } else if exit_code(summary) == 0 {
            (Level::Success, format!("rollout finished: {tally}"))
        } else {
            (Level::Error, format!("rollout finished: {tally}"))
        };
        self.line(level, None, &text);
        self.table(summary);
        if !self.exported.is_empty() {
            let _ = writeln!(self.out, "Outputs:");
            for path in &self.exported {
                let _ = writeln!(self.out, "  {}", path.display());
            }
        }
    }

    fn table(&mut self, summary: &Summary) {
        let header = ["NAME", "VMID", "NODE", "STATE", "IP", "ATTEMPTS", "TIME"];
        let rows: Vec<[String; 7]> = summary
            .vms
            .iter()
            .map(|vm| {
                [
                    vm.name.clone(),
                    vm.vmid.to_string(),
                    vm.node.clone(),
                    vm.state.clone(),
                    vm.ip.clone().unwrap_or_else(|| "-".to_string()),
                    vm.attempts.to_string(),
                    vm.elapsed().map_or("-".to_string(), format_elapsed),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header_cells: Vec<String> = header
            .iter()
            .zip(widths)
            .map(|(h, w)| format!("{h:<w$}"))
            .collect();
        let header_line = header_cells.join("  ");
        let header_line = header_line.trim_end();
        let _ = if self.color {
            writeln!(self.out, "{BOLD}{header_line}{RESET}")
        } else {
            writeln!(self.out, "{header_line}")
        };
        for row in rows {
            let mut cells: Vec<String> = Vec::with_capacity(7);
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                let padded = format!("{cell:<w$}");
                // Pad first, colour after, so escape codes do not break the columns.
                let color = match (i, cell.as_str()) {
                    (3, "verified") => Some(Level::Success),
                    (3, "failed") => Some(Level::Error),
                    (3, "skipped" | "paused") => Some(Level::Warning),
                    _ => None,
                };
                cells.push(match color {
                    Some(level) if self.color => {
                        format!(
                            "{}{cell}{RESET}{}",
                            level_color(level),
                            &padded[cell.len()..]
                        )
                    }
                    _ => padded,
                });
            }
            let _ = writeln!(self.out, "{}", cells.join("  ").trim_end());
        }
    }
}

/// 0 when every VM verified, [`EXIT_ABORTED`] when an abort cut the rollout short, 1
/// otherwise.
pub fn exit_code(summary: &Summary) -> i32 {
    if summary.vms.iter().all(|vm| vm.state == "verified") {
        if summary.on_finished.as_ref().is_some_and(|h| h.failed()) {
            EXIT_ON_FINISHED_FAILED
        } else {
            0
        }
    } else if summary.rollout.aborted {
        EXIT_ABORTED
    } else {
        1
    }
}

/// How a headless run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadlessOutcome {
    /// 0 all verified, 1 some failed or skipped (or the engine stopped without a summary),
    /// `EXIT_ABORTED` after an abort, `EXIT_FORCED` after a second Ctrl-C or signal.
    pub exit_code: i32,
    /// The summary from `Finished`, if it came.
    pub summary: Option<Summary>,
    /// The operator asked to abort (first Ctrl-C).
    pub aborted: bool,
    /// The operator stopped it at once (second Ctrl-C); outputs may not have been written.
    pub forced: bool,
}

/// Prints every event until `Finished`; the first Ctrl-C, SIGTERM or SIGHUP sends
/// `Command::Abort`, the second returns at once.
pub async fn run<W: Write>(
    events: UnboundedReceiver<Event>,
    commands: UnboundedSender<Command>,
    out: W,
    color: bool,
) -> HeadlessOutcome {
    let (interrupt_tx, interrupts) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(forward_interrupts(interrupt_tx));
    let outcome = run_with_interrupts(events, commands, out, color, interrupts).await;
    watcher.abort();
    outcome
}

/// `run` with the Ctrl-C presses and signals coming from `interrupts` (so tests can send them).
pub async fn run_with_interrupts<W: Write>(
    mut events: UnboundedReceiver<Event>,
    commands: UnboundedSender<Command>,
    out: W,
    color: bool,
    mut interrupts: UnboundedReceiver<Interrupt>,
) -> HeadlessOutcome {
    let mut printer = Printer::new(out, color);
    let mut aborted = false;
    let mut interrupts_open = true;
    loop {
        tokio::select! {
            // Events first: what already happened is printed before reacting to a key.
            biased;
            event = events.recv() => match event {
                Some(event) => {
                    printer.event(&event);
                    if let Event::Finished { summary } = event {
                        return HeadlessOutcome {
                            exit_code: exit_code(&summary),
                            summary: Some(*summary),
                            aborted,
                            forced: false,
                        };
                    }
                }
                None => {
                    printer.line(Level::Error, None, "the engine stopped without a summary");
                    let _ = printer.out.flush();
                    return HeadlessOutcome { exit_code: 1, summary: None, aborted, forced: false };
                }
            },
            pressed = interrupts.recv(), if interrupts_open => match pressed {
                Some(by) if !aborted => {
                    aborted = true;
                    // The engine may already be gone; then Finished or the closed channel ends us.
                    let _ = commands.send(Command::Abort);
                    printer.aborting(by);
                }
                Some(_) => {
                    printer.line(Level::Error, None, "stopped at once; outputs may be incomplete");
                    let _ = printer.out.flush();
                    return HeadlessOutcome {
                        exit_code: EXIT_FORCED,
                        summary: None,
                        aborted,
                        forced: true,
                    };
                }
                None => interrupts_open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests;
