//! End to end: the real binary's `demo` (dashboard + in-process simulator) driven through a
//! private tmux server, the way an operator would: it starts, states appear, `P` pauses and
//! resumes, `?` shows the help, the rollout finishes and stays on screen, `q` quits, and the
//! summary is on disk (and its path printed after the terminal is restored).
//!
//! Needs tmux (`cargo test -- --include-ignored`). Each test owns a tmux server on its own socket
//! (`tmux -L`), killed on drop; nothing waits on a fixed sleep: the screen is polled until what
//! we wait for shows, within a deadline (`PVR_E2E_TIMEOUT_SECS` scales it, default 60 s).

#![cfg(unix)]

mod sim_process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The mission's five states, as the dashboard spells them.
const MISSION_STATES: [&str; 5] = [
    "cloning",
    "booting",
    "awaiting-agent",
    "IP-found",
    "verified",
];

static NEXT_SERVER: AtomicU32 = AtomicU32::new(0);

/// A private tmux server running one command in a window of its own size.
struct Tmux {
    socket: String,
    /// Where tmux put the socket (removed on drop: tmux leaves it behind).
    socket_path: Option<PathBuf>,
    /// The command's exit code is written here when it ends (tmux's own `pane_dead_status` is
    /// sometimes never filled in: the child stays a zombie).
    exit_file: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, width: u16, height: u16, argv: &[&str]) -> Tmux {
        let socket = format!(
            "pvr-e2e-{}-{}",
            std::process::id(),
            NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
        );
        // remain-on-exit keeps the pane (and what the program printed) after it exits
        let conf = dir.join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 2000\n",
        )
        .expect("write tmux.conf");
        let exit_file = dir.join("exit-code");
        let script = format!(
            "\"$@\"; echo $? > {}",
            shell_quote(exit_file.to_str().expect("utf-8 path"))
        );
        let command = ["sh", "-c", &script, "sh"]
            .iter()
            .chain(argv)
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let mut tmux = Tmux {
            socket,
            socket_path: None,
            exit_file,
        };
        let out = tmux.run(&[
            "-f",
            conf.to_str().expect("utf-8 path"),
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            "e2e",
            &command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = tmux
            .run(&["display-message", "-p", "-t", "e2e", "#{socket_path}"])
            .stdout;
        let path = String::from_utf8_lossy(&path).trim().to_string();
        tmux.socket_path = (!path.is_empty()).then(|| path.into());
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("tmux runs (is it installed?)")
    }

    fn send(&self, key: &str) {
        let out = self.run(&["send-keys", "-t", "e2e", key]);
        assert!(
            out.status.success(),
            "send-keys {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    /// Poll the screen until `done` holds; panic with the last screen after the deadline.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.poll_screen(what, done, false)
    }

    /// Like [`Self::wait_for`], for what the program printed before it exited.
    fn wait_for_last_output(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.poll_screen(what, done, true)
    }

    fn poll_screen(&self, what: &str, done: impl Fn(&str) -> bool, exited_ok: bool) -> String {
        let deadline = Instant::now() + timeout();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if let (false, Some(status)) = (exited_ok, self.exit_status()) {
                panic!("the program exited ({status}) while waiting for {what}:\n{screen}");
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Some(exit code)` once the program has ended.
    fn exit_status(&self) -> Option<String> {
        let code = std::fs::read_to_string(&self.exit_file).ok()?;
        let code = code.trim();
        (!code.is_empty()).then(|| code.to_string())
    }

    fn wait_for_exit(&self) -> String {
        let deadline = Instant::now() + timeout();
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after q:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn timeout() -> Duration {
    let secs = std::env::var("PVR_E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The header's first row (title, elapsed, PAUSED / FINISHED flags).
fn title_row(screen: &str) -> &str {
    screen.lines().next().unwrap_or("")
}

/// How many VMs the header counts in `state` (its second row reads `◐ 2 cloning  ◑ 1 booting`).
fn count(screen: &str, state: &str) -> usize {
    let row = screen.lines().nth(1).unwrap_or("");
    row.split("  ")
        .filter_map(|item| {
            let mut words = item.split_whitespace().skip(1);
            let n = words.next()?.parse().ok()?;
            (words.next()? == state).then_some(n)
        })
        .next()
        .unwrap_or(0)
}

#[test]
#[ignore = "needs tmux"]
fn demo_runs_pauses_shows_help_finishes_and_writes_the_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("output dir");
    let tmux = Tmux::start(
        dir.path(),
        140,
        45,
        &[
            env!("CARGO_BIN_EXE_pve-rollout"),
            "demo",
            "--vms",
            "5",
            "--scenario",
            "fast",
            "--output",
            out.to_str().expect("utf-8 path"),
        ],
    );

    // The dashboard comes up with the plan, and the mission's states start to show.
    tmux.wait_for("the grid of 5 VMs", |s| {
        s.contains("VMs (5)") && s.contains("Log · all VMs")
    });
    tmux.wait_for("a VM in one of the mission's states", |s| {
        MISSION_STATES.iter().any(|state| count(s, state) > 0)
    });

    // Pause everything (so the rollout cannot finish while we look around), then resume.
    tmux.send("P");
    tmux.wait_for("the PAUSED flag", |s| title_row(s).contains("PAUSED"));

    tmux.send("?");
    // Waiting for a line inside the overlay, not just its title: a capture can catch a frame
    // half drawn.
    tmux.wait_for("the help overlay with the keymap's lines", |s| {
        s.contains("Help · keys") && s.contains("pause or resume the selected VM")
    });
    tmux.send("Escape");
    tmux.wait_for("the help to close", |s| !s.contains("Help · keys"));

    // d opens the diagnostics pane: the process's own tracing records (each API call at debug,
    // with its status), with tui-logger's target list; d closes it again.
    tmux.send("d");
    tmux.wait_for(
        "the diagnostics pane with an API call's tracing record",
        |s| {
            s.contains("Diagnostics · tracing records")
                && s.contains("pve_rollout::pve::transport")
                && s.contains(" -> 200 in ")
        },
    );
    tmux.send("d");
    tmux.wait_for("the diagnostics pane to close", |s| {
        !s.contains("Diagnostics ·") && s.contains("Log · all VMs")
    });

    tmux.send("P");
    tmux.wait_for("the PAUSED flag to go", |s| {
        !title_row(s).contains("PAUSED")
    });

    // The rollout finishes and stays on screen until q.
    let done = tmux.wait_for("the rollout to finish", |s| {
        title_row(s).contains("FINISHED")
    });
    assert_eq!(count(&done, "verified"), 5, "{done}");
    assert!(title_row(&done).contains("5 verified"), "{done}");
    assert!(
        tmux.exit_status().is_none(),
        "a finished rollout stays on screen"
    );

    // q quits at once (nothing in flight), exit code 0 (every VM verified), paths printed.
    tmux.send("q");
    assert_eq!(tmux.wait_for_exit(), "0", "{}", tmux.screen());
    // The exit code file can be written before tmux has drawn the program's last output.
    tmux.wait_for_last_output(
        "the summary's path printed after the terminal is restored",
        |s| s.contains("summary.json"),
    );

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json on disk"),
    )
    .expect("summary.json parses");
    let vms = summary["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 5);
    assert!(
        vms.iter().all(|vm| vm["state"] == "verified"),
        "{summary:#}"
    );
    assert!(out.join("summary.md").is_file());
}

#[test]
fn header_counts_are_read_from_the_screen() {
    let screen = " pve-rollout │ r on c │ elapsed 00:03\n · 1 queued  ◐ 2 cloning  ◒ 0 awaiting-agent  ✓ 12 verified\n";
    assert_eq!(count(screen, "cloning"), 2);
    assert_eq!(count(screen, "awaiting-agent"), 0);
    assert_eq!(count(screen, "verified"), 12);
    assert_eq!(count(screen, "booting"), 0);
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
}

impl Tmux {
    /// `(alternate screen on, mouse reporting on)` of the pane, as tmux tracks them.
    fn modes(&self) -> (bool, bool) {
        let out = self.run(&[
            "display-message",
            "-p",
            "-t",
            "e2e",
            "#{alternate_on} #{mouse_any_flag}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match text.split_whitespace().collect::<Vec<_>>()[..] {
            [alt, mouse] => (alt == "1", mouse == "1"),
            _ => panic!("tmux modes: {text:?}"),
        }
    }
}

fn demo_argv<'a>(out: &'a str, env: &'a [&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["env"];
    argv.extend_from_slice(env);
    argv.extend([
        env!("CARGO_BIN_EXE_pve-rollout"),
        "demo",
        "--vms",
        "3",
        "--scenario",
        "fast",
        "--output",
        out,
    ]);
    argv
}

/// A panic inside the dashboard (forced by the debug-build hook `PVE_ROLLOUT_TEST_PANIC`) leaves
/// the terminal as it found it: main screen, no mouse reporting, the panic message readable.
#[test]
#[ignore = "needs tmux"]
fn a_panic_in_the_dashboard_restores_the_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8 path");

    // Control: while the dashboard runs, tmux sees the alternate screen and mouse reporting on
    // (so reading 0 below means they were switched off, not that tmux cannot tell).
    let running = Tmux::start(dir.path(), 120, 40, &demo_argv(out, &[]));
    running.wait_for("the dashboard", |s| s.contains("VMs (3)"));
    assert_eq!(running.modes(), (true, true), "{}", running.screen());
    drop(running);

    // Its own output dir: the control run may still hold its journal's lock for a moment after
    // its tmux session is killed.
    let crash_dir = tempfile::tempdir().expect("temp dir");
    let crash_out = crash_dir.path().join("out");
    let crashed = Tmux::start(
        crash_dir.path(),
        120,
        40,
        &demo_argv(
            crash_out.to_str().expect("utf-8 path"),
            &["RUST_BACKTRACE=0", "PVE_ROLLOUT_TEST_PANIC=5"],
        ),
    );
    let code = crashed.wait_for_exit();
    assert_ne!(code, "0", "a panic is a failure exit");
    // tmux may draw the last output after the exit code is written; the restore sequences come
    // before the panic message, so once the message shows, the modes are final.
    let screen = crashed.wait_for_last_output("the panic message", |s| {
        s.contains("deliberate panic while drawing frame 5")
    });
    assert_eq!(
        crashed.modes(),
        (false, false),
        "alternate screen / mouse reporting left on after the panic:\n{screen}"
    );
    assert!(
        !screen.contains("VMs (3)"),
        "the dashboard is gone from the screen:\n{screen}"
    );
}

impl Tmux {
    /// The pid of the program the pane runs (the child of the pane's `sh`).
    fn program_pid(&self) -> String {
        let out = self.run(&["display-message", "-p", "-t", "e2e", "#{pane_pid}"]);
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out = Command::new("pgrep")
            .args(["-P", &shell])
            .output()
            .expect("pgrep runs");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !pid.is_empty() && !pid.contains('\n'),
            "one child of {shell}: {pid:?}"
        );
        pid
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.program_pid()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {signal}");
    }
}

/// SIGTERM and SIGHUP reach the dashboard like a confirmed Ctrl-C: the rollout is aborted, the
/// outputs written, the terminal restored, the exit code the documented 5; then the same
/// `deploy` resumes and verifies every VM.
#[test]
#[ignore = "needs tmux"]
fn sigterm_and_sighup_abort_the_dashboard_and_the_same_deploy_resumes() {
    let sim = sim_process::start_sim("fast", "0.02");
    for (run, signal) in ["TERM", "HUP"].into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = sim_process::write_config(dir.path(), &sim, &format!("tui{run}"), 3);
        let config = config.to_str().expect("utf-8 path");
        let argv = [
            sim_process::BIN,
            "deploy",
            "-c",
            config,
            "--time-scale",
            "0.02",
        ];
        let tmux = Tmux::start(dir.path(), 120, 40, &argv);
        tmux.wait_for("a VM cloning", |s| {
            s.contains("VMs (3)") && count(s, "cloning") > 0
        });
        tmux.signal(signal);
        assert_eq!(tmux.wait_for_exit(), "5", "SIG{signal}: {}", tmux.screen());
        let screen =
            tmux.wait_for_last_output("the summary's path", |s| s.contains("summary.json"));
        assert_eq!(tmux.modes(), (false, false), "terminal restored:\n{screen}");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary.json"),
        )
        .expect("summary json");
        assert_eq!(summary["rollout"]["aborted"], true, "{summary:#}");
        let vms = summary["vms"].as_array().expect("vms");
        assert!(
            vms.iter().any(|v| v["state"] == "aborted"
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("aborted in "))),
            "{summary:#}"
        );
        drop(tmux);

        // The same deploy resumes and verifies all.
        let out = Command::new(sim_process::BIN)
            .args(["deploy", "--headless", "--time-scale", "0.02", "-c", config])
            .output()
            .expect("deploy runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary.json"),
        )
        .expect("summary json");
        let vms = summary["vms"].as_array().expect("vms");
        assert!(vms.iter().all(|v| v["state"] == "verified"), "{summary:#}");
    }
}

/// A panic inside one VM's task (the debug-build hook `PVE_ROLLOUT_TEST_VM_PANIC`) fails that VM
/// alone: the dashboard keeps the terminal (nothing printed over it), `r` on the VM verifies it,
/// and the panic's report is printed once the terminal is given back.
#[test]
#[ignore = "needs tmux"]
fn a_panic_in_a_vm_task_fails_that_vm_and_r_retries_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8 path");
    let tmux = Tmux::start(
        dir.path(),
        140,
        45,
        &demo_argv(
            out,
            &[
                "RUST_BACKTRACE=0",
                "PVE_ROLLOUT_TEST_VM_PANIC=demo-2:booting",
            ],
        ),
    );
    let screen = tmux.wait_for("VM 2 failed", |s| count(s, "failed") == 1);
    assert_eq!(
        tmux.modes(),
        (true, true),
        "the dashboard goes on:\n{screen}"
    );
    assert!(
        !screen.contains("panicked at"),
        "nothing printed over it:\n{screen}"
    );
    // Select the second VM and retry it.
    tmux.send("j");
    tmux.wait_for("the detail of demo-2", |s| s.contains("internal error"));
    tmux.send("r");
    let done = tmux.wait_for("every VM verified", |s| {
        title_row(s).contains("FINISHED") && count(s, "verified") == 3
    });
    assert_eq!(tmux.modes(), (true, true), "{done}");
    tmux.send("q");
    assert_eq!(tmux.wait_for_exit(), "0", "{}", tmux.screen());
    let screen = tmux.wait_for_last_output("the held panic report", |s| {
        s.contains("a background task panicked") && s.contains("deliberate panic in demo-2")
    });
    assert_eq!(tmux.modes(), (false, false), "{screen}");
}

/// The `on_verified` hook's output in the dashboard: `deploy` in tmux against a simulator in
/// this process; the hook says a line and waits for the test's gate file, so the VM is seen
/// `provisioning` and the line is seen in that VM's own log pane before it goes on.
#[test]
#[ignore = "needs tmux"]
fn hook_output_streams_into_the_vms_log_pane() {
    use pve_rollout::demo::{self, DemoSettings};
    use pve_rollout::sim::{self, Scenario, SimOptions};

    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let gate = dir.path().join("gate");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scale = "0.02";
    let sim = runtime
        .block_on(sim::start(SimOptions {
            scenario: Scenario::builtin("fast").expect("scenario"),
            time_scale: scale.parse().expect("scale"),
            ..SimOptions::default()
        }))
        .expect("simulator starts");
    let settings = DemoSettings {
        vms: 2,
        output: out.clone(),
        deployment_delay: "3s".into(),
        stabilization: "2s".into(),
        ..DemoSettings::default()
    };
    let hook = format!(
        "echo provisioned $1; i=0; while [ ! -e {} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
        shell_quote(gate.to_str().expect("utf-8 path"))
    );
    let config = format!(
        "{}\n[hooks]\non_verified = [\"sh\", \"-c\", {hook:?}, \"-\", \"{{name}}\"]\n",
        demo::config_toml(&sim, &settings)
    );
    let config_path = dir.path().join("deploy.toml");
    std::fs::write(&config_path, config).expect("deploy.toml");
    let secret = format!("PVE_TOKEN_SECRET={}", sim.token_secret());
    let tmux = Tmux::start(
        dir.path(),
        140,
        45,
        &[
            "env",
            &secret,
            env!("CARGO_BIN_EXE_pve-rollout"),
            "deploy",
            "-c",
            config_path.to_str().expect("utf-8 path"),
            "--time-scale",
            scale,
        ],
    );
    // demo-1 is selected: its pane is the right-hand log pane.
    let screen = tmux.wait_for(
        "demo-1 provisioning, its hook's line in its own pane",
        |s| {
            count(s, "provisioning") > 0
                && s.contains("Log · demo-1")
                && s.lines().any(|l| {
                    l.split_once("││")
                        .is_some_and(|(_, right)| right.contains("hook | provisioned demo-1"))
                })
        },
    );
    assert!(screen.contains("◎"), "the provisioning glyph:\n{screen}");
    std::fs::write(&gate, "").expect("open the gate");
    let done = tmux.wait_for("the rollout to finish", |s| {
        title_row(s).contains("FINISHED")
    });
    assert_eq!(count(&done, "verified"), 2, "{done}");
    tmux.send("q");
    assert_eq!(tmux.wait_for_exit(), "0", "{}", tmux.screen());
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json on disk"),
    )
    .expect("summary.json parses");
    assert_eq!(
        summary["vms"][1]["hook"]["state"], "succeeded",
        "{summary:#}"
    );
    drop(tmux);
    runtime.block_on(sim.shutdown());
}
