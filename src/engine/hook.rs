//! Runs the operator's hooks: local commands (argv arrays, no shell unless the config says
//! `sh -c`), each in its own process group so a timeout or an abort ends everything it started.
//! Output is handed over line by line as it comes; the result keeps the exit and the last lines.
//!
//! Timeouts are wall-clock (tokio time): a hook is a process on this machine, so a time-scaled
//! simulator does not make it faster.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{PASSWORD_ENV, Placeholder, TOKEN_SECRET_ENV, expand};

/// Environment variables a hook never inherits: the API credentials pve-rollout reads.
pub const SCRUBBED_ENV: [&str; 2] = [TOKEN_SECRET_ENV, PASSWORD_ENV];
/// How long a hook told to stop (SIGTERM) gets before SIGKILL, and how long its leftovers may
/// hold its output open after it exited.
pub const GRACE: Duration = Duration::from_secs(5);
/// After SIGKILL, how long to wait for the output to close (only something that left the
/// process group can hold it longer).
const AFTER_KILL: Duration = Duration::from_secs(5);
/// Lines kept for the result (what a failure shows).
pub const TAIL_LINES: usize = 10;
/// A line longer than this is handed over in pieces (a hook printing without newlines must not
/// grow memory without bound).
const MAX_LINE: u64 = 16 * 1024;

/// A command ready to run: placeholders expanded, its own environment variables beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub argv: Vec<String>,
    /// Added to the inherited environment (minus `SCRUBBED_ENV`).
    pub env: Vec<(String, String)>,
}

