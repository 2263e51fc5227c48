//! The verify phase: N consecutive pings, a settling pause, guest-exec proven to work, the
//! agent's service, the guest's identity and, when asked for, cloud-init's own verdict.

use std::time::Duration;

use tokio::time::Instant;

use crate::pve::ErrorClass;

use super::super::event::{Event, Level, Phase};
use super::super::poll::{Attempt, Backoff};
use super::exec::ExecResult;
use super::{Step, Stop, VmTask};

/// The guest's identity, then its agent's service state, in one guest command.
const IDENTITY_AND_SERVICE: &str = "uname -a && systemctl is-active qemu-guest-agent";

impl VmTask {
    pub(super) async fn verify_phase(&mut self, held: bool) -> Step {
        self.gate().await?;
        self.enter(Phase::Verifying);
        let deadline = self
            .shared
            .clock
            .deadline(self.shared.checks.verify_timeout);
        let wanted = self.shared.checks.pings;
        self.consecutive_pings(held, wanted, deadline).await?;
        self.log(
            Level::Info,
            format!("{wanted} consecutive agent pings answered"),
        );

        // Let the guest settle (the original wait_for_vm.sh flow waited 30 s); the lane is free
        // meanwhile in pipelined mode.
        let settle = self.shared.checks.stabilization;
        if !settle.is_zero() {
            self.sleep(settle).await?;
        }

        // One guest command proves guest-exec works, names the guest and asks systemd about the
        // agent's service (the original wait_for_vm.sh flow ran an echo, `systemctl` and
        // `uname -a` apart: each command costs every VM two requests and a turn on the agent
        // lane). `&&`: no identity line, no service line.
        let r = self
            .exec(held, &["sh", "-c", IDENTITY_AND_SERVICE], deadline)
            .await?;
        let mut lines = r.stdout.lines().map(str::trim);
        let identity = lines.next().unwrap_or_default().to_string();
        if identity.is_empty() {
            return Err(Stop::Failed(format!(
                "guest-exec test failed: `uname -a` printed nothing (exit {:?}, stderr {:?})",
                r.exitcode,
                r.stderr.trim()
            )));
        }
        self.agent_service(lines.next().unwrap_or_default(), &r);
        self.guest_identity(held, identity).await?;
        self.verify_disks().await?;
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

    /// `wanted` pings answered in a row (the one that ended the agent wait counts); an agent
    /// that stops answering starts the count again, a second later.
    async fn consecutive_pings(&mut self, held: bool, wanted: u32, deadline: Instant) -> Step {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let mut ok = std::mem::take(&mut self.seen.pings).min(wanted);
        if ok >= wanted {
            return Ok(());
        }
        let shared = self.shared.clone();
        let mut poll = Self::poller(&shared, deadline, Backoff::fixed(Duration::from_secs(1)));
        loop {
            poll.due().await?;
            let n = node.clone();
            let attempt = match self
                .agent_call(held, |c| async move { c.agent_ping(&n, vmid).await })
                .await?
            {
                Ok(()) => {
                    ok += 1;
                    if ok >= wanted {
                        Attempt::Done(())
                    } else {
                        Attempt::Again
                    }
                }
                Err(e) if matches!(e.class, ErrorClass::AgentNotReady | ErrorClass::Transient) => {
                    ok = 0;
                    Attempt::Pending(e.to_string())
                }
                Err(e) => return Err(e.into()),
            };
            let timed_out = |last| {
                Err(Stop::Failed(format!(
                    "guest agent stopped answering pings: {last}"
                )))
            };
            if poll.answer(attempt, timed_out)?.is_some() {
                return Ok(());
            }
        }
    }

    /// The agent's own service (informational: it answered, so it runs): what `systemctl
    /// is-active` said after the identity line.
    fn agent_service(&mut self, word: &str, r: &ExecResult) {
        if word == "active" {
            self.log(Level::Info, "qemu-guest-agent service is active");
        } else {
            self.log(
                Level::Warning,
                format!(
                    "systemctl is-active qemu-guest-agent said {:?} (exit {:?})",
                    if word.is_empty() {
                        r.stderr.trim()
                    } else {
                        word
                    },
                    r.exitcode
                ),
            );
        }
    }

    /// `uname -a` (from the exec test) and the agent's OS info, for the detail pane and the
    /// summary.
    async fn guest_identity(&mut self, held: bool, uname: String) -> Step {
        let (node, vmid) = (self.vm.node.clone(), self.vm.vmid);
        let os = match self
            .agent_call(held, |c| async move { c.agent_os_info(&node, vmid).await })
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
            uname: Some(uname),
            os,
        });
        Ok(())
    }

    /// `cloud-init status --wait`: 0 done, 2 done but degraded (warning), 1 error (failed).
    /// Very early in boot it can exit with other codes (129); those are asked again every 5 s.
    async fn cloud_init(&mut self, held: bool, deadline: Instant) -> Step {
        let shared = self.shared.clone();
        let mut poll = Self::poller(&shared, deadline, Backoff::fixed(Duration::from_secs(5)));
        loop {
            poll.due().await?;
            let r = self
                .exec(held, &["cloud-init", "status", "--wait"], deadline)
                .await?;
            let attempt = match r.exitcode {
                Some(0) => {
                    self.log(Level::Info, "cloud-init: done");
                    Attempt::Done(())
                }
                Some(2) => {
                    let detail = self.cloud_init_long(held, deadline, &r.stdout).await?;
                    self.log(
                        Level::Warning,
                        format!("cloud-init: done but degraded: {detail}"),
                    );
                    Attempt::Done(())
                }
                Some(1) => {
                    let detail = self.cloud_init_long(held, deadline, &r.stdout).await?;
                    return Err(Stop::Failed(format!(
                        "cloud-init reported an error: {detail}"
                    )));
                }
                other => Attempt::Pending(format!("{other:?}")),
            };
            let timed_out = |last| {
                Err(Stop::Failed(format!(
                    "cloud-init status kept failing (exit {last})"
                )))
            };
            if poll.answer(attempt, timed_out)?.is_some() {
                return Ok(());
            }
        }
    }

    /// `cloud-init status --long` after a failure or a degraded run: every line to the log, the
    /// status, detail and errors in one line for the failure reason. The short status stands in
    /// when the long form cannot be had.
    async fn cloud_init_long(
        &mut self,
        held: bool,
        deadline: Instant,
        short: &str,
    ) -> Step<String> {
        let r = self
            .exec(held, &["cloud-init", "status", "--long"], deadline)
            .await?;
        if r.stdout.trim().is_empty() {
            return Ok(one_line(short));
        }
        for line in r.stdout.lines().filter(|l| !l.trim().is_empty()) {
            self.log(
                Level::Warning,
                format!("cloud-init status --long: {}", line.trim_end()),
            );
        }
        Ok(long_detail(&r.stdout))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `status`, `detail`, `errors` and non-empty `recoverable_errors` of `cloud-init status
/// --long`, joined with `; ` (a key's list items follow it, `, `-separated).
fn long_detail(text: &str) -> String {
    const KEYS: [&str; 4] = ["status", "detail", "errors", "recoverable_errors"];
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let item = line.trim();
        if item.is_empty() {
            continue;
        }
        let indented = line.starts_with([' ', '\t']) || item.starts_with("- ");
        match item.split_once(':') {
            Some((key, value)) if !indented && KEYS.contains(&key) => {
                let value = value.trim();
                let first = (!value.is_empty() && value != "[]" && value != "{}")
                    .then(|| value.to_string());
                parts.push((key.to_string(), first.into_iter().collect()));
                current = Some(parts.len() - 1);
            }
            Some(_) if !indented => current = None,
            // `detail:` alone on its line, its value on the next (older releases).
            None if !indented => match current {
                Some(i) if parts[i].0 == "detail" && parts[i].1.is_empty() => {
                    parts[i].1.push(item.to_string());
                }
                _ => current = None,
            },
            _ => {
                if let Some(i) = current {
                    parts[i].1.push(item.trim_start_matches("- ").to_string());
                }
            }
        }
    }
    parts
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(key, values)| format!("{key}: {}", values.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::long_detail;

    #[test]
    fn the_long_status_names_the_failed_module() {
        let text = "status: error\nextended_status: error - done\nboot_status_code: enabled-by-generator\nlast_update: Thu, 01 Jan 1970 00:02:15 +0000\ndetail: DataSourceNoCloud [seed=/dev/sr0]\nerrors:\n\t- ('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))\nrecoverable_errors: {}\n";
        assert_eq!(
            long_detail(text),
            "status: error; detail: DataSourceNoCloud [seed=/dev/sr0]; errors: ('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
        );
        // Older releases put the detail on its own line; recoverable errors are a mapping.
        let text = "status: done\ndetail:\nDataSourceNoCloud [seed=/dev/sr0]\nerrors: []\nrecoverable_errors:\n  WARNING:\n    - Failed to set locale\n";
        assert_eq!(
            long_detail(text),
            "status: done; detail: DataSourceNoCloud [seed=/dev/sr0]; recoverable_errors: WARNING:, Failed to set locale"
        );
    }
}
