//! The hook runner against real processes (`sh`, `sleep`). Stops are driven by what a hook
//! printed (the test cancels when it saw a line) or by timeouts far shorter than what the hook
//! would take, never by how fast the machine is.

use std::sync::{Arc, Mutex};

use super::*;

fn sh(script: &str) -> HookCommand {
    HookCommand {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: Vec::new(),
    }
}

/// Generous: only reached if the runner is broken.
const LONG: Duration = Duration::from_secs(60);

/// Is the process gone (or a zombie nobody reaped yet: it runs no more)? A killed process
/// closes its files before it turns into a zombie, so the output closing (what the runner waits
/// for) can come a moment before this: look again for a while.
fn gone(pid: i32) -> bool {
    let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !dead() {
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[tokio::test]
async fn lines_stream_in_order_and_the_exit_code_and_tail_are_kept() {
    let mut seen = Vec::new();
    let script = "echo one; echo two >&2; printf 'no newline'; exit 3";
    let r = run(
        &sh(script),
        HookLimits::new(LONG),
        &CancellationToken::new(),
        |s, l| seen.push((s, l.to_string())),
    )
    .await;
    assert_eq!(r.end, HookEnd::Exited(3));
    assert!(!r.succeeded());
    assert_eq!(r.exit_code(), Some(3));
    assert_eq!(r.describe(), "exit 3");
    assert!(
        seen.contains(&(Stream::Stdout, "one".to_string())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(Stream::Stderr, "two".to_string())),
        "{seen:?}"
    );
    assert!(seen.contains(&(Stream::Stdout, "no newline".to_string())));
    assert_eq!(r.tail.len(), 3);
}

#[tokio::test]
async fn the_tail_keeps_the_last_lines() {
    let r = run(
        &sh("i=0; while [ $i -lt 25 ]; do echo line$i; i=$((i+1)); done"),
        HookLimits::new(LONG),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert!(r.succeeded(), "{r:?}");
    let want: Vec<String> = (15..25).map(|i| format!("line{i}")).collect();
    assert_eq!(r.tail, want);
}

#[tokio::test]
async fn placeholders_reach_the_arguments_and_the_environment() {
    let template: Vec<String> = [
        "sh",
        "-c",
        "echo \"$1|$PVE_ROLLOUT_VM_NAME|$PVE_ROLLOUT_IP\"",
        "-",
        "--limit={name}",
    ]
    .map(String::from)
    .to_vec();
    let cmd = HookCommand::new(
        &template,
        &[
            (Placeholder::Name, "web-1".to_string()),
            (Placeholder::Ip, "10.0.0.5".to_string()),
        ],
    );
    let mut lines = Vec::new();
    let r = run(
        &cmd,
        HookLimits::new(LONG),
        &CancellationToken::new(),
        |_, l| lines.push(l.to_string()),
    )
    .await;
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(lines, ["--limit=web-1|web-1|10.0.0.5"]);
}

#[tokio::test]
async fn a_program_that_does_not_exist_is_reported_not_started() {
    let cmd = HookCommand {
        argv: vec!["/nonexistent/pve-rollout-hook".into()],
        env: Vec::new(),
    };
    let r = run(
        &cmd,
        HookLimits::new(LONG),
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert!(matches!(r.end, HookEnd::NotStarted(_)), "{r:?}");
    assert!(r.describe().contains("/nonexistent/pve-rollout-hook"));
}

#[tokio::test]
async fn a_timeout_ends_the_hook() {
    let limits = HookLimits {
        timeout: Duration::from_millis(300),
        grace: Duration::from_millis(100),
    };
    let started = Instant::now();
    let r = run(
        &sh("exec sleep 1000"),
        limits,
        &CancellationToken::new(),
        |_, _| {},
    )
    .await;
    assert_eq!(r.end, HookEnd::TimedOut(limits.timeout));
    assert!(started.elapsed() >= limits.timeout);
    assert!(started.elapsed() < LONG);
    assert!(
        r.describe().starts_with("timed out after"),
        "{}",
        r.describe()
    );
}

/// Runs `script` (which prints a pid, then `ready`) and cancels once it said `ready`; returns
/// the result and the pid.
async fn cancel_when_ready(script: &str, grace: Duration) -> (HookResult, i32) {
    let cancel = CancellationToken::new();
    let pid = Arc::new(Mutex::new(None));
    let limits = HookLimits {
        timeout: LONG,
        grace,
    };
    let r = run(&sh(script), limits, &cancel, |_, line| {
        if let Ok(n) = line.parse::<i32>() {
            *pid.lock().unwrap() = Some(n);
        }
        if line == "ready" {
            cancel.cancel();
        }
    })
    .await;
    let pid = pid.lock().unwrap().expect("the script printed a pid");
    (r, pid)
}

#[tokio::test]
async fn cancel_ends_the_whole_process_group() {
    // The background sleep is the hook's child, not the runner's: only the group signal reaches it.
    let (r, pid) = cancel_when_ready("sleep 1000 & echo $!; echo ready; wait", LONG).await;
    assert_eq!(r.end, HookEnd::Cancelled);
    assert!(gone(pid), "the hook's background child {pid} survived");
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
    let grace = Duration::from_millis(200);
    let started = Instant::now();
    let (r, pid) = cancel_when_ready(
        "trap '' TERM; sleep 1000 & echo $!; echo ready; wait",
        grace,
    )
    .await;
    assert_eq!(r.end, HookEnd::Cancelled);
    assert!(started.elapsed() >= grace, "SIGKILL came before the grace");
    assert!(gone(pid), "the hook's background child {pid} survived");
}

#[tokio::test]
async fn leftovers_holding_the_output_are_ended_after_the_hook_exits() {
    let grace = Duration::from_millis(200);
    let limits = HookLimits {
        timeout: LONG,
        grace,
    };
    let mut pid = None;
    let r = run(
        &sh("sleep 1000 & echo $!; exit 0"),
        limits,
        &CancellationToken::new(),
        |_, l| pid = l.parse::<i32>().ok(),
    )
    .await;
    assert_eq!(r.end, HookEnd::Exited(0));
    let pid = pid.expect("the script printed a pid");
    assert!(gone(pid), "the leftover {pid} survived");
}

#[tokio::test]
async fn a_cancelled_rollout_starts_no_hook() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let r = run(
        &sh(&format!("touch {}", marker.display())),
        HookLimits::new(LONG),
        &cancel,
        |_, _| {},
    )
    .await;
    assert_eq!(r.end, HookEnd::Cancelled);
    assert!(!marker.exists());
}

#[tokio::test]
async fn slots_bound_how_many_hooks_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    // Each hook says it started, then waits for the gate; the test opens the gate only once two
    // run, so with two slots exactly two are ever seen at once.
    let script = format!(
        "echo start; while [ ! -e {} ]; do sleep 0.02; done",
        gate.display()
    );
    let slots = HookSlots::new(2);
    let running = Arc::new(Mutex::new((0usize, 0usize)));
    let cancel = CancellationToken::new();
    let hooks = (0..5).map(|_| {
        let (slots, running, gate, cancel, cmd) = (
            slots.clone(),
            running.clone(),
            gate.clone(),
            cancel.clone(),
            sh(&script),
        );
        async move {
            let r = slots
                .run(&cmd, HookLimits::new(LONG), &cancel, |_, line| {
                    if line == "start" {
                        let mut r = running.lock().unwrap();
                        r.0 += 1;
                        r.1 = r.1.max(r.0);
                        if r.0 == 2 {
                            std::fs::write(&gate, "").unwrap();
                        }
                    }
                })
                .await;
            running.lock().unwrap().0 -= 1;
            r
        }
    });
    let results = futures_util::future::join_all(hooks).await;
    assert!(results.iter().all(HookResult::succeeded), "{results:?}");
    assert_eq!(running.lock().unwrap().1, 2);
}

#[tokio::test]
async fn cancel_while_waiting_for_a_slot_never_starts_the_hook() {
    let slots = HookSlots::new(1);
    let held = slots.0.clone().acquire_owned().await.unwrap();
    let cancel = CancellationToken::new();
    let cmd = sh("echo ran");
    let waiting = slots.run(&cmd, HookLimits::new(LONG), &cancel, |_, _| {
        panic!("the hook ran")
    });
    cancel.cancel();
    assert_eq!(waiting.await.end, HookEnd::Cancelled);
    drop(held);
}

#[test]
fn output_is_made_printable() {
    assert_eq!(printable(b"\x1b[31mred\x1b[0m text\r\n"), "red text");
    assert_eq!(printable(b"a\tb\x07c"), "a\tbc");
    assert_eq!(printable(b"bad \xff utf8\n"), "bad \u{fffd} utf8");
}

// Two workers: `gone` blocks its thread while the SIGKILL task runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_midway_ends_its_process_group() {
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<i32>();
    let limits = HookLimits {
        timeout: LONG,
        grace: Duration::from_millis(200),
    };
    let cmd = sh("trap '' TERM; sleep 1000 & echo $!; wait");
    let running = run(&cmd, limits, &cancel, move |_, line| {
        if let Ok(pid) = line.parse() {
            let _ = tx.send(pid);
        }
    });
    // Dropped (as a killed task drops it) once the hook said its child's pid.
    let pid = tokio::select! {
        _ = running => panic!("the hook ended by itself"),
        pid = rx.recv() => pid.expect("a pid"),
    };
    // TERM is ignored, so only the SIGKILL after the grace ends it (`gone` waits for that).
    assert!(gone(pid), "the hook's child {pid} outlived the dropped run");
}
