//! The `on_verified` hook and the guest checks in whole rollouts against the simulator
//! (in-process). The hook is a real shell script; it measures its own concurrency with a lock
//! directory and a counter file, never with timing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pve_rollout::config::{ExecCheck, ExecChecksOverride, OutputPattern, VmOverrides};
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::{Command, Event, Level, Phase, VmState};
use pve_rollout::engine::journal::{self, History};
use pve_rollout::sim::{AgentBackend, Scenario, SimOptions};

const SCALE: f64 = 0.02;

fn settings(vms: usize) -> DemoSettings {
    DemoSettings {
        vms,
        deployment_delay: "3s".into(),
        stabilization: "2s".into(),
        agent_timeout: "2m".into(),
        ip_timeout: "2m".into(),
        ..DemoSettings::default()
    }
}

/// The hook: appends `<name> <vmid> <ip> <node> <inventory>` to `ran`, keeps `running` and
/// `max` (at once) under a mkdir lock, says a line on stdout and one on stderr, then waits for
/// the `gate` file (which the second hook running at once opens) or 20 s, whichever first.
/// With `fail_first`, a VM's first run exits 3 (after its lines).
const HOOK: &str = r#"
d="$1"; name="$2"
lock() { while ! mkdir "$d/lock" 2>/dev/null; do sleep 0.01; done; }
unlock() { rmdir "$d/lock"; }
lock
n=$(( $(cat "$d/running" 2>/dev/null || echo 0) + 1 )); echo $n > "$d/running"
[ $n -gt "$(cat "$d/max" 2>/dev/null || echo 0)" ] && echo $n > "$d/max"
[ $n -ge 2 ] && touch "$d/gate"
echo "$name $PVE_ROLLOUT_VMID $PVE_ROLLOUT_IP $PVE_ROLLOUT_NODE $PVE_ROLLOUT_INVENTORY" >> "$d/ran"
unlock
echo "provisioning $name"
echo "warming up $name" >&2
i=0; while [ ! -e "$d/gate" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
lock; echo $(( $(cat "$d/running") - 1 )) > "$d/running"; unlock
if [ -n "$3" ] && [ ! -e "$d/failed-$name" ]; then
  touch "$d/failed-$name"; echo "cannot reach $name" >&2; exit 3
fi
"#;

fn hook_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("hook.sh");
    std::fs::write(&script, HOOK).expect("hook script");
    (dir, script)
}

fn hook_argv(script: &Path, dir: &Path, fail_first: bool) -> Vec<String> {
    let mut argv = vec![
        "sh".to_string(),
        script.display().to_string(),
        dir.display().to_string(),
        "{name}".to_string(),
    ];
    if fail_first {
        argv.push("fail-first".to_string());
    }
    argv
}

