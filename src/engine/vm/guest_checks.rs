//! The operator's own guest checks (`[[checks.exec]]`, per VM added to or replaced): each
//! command through guest-exec after the built-in checks; a failed one runs again up to its
//! `retries`, paced by the poller's back-off. Every run and its output is in the VM's log.

use std::time::Duration;

use crate::config::ExecCheck;
use crate::report::CheckReport;

use super::super::event::{Event, Level};
use super::super::hook::printable;
use super::super::poll::{Attempt, Backoff};
use super::exec::ExecResult;
use super::{Step, Stop, VmTask};

/// Lines of a check's stdout and stderr kept in its report (and shown when it failed).
const TAIL_LINES: usize = 10;
/// Between the runs of a failing check: 2 s, doubling, at most 30 s.
const RETRY_BACKOFF: Backoff =
    Backoff::growing(Duration::from_secs(2), 2.0, Duration::from_secs(30));

impl VmTask {
    /// Runs this VM's guest checks in order; the first that fails for good fails the VM.
    pub(super) async fn guest_checks(&mut self, held: bool) -> Step {
        let checks = self.shared.exec_checks.get(self.vm.index).cloned();
        for check in checks.iter().flatten() {
            self.guest_check(held, check).await?;
        }
        Ok(())
    }

    async fn guest_check(&mut self, held: bool, check: &ExecCheck) -> Step {
        let argv: Vec<&str> = check.command.iter().map(String::as_str).collect();
        let shared = self.shared.clone();
        // The retries bound the runs; the poller only paces them (its deadline is never reached
        // first: every run has its own timeout).
        let runs_allowed = check.retries + 1;
        let horizon = (check.timeout + RETRY_BACKOFF.cap) * (runs_allowed + 1);
        let mut poll = Self::poller(&shared, shared.clock.deadline(horizon), RETRY_BACKOFF)
            .first_wait(Duration::ZERO);
        let mut runs = 0;
        loop {
            poll.due().await?;
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
            let again: Option<()> = poll.answer(Attempt::Pending(String::new()), |_| {
                Err(Stop::Failed(failure(&report)))
            })?;
            debug_assert!(again.is_none());
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
    let skip = lines.len().saturating_sub(TAIL_LINES);
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
