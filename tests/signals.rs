//! `pve-rollout deploy --headless` as a real process, stopped by SIGTERM (a CI job's limit, a
//! systemd stop) and by SIGHUP (a closed SSH session) at chosen lines of its output: each time
//! the outputs are written, every VM cut off reads `aborted` with its phase, the exit code is
//! the documented 5; then the same `deploy` resumes and verifies every VM, each cloned once.

#![cfg(unix)]

mod sim_process;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use sim_process::{BIN, sim_stats, start_sim, write_config};

const SCALE: &str = "0.02";
const VMS: usize = 3;
/// The exit code README documents for an aborted rollout.
const EXIT_ABORTED: i32 = 5;

/// Runs `deploy --headless`, sends `signal` when a line satisfies `at`, reads on to the end.
/// Returns the lines and the exit code.
fn deploy_signalled(config: &Path, signal: &str, at: impl Fn(&str) -> bool) -> (Vec<String>, i32) {
    let mut child = Command::new(BIN)
        .args(["deploy", "--headless", "--time-scale", SCALE, "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("deploy starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    let mut sent = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("utf-8 line");
        let hit = !sent && at(&line);
        lines.push(line);
        if hit {
            let status = Command::new("kill")
                .args(["-s", signal, &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
            sent = true;
        }
    }
    let code = child.wait().expect("deploy ends").code();
    assert!(
        sent || signal.is_empty(),
        "signal point reached: {lines:#?}"
    );
    (lines, code.unwrap_or(-1))
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/summary.json")).expect("summary.json written"),
    )
    .expect("summary json")
}

/// After an abort: the summary says so, and each VM is verified or `aborted` with its phase.
fn assert_aborted(dir: &Path, lines: &[String], signal: &str) {
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{signal} received; aborting"))),
        "{lines:#?}"
    );
    let summary = summary(dir);
    assert_eq!(summary["rollout"]["aborted"], true, "{summary:#}");
    let vms = summary["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), VMS);
    let mut cut_off = 0;
    for vm in vms {
        match vm["state"].as_str() {
            Some("verified") => {}
            Some("aborted") => {
                cut_off += 1;
                let error = vm["error"].as_str().unwrap_or_default();
                assert!(error.starts_with("aborted in "), "{vm:#}");
            }
            other => panic!("{other:?} is neither verified nor aborted: {summary:#}"),
        }
    }
    assert!(cut_off > 0, "{summary:#}");
    assert!(dir.join("out/summary.md").is_file());
}

#[test]
fn sigterm_and_sighup_write_the_outputs_and_the_same_deploy_resumes() {
    let sim = start_sim("fast", SCALE);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &sim, "sig", VMS);

    // SIGTERM the moment the second clone was accepted.
    let (lines, code) = deploy_signalled(&config, "TERM", |l| {
        l.contains("sig-2") && l.contains("cloning ")
    });
    assert_eq!(code, EXIT_ABORTED, "{lines:#?}");
    assert_aborted(dir.path(), &lines, "SIGTERM");

    // SIGHUP in the resumed run, when the first VM's IP is found.
    let (lines, code) =
        deploy_signalled(&config, "HUP", |l| l.contains("sig-1") && l.contains("IP "));
    assert_eq!(code, EXIT_ABORTED, "{lines:#?}");
    assert_aborted(dir.path(), &lines, "SIGHUP");

    // The same deploy again: every VM verified, each cloned once.
    let (lines, code) = deploy_signalled(&config, "", |_| false);
    assert_eq!(code, 0, "{lines:#?}");
    let summary = summary(dir.path());
    let vms = summary["vms"].as_array().expect("vms");
    assert!(vms.iter().all(|v| v["state"] == "verified"), "{summary:#}");
    let stats = sim_stats(&sim);
    for i in 1..=VMS {
        assert_eq!(
            stats["clones_by_name"][format!("sig-{i}")],
            1,
            "sig-{i} cloned once: {}",
            stats["clones_by_name"]
        );
    }
}
