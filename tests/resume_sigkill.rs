//! The real thing: `pve-rollout deploy` as a child process, SIGKILLed twice at chosen lines of
//! its output, against `pve-rollout sim` in another process; each rerun resumes, and in the end
//! every VM is verified and was cloned exactly once (the simulator's own `/sim/stats` says so).
//! Then a finished rollout run again says so, and `destroy` removes it, safely twice.

mod sim_process;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use sim_process::{BIN, sim_stats, start_sim, write_config};
const SCALE: &str = "0.02";
const VMS: usize = 3;

fn command(args: &[&str], config: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    c
}

/// Runs `deploy --headless` and SIGKILLs it when a line satisfies `kill_at`. Returns the lines
/// seen and whether it was killed.
fn deploy_until(config: &Path, kill_at: impl Fn(&str) -> bool) -> (Vec<String>, bool) {
    let mut child = command(&["deploy", "--headless", "--time-scale", SCALE], config)
        .spawn()
        .expect("deploy starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("utf-8 line");
        let hit = kill_at(&line);
        lines.push(line);
        if hit {
            child.kill().expect("SIGKILL");
            killed = true;
            break;
        }
    }
    let status = child.wait().expect("deploy ends");
    if killed {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{lines:#?}");
    }
    (lines, killed)
}

fn output(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = command(args, config).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sigkilled_deploy_resumes_and_clones_each_vm_once() {
    let sim = start_sim("fast", SCALE);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &sim, "kill", VMS);

    // Kill 1: the moment the second clone was accepted (its UPID is on the journal).
    let (lines, killed) = deploy_until(&config, |l| l.contains("kill-2") && l.contains("cloning "));
    assert!(killed, "kill point 1 reached: {lines:#?}");
    // Kill 2: in the resumed run, when the first VM's IP is found.
    let (lines, killed) = deploy_until(&config, |l| l.contains("kill-1") && l.contains("IP "));
    assert!(killed, "kill point 2 reached: {lines:#?}");
    // The third run finishes.
    let (lines, killed) = deploy_until(&config, |_| false);
    assert!(!killed);
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.contains(&format!("{VMS} verified"))
            || lines.iter().any(|l| l.contains("rollout finished")),
        "{lines:#?}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary.json"),
    )
    .expect("summary json");
    let vms = summary["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), VMS);
    assert!(vms.iter().all(|v| v["state"] == "verified"), "{summary:#}");

    let stats = sim_stats(&sim);
    for i in 1..=VMS {
        assert_eq!(
            stats["clones_by_name"][format!("kill-{i}")],
            1,
            "kill-{i} cloned once: {}",
            stats["clones_by_name"]
        );
    }

    // Run again: done, nothing touched.
    let (code, out, err) = output(&["deploy", "--headless", "--time-scale", SCALE], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already complete"), "{out}{err}");
    assert_eq!(sim_stats(&sim)["clones_by_name"], stats["clones_by_name"]);

    // destroy: refuses to act unasked without a terminal, then removes all three, then nothing.
    let (code, out, err) = output(&["destroy", "--time-scale", SCALE], &config);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = output(&["destroy", "--yes", "--time-scale", SCALE], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("removed {VMS} of {VMS}")), "{out}");
    let (code, out, err) = output(&["destroy", "--yes", "--time-scale", SCALE], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to remove"), "{out}");
}