impl HookCommand {
    /// `template` (validated by the config) with `values` put in; placeholders without a value
    /// become empty. Every value is also passed as its `PVE_ROLLOUT_*` variable.
    pub fn new(template: &[String], values: &[(Placeholder, String)]) -> HookCommand {
        let value = |p: Placeholder| {
            values
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        HookCommand {
            argv: template.iter().map(|arg| expand(arg, value)).collect(),
            env: values
                .iter()
                .map(|(p, v)| (p.env_var().to_string(), v.clone()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnd {
    Exited(i32),
    /// Ended by a signal nobody here sent.
    Signalled(i32),
    /// Ran past its timeout; its process group was ended.
    TimedOut(Duration),
    /// The rollout was aborted; its process group was ended.
    Cancelled,
    /// Could not be started at all.
    NotStarted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResult {
    pub end: HookEnd,
    /// The last `TAIL_LINES` lines of stdout and stderr, in the order they came.
    pub tail: Vec<String>,
}

impl HookResult {
    pub fn succeeded(&self) -> bool {
        self.end == HookEnd::Exited(0)
    }

    /// `exit 3`, `timed out after 30m`, ...: what a log line or a failure reason says.
    pub fn describe(&self) -> String {
        match &self.end {
            HookEnd::Exited(code) => format!("exit {code}"),
            HookEnd::Signalled(signal) => format!("killed by signal {signal}"),
            HookEnd::TimedOut(after) => {
                format!("timed out after {}", crate::config::format_duration(*after))
            }
            HookEnd::Cancelled => "stopped by the abort".to_string(),
            HookEnd::NotStarted(why) => format!("could not start: {why}"),
        }
    }

    /// The exit code when the hook exited by itself.
    pub fn exit_code(&self) -> Option<i32> {
        match self.end {
            HookEnd::Exited(code) => Some(code),
            _ => None,
        }
    }
}

/// At most `max_parallel` hooks run at once; the rest wait for a slot.
#[derive(Debug, Clone)]
pub struct HookSlots(Arc<Semaphore>);

impl HookSlots {
    pub fn new(max_parallel: usize) -> HookSlots {
        HookSlots(Arc::new(Semaphore::new(max_parallel.max(1))))
    }

    /// Runs `command` once a slot is free. Cancelled while waiting: it never starts.
    pub async fn run(
        &self,
        command: &HookCommand,
        limits: HookLimits,
        cancel: &CancellationToken,
        on_line: impl FnMut(Stream, &str),
    ) -> HookResult {
        let permit = tokio::select! {
            permit = self.0.acquire() => permit,
            _ = cancel.cancelled() => return HookResult { end: HookEnd::Cancelled, tail: Vec::new() },
        };
        let Ok(_permit) = permit else {
            // The semaphore is never closed; run unthrottled rather than not at all.
            return run(command, limits, cancel, on_line).await;
        };
        run(command, limits, cancel, on_line).await
    }
}

/// How long a hook may run, and how long it gets to stop when told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookLimits {
    pub timeout: Duration,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
}

impl HookLimits {
    pub fn new(timeout: Duration) -> HookLimits {
        HookLimits {
            timeout,
            grace: GRACE,
        }
    }
}

/// Where the run is: each stage ends at its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    /// The leader exited; its leftovers still hold the output open.
    Lingering,
    /// SIGTERM sent to the group.
    Terminating,
    /// SIGKILL sent; waiting for the output to close.
    Killed,
}

/// Runs one hook to its end: exit, timeout or `cancel`. Lines of output go to `on_line` as they
/// come (control sequences removed). The hook's whole process group is ended on timeout or
/// cancel (SIGTERM, then SIGKILL after the grace), and when the hook exited but something it
/// left behind still holds its output after the grace.
pub async fn run(
    command: &HookCommand,
    limits: HookLimits,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(Stream, &str),
) -> HookResult {
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let not_started = |why: String| HookResult {
        end: HookEnd::NotStarted(why),
        tail: Vec::new(),
    };
    let Some((program, args)) = command.argv.split_first() else {
        return not_started("empty command".to_string());
    };
    if cancel.is_cancelled() {
        return HookResult {
            end: HookEnd::Cancelled,
            tail: Vec::new(),
        };
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    cmd.envs(command.env.iter().map(|(k, v)| (k, v)));
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return not_started(format!("{program}: {e}")),
    };
    // The group id is the leader's pid (process_group(0)). It is signalled only while the leader
    // is unreaped or members still hold the output open, so the id cannot have been reused.
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    // Dropped before the end (its task killed for a retry or a skip): the group goes too.
    let mut guard = GroupGuard {
        group,
        grace: limits.grace,
        armed: true,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(Stream, String)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(out, Stream::Stdout, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, Stream::Stderr, tx.clone())));
    }
    drop(tx);

    let mut stage = Stage::Running;
    let HookLimits { timeout, grace } = limits;
    let mut stage_ends = Instant::now() + timeout;
    let mut status: Option<ExitStatus> = None;
    let mut output_open = true;
    let mut stopped: Option<HookEnd> = None;
    let signal = |sig: libc::c_int| {
        if let Some(group) = group {
            // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH.
            unsafe { libc::killpg(group, sig) };
        }
    };
    while status.is_none() || output_open {
        tokio::select! {
            line = rx.recv(), if output_open => match line {
                Some((stream, text)) => {
                    on_line(stream, &text);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
                None => output_open = false,
            },
            exited = child.wait(), if status.is_none() => {
                match exited {
                    Ok(s) => status = Some(s),
                    Err(e) => {
                        stopped.get_or_insert(HookEnd::NotStarted(format!("{program}: {e}")));
                        signal(libc::SIGKILL);
                        break;
                    }
                }
                if stage == Stage::Running && output_open {
                    stage = Stage::Lingering;
                    stage_ends = Instant::now() + grace;
                }
            },
            _ = cancel.cancelled(), if stage == Stage::Running => {
                stopped = Some(HookEnd::Cancelled);
                signal(libc::SIGTERM);
                stage = Stage::Terminating;
                stage_ends = Instant::now() + grace;
            },
            _ = tokio::time::sleep_until(stage_ends) => match stage {
                Stage::Running => {
                    stopped = Some(HookEnd::TimedOut(timeout));
                    signal(libc::SIGTERM);
                    stage = Stage::Terminating;
                    stage_ends = Instant::now() + grace;
                }
                Stage::Lingering | Stage::Terminating => {
                    signal(libc::SIGKILL);
                    stage = Stage::Killed;
                    stage_ends = Instant::now() + AFTER_KILL;
                }
                // Something left the group and holds the output: stop listening to it.
                Stage::Killed => break,
            },
        }
    }
    guard.armed = false;
    for reader in readers {
        reader.abort();
    }
    let end = match (stopped, status) {
        (Some(end), _) => end,
        (None, Some(status)) => exit_of(status),
        (None, None) => HookEnd::NotStarted(format!("{program}: lost track of the process")),
    };
    HookResult {
        end,
        tail: tail.into(),
    }
}

/// Ends a hook's process group when the run is dropped midway: SIGTERM now, SIGKILL after the
/// grace (from a task of its own, since a drop cannot wait).
struct GroupGuard {
    group: Option<i32>,
    grace: Duration,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(group) = self.group.filter(|_| self.armed) else {
            return;
        };
        // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH.
        unsafe { libc::killpg(group, libc::SIGTERM) };
        let grace = self.grace;
        let kill = move || unsafe {
            libc::killpg(group, libc::SIGKILL);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(grace).await;
                    kill();
                });
            }
            Err(_) => kill(),
        }
    }
}

fn exit_of(status: ExitStatus) -> HookEnd {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => HookEnd::Exited(code),
        (None, Some(signal)) => HookEnd::Signalled(signal),
        (None, None) => HookEnd::Exited(-1),
    }
}

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    lines: mpsc::UnboundedSender<(Stream, String)>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if lines.send((stream, printable(&buf))).is_err() {
                    return;
                }
            }
        }
    }
}

/// One line as text fit for a terminal pane: invalid UTF-8 replaced, the line end, colour
/// sequences (ESC [ ... final byte) and other control characters removed, tabs kept.
pub fn printable(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.trim_end_matches(['\n', '\r']).chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