fn ran(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ran"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn logs_of(events: &[Event], vm: usize) -> Vec<(Level, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log {
                vm: Some(v),
                level,
                text,
            } if *v == vm => Some((*level, text.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_verified_runs_once_per_vm_at_most_max_parallel_at_once() {
    let mut h = Harness::start("fast", 11, SCALE, settings(4)).await;
    let (dir, script) = hook_dir();
    h.config.hooks.on_verified = Some(hook_argv(&script, dir.path(), false));
    h.config.hooks.max_parallel = 2;
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 4], "{summary:#?}");

    let ran = ran(dir.path());
    assert_eq!(ran.len(), 4, "once per VM: {ran:?}");
    for vm in &summary.vms {
        let line = ran
            .iter()
            .find(|l| l.starts_with(&format!("{} ", vm.name)))
            .unwrap_or_else(|| panic!("{} ran: {ran:?}", vm.name));
        let inventory = h.out.path().join(format!("vm_{}_inventory.ini", vm.vmid));
        assert_eq!(
            *line,
            format!(
                "{} {} {} {} {}",
                vm.name,
                vm.vmid,
                vm.ip.as_deref().expect("ip"),
                vm.node,
                inventory.display()
            )
        );
        // The inventory the hook was handed holds this VM, verified.
        let text = std::fs::read_to_string(&inventory).expect("per-VM inventory");
        let host = format!("{} ansible_host={}", vm.name, vm.ip.as_deref().expect("ip"));
        assert!(text.contains(&format!("[verified]\n{host}\n")), "{text}");
        let hook = vm.hook.as_ref().expect("hook in the summary");
        assert_eq!(
            (hook.state.as_str(), hook.exit_code),
            ("succeeded", Some(0))
        );
        assert!(vm.phases.contains_key("provisioning"), "{:?}", vm.phases);
    }
    let max: usize = std::fs::read_to_string(dir.path().join("max"))
        .expect("max")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(max, 2, "never more than max_parallel, and two did overlap");

    for vm in 0..4 {
        // provisioning, then verified, in that order; the hook's lines in the VM's log.
        let provisioning = first_state(&events, vm, is_phase(Phase::Provisioning))
            .unwrap_or_else(|| panic!("VM {vm} never provisioning"));
        let verified = first_state(&events, vm, is_phase(Phase::Verified)).expect("verified");
        assert!(provisioning < verified);
        let name = &summary.vms[vm].name;
        let logs = logs_of(&events, vm);
        assert!(
            logs.iter()
                .any(|(_, t)| *t == format!("hook | provisioning {name}")),
            "{logs:#?}"
        );
        assert!(
            logs.iter()
                .any(|(_, t)| *t == format!("hook ! warming up {name}")),
            "{logs:#?}"
        );
    }
    // Journaled: a resumed run would not run any of them again.
    let history = History::read(&journal::path_in(h.out.path())).expect("journal");
    for vm in &summary.vms {
        assert!(history.hook_done(&vm.name, vm.vmid), "{}", vm.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_exits_3_makes_the_vm_hook_failed_and_a_retry_runs_only_the_hook() {
    let mut h = Harness::start("fast", 12, SCALE, settings(2)).await;
    let (dir, script) = hook_dir();
    h.config.hooks.on_verified = Some(hook_argv(&script, dir.path(), true));
    h.config.hooks.max_parallel = 2;
    let (summary, events) = h
        .run(true, |mut rx, tx| async move {
            let mut all = Vec::new();
            let mut retried = [false, false];
            let mut verified = [false, false];
            while let Some(e) = rx.recv().await {
                if let Event::VmState { vm, state, .. } = &e {
                    match state {
                        VmState::HookFailed { .. } if !retried[*vm] => {
                            retried[*vm] = true;
                            tx.send(Command::Retry(*vm)).expect("engine listens");
                        }
                        VmState::Active {
                            phase: Phase::Verified,
                        } => verified[*vm] = true,
                        _ => {}
                    }
                }
                let finished = matches!(e, Event::Finished { .. });
                all.push(e);
                if finished && verified == [true, true] {
                    break;
                }
            }
            drop(tx);
            all.extend(collect(rx).await);
            all
        })
        .await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    for vm in 0..2 {
        let name = &summary.vms[vm].name;
        let failed = events
            .iter()
            .find_map(|e| match e {
                Event::VmState {
                    vm: v,
                    state: VmState::HookFailed { reason },
                    ..
                } if *v == vm => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("VM {vm} never hook-failed"));
        assert!(failed.contains("exit 3"), "{failed}");
        assert!(failed.contains(&format!("cannot reach {name}")), "{failed}");
        // The retry ran the hook only: the VM was verified once, then provisioned twice.
        let verifying = events
            .iter()
            .filter(|e| {
                matches!(e, Event::VmState { vm: v, state: VmState::Active { phase: Phase::Verifying }, .. } if *v == vm)
            })
            .count();
        assert_eq!(verifying, 1, "the retry did not verify again");
        let hook = summary.vms[vm].hook.as_ref().expect("hook");
        assert_eq!(hook.state, "succeeded");
    }
    assert_eq!(ran(dir.path()).len(), 4, "two runs per VM");
    assert_eq!(pve_rollout::headless::exit_code(&summary), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hook_fails_the_rollout_and_skip_goes_on_without_it() {
    let mut h = Harness::start("fast", 13, SCALE, settings(2)).await;
    h.config.hooks.on_verified = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo no inventory for $1 >&2; exit 3".into(),
        "-".into(),
        "{name}".into(),
    ]);
    // Without a command: both end hook-failed, which counts as failed.
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["hook-failed"; 2], "{summary:#?}");
    assert_eq!(pve_rollout::headless::exit_code(&summary), 1);
    let vm = &summary.vms[0];
    let error = vm.error.as_deref().expect("error");
    assert!(error.contains("exit 3"), "{error}");
    assert!(
        error.contains(&format!("no inventory for {}", vm.name)),
        "{error}"
    );
    let hook = vm.hook.as_ref().expect("hook");
    assert_eq!((hook.state.as_str(), hook.exit_code), ("failed", Some(3)));
    let text = std::fs::read_to_string(h.out.path().join(format!("vm_{}_summary.txt", vm.vmid)))
        .expect("per-VM summary");
    assert!(text.contains("on_verified hook: failed (exit 3)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_hook_failed_vm_verifies_it_without_the_hook() {
    let mut h = Harness::start("fast", 14, SCALE, settings(1)).await;
    h.config.hooks.on_verified = Some(vec!["sh".into(), "-c".into(), "exit 3".into()]);
    let (summary, _) = h
        .run(true, |mut rx, tx| async move {
            let mut all = Vec::new();
            while let Some(e) = rx.recv().await {
                if let Event::VmState {
                    state: VmState::HookFailed { .. },
                    ..
                } = &e
                {
                    tx.send(Command::Skip(0)).expect("engine listens");
                }
                let verified = matches!(
                    e,
                    Event::VmState {
                        state: VmState::Active {
                            phase: Phase::Verified
                        },
                        ..
                    }
                );
                all.push(e);
                if verified {
                    break;
                }
            }
            drop(tx);
            all.extend(collect(rx).await);
            all
        })
        .await;
    assert_eq!(states(&summary), ["verified"], "{summary:#?}");
    assert_eq!(summary.vms[0].hook.as_ref().expect("hook").state, "skipped");
    let history = History::read(&journal::path_in(h.out.path())).expect("journal");
    assert!(history.hook_done(&summary.vms[0].name, summary.vms[0].vmid));
}

/// Is the process gone (or a zombie nobody reaped yet)? A killed process closes its files
/// before it turns into a zombie: look again for a while.
fn gone(pid: i32) -> bool {
    let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !dead() {
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_ends_running_hooks_process_groups_and_the_summary_is_written() {
    let mut h = Harness::start("fast", 15, SCALE, settings(1)).await;
    // The hook's background child is only reachable through the process group.
    h.config.hooks.on_verified = Some(vec![
        "sh".into(),
        "-c".into(),
        "sleep 1000 & echo child $!; wait".into(),
    ]);
    let (summary, events) = h
        .run(true, |mut rx, tx| async move {
            let mut all = Vec::new();
            while let Some(e) = rx.recv().await {
                if let Event::Log { text, .. } = &e
                    && text.starts_with("hook | child ")
                {
                    tx.send(Command::Abort).expect("engine listens");
                }
                all.push(e);
            }
            all
        })
        .await;
    let pid: i32 = events
        .iter()
        .find_map(|e| match e {
            Event::Log { text, .. } => text.strip_prefix("hook | child ")?.parse().ok(),
            _ => None,
        })
        .expect("the hook said its child's pid");
    assert!(gone(pid), "the hook's child {pid} outlived the abort");
    assert!(summary.rollout.aborted);
    assert_eq!(summary.vms[0].hook.as_ref().expect("hook").state, "aborted");
    assert!(h.out.path().join("summary.json").exists());
    // Cut off: a resumed run runs it again.
    let history = History::read(&journal::path_in(h.out.path())).expect("journal");
    assert!(!history.hook_done(&summary.vms[0].name, summary.vms[0].vmid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_finished_runs_after_the_outputs_and_its_failure_sets_exit_4() {
    let mut h = Harness::start("fast", 16, SCALE, settings(1)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("seen");
    h.config.hooks.on_finished = Some(vec![
        "sh".into(),
        "-c".into(),
        "cp \"$1\" \"$2\"; echo notified; exit 5".into(),
        "-".into(),
        "{summary}".into(),
        seen.display().to_string(),
    ]);
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"]);
    // It saw the summary already written.
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("the hook copied it"))
            .expect("json");
    assert_eq!(seen["vms"][0]["state"], "verified");
    let hook = summary
        .on_finished
        .as_ref()
        .expect("on_finished in the summary");
    assert_eq!((hook.state.as_str(), hook.exit_code), ("failed", Some(5)));
    assert_eq!(hook.tail, ["notified"]);
    assert_eq!(pve_rollout::headless::exit_code(&summary), 4);
    // Written again with its result.
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(h.out.path().join("summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(on_disk["on_finished"]["exit_code"], 5);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Log { vm: None, text, .. } if text == "on_finished hook | notified"
    )));
}

fn exec_check(name: &str, script: &str, expect_output: Option<&str>, retries: u32) -> ExecCheck {
    ExecCheck {
        name: name.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        expect_exit: 0,
        expect_output: expect_output.map(|p| OutputPattern::new(p).expect("regex")),
        timeout: Duration::from_secs(30),
        retries,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs qemu-ga"]
async fn guest_checks_run_real_commands_and_a_failing_one_names_itself_and_its_stderr() {
    let options = SimOptions {
        scenario: Scenario::builtin("fast").expect("scenario"),
        seed: 17,
        time_scale: SCALE,
        agent: AgentBackend::QemuGa,
        ..SimOptions::default()
    };
    let mut h = Harness::start_options(options, settings(2)).await;
    // Every VM: a real command whose stdout must match. demo-2 adds one that fails (retried once).
    h.config.checks.exec = vec![exec_check(
        "kernel is linux",
        "uname -s; echo checked >&2",
        Some("^Linux"),
        0,
    )];
    h.config
        .vm_configs
        .insert("demo-1".into(), VmOverrides::default());
    h.config.vm_configs.insert(
        "demo-2".into(),
        VmOverrides {
            checks_exec: Some(ExecChecksOverride::Add(vec![exec_check(
                "postgres listens",
                "echo 'port 5432: connection refused' >&2; exit 1",
                None,
                1,
            )])),
            ..VmOverrides::default()
        },
    );
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified", "failed"], "{summary:#?}");
    // The identity came from the real `uname -a` (through `sh -c`, with the service check).
    let real = std::process::Command::new("uname")
        .arg("-a")
        .output()
        .expect("uname");
    let real = String::from_utf8_lossy(&real.stdout);
    assert_eq!(summary.vms[0].uname.as_deref(), Some(real.trim()));

    let passed = &summary.vms[0].checks;
    assert_eq!(passed.len(), 1, "{passed:?}");
    assert!(passed[0].passed, "{passed:?}");
    assert_eq!(passed[0].exit_code, Some(0));
    assert_eq!(passed[0].stdout_tail, ["Linux"]);
    assert_eq!(passed[0].stderr_tail, ["checked"]);

    let failed = &summary.vms[1];
    let error = failed.error.as_deref().expect("error");
    assert!(
        error.contains("check \"postgres listens\" failed: exit 1, expected 0"),
        "{error}"
    );
    assert!(error.contains("port 5432: connection refused"), "{error}");
    let report = failed
        .checks
        .iter()
        .find(|c| c.name == "postgres listens")
        .expect("its report");
    assert_eq!((report.passed, report.runs), (false, 2));
    // In its log pane and its per-VM file too.
    let logs = logs_of(&events, 1);
    assert!(
        logs.iter()
            .any(|(_, t)| t == "check \"postgres listens\" ! port 5432: connection refused"),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|(_, t)| t == "check \"kernel is linux\" passed (exit 0)"),
        "{logs:#?}"
    );
    let text =
        std::fs::read_to_string(h.out.path().join(format!("vm_{}_summary.txt", failed.vmid)))
            .expect("per-VM summary");
    assert!(
        text.contains("postgres listens: failed: exit 1, expected 0 (2 runs)"),
        "{text}"
    );
    assert!(
        text.contains("stderr| port 5432: connection refused"),
        "{text}"
    );
    assert_eq!(pve_rollout::headless::exit_code(&summary), 1);
}
