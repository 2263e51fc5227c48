//! The real thing: `pve-rollout deploy` as a child process, SIGKILLed twice at chosen lines of
//! its output, against `pve-rollout sim` in another process; each rerun resumes, and in the end
//! every VM is verified and was cloned exactly once (the simulator's own `/sim/stats` says so).
//! Then a finished rollout run again says so, and `destroy` removes it, safely twice.

mod sim_process;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sim_process::{BIN, SimProcess, sim_stats, start_sim, write_config_with};
const SCALE: &str = "0.02";
const VMS: usize = 3;

/// The test's deploy.toml: `defaults` lines go into `[defaults]`, `extra` sections at the end.
fn write_config(dir: &Path, sim: &SimProcess, defaults: &str, extra: &str) -> PathBuf {
    write_config_with(dir, sim, "kill", VMS, defaults, extra)
}

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
fn deploy_until(config: &Path, kill_at: impl FnMut(&str) -> bool) -> (Vec<String>, bool) {
    deploy_with_env_until(config, &[], kill_at)
}

/// [`deploy_until`] with more environment variables for the child.
fn deploy_with_env_until(
    config: &Path,
    env: &[(&str, &str)],
    mut kill_at: impl FnMut(&str) -> bool,
) -> (Vec<String>, bool) {
    let mut child = command(&["deploy", "--headless", "--time-scale", SCALE], config)
        .envs(env.iter().copied())
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
    let config = write_config(dir.path(), &sim, "", "");

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

/// The hook: notes each start (with what it sees of `PVE_TOKEN_SECRET`) and end in `ran`; the
/// first VM's hook ends at once, the others wait for the `release` file.
const HOOK: &str = r#"
d="$1"; name="$2"
echo "start $name ${PVE_TOKEN_SECRET:-unset}" >> "$d/ran"
echo "hook for $name"
if [ "$name" != kill-1 ]; then
  echo "blocking $name"
  i=0; while [ ! -e "$d/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
fi
echo "end $name" >> "$d/ran"
"#;

/// Writes its file when dropped.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

#[test]
fn sigkill_while_hooks_run_then_resume_runs_only_the_cut_off_hooks() {
    let sim = start_sim("fast", SCALE);
    let dir = tempfile::tempdir().expect("temp dir");
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).expect("hooks dir");
    let script = hooks.join("hook.sh");
    std::fs::write(&script, HOOK).expect("hook script");
    let config = write_config(
        dir.path(),
        &sim,
        "",
        &format!(
            "[hooks]\non_verified = [\"sh\", \"{}\", \"{}\", \"{{name}}\"]\nmax_parallel = 3\n",
            script.display(),
            hooks.display()
        ),
    );
    // The secret reaches pve-rollout through its environment, as an operator would give it.
    // Whatever happens below, the hooks the SIGKILL orphans may end (they wait at most 60 s).
    let _release = Release(hooks.join("release"));
    let secret = std::fs::read_to_string(&sim.secret_file).expect("secret file");
    let env = [("PVE_TOKEN_SECRET", secret.trim())];
    let ran = || -> Vec<String> {
        std::fs::read_to_string(hooks.join("ran"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };

    // Kill while kill-2's and kill-3's hooks run, kill-1's having ended.
    let (mut done, mut blocking) = (false, 0);
    let (lines, killed) = deploy_with_env_until(&config, &env, |l| {
        done |= l.contains("kill-1 (") && l.contains("on_verified hook: exit 0");
        blocking += usize::from(l.contains("hook | blocking kill-"));
        done && blocking == 2
    });
    assert!(killed, "kill point reached: {lines:#?}");
    // Its output streamed into the headless lines, per VM.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kill-1 (") && l.contains("hook | hook for kill-1")),
        "{lines:#?}"
    );
    // The orphaned hooks (SIGKILL leaves nothing to stop them) may now end.
    std::fs::write(hooks.join("release"), "").expect("release");

    let (lines, killed) = deploy_with_env_until(&config, &env, |_| false);
    assert!(!killed);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kill-1 (")
                && l.contains("on_verified hook: done in an earlier run")),
        "{lines:#?}"
    );
    let starts: Vec<String> = ran()
        .into_iter()
        .filter(|l| l.starts_with("start "))
        .collect();
    let count = |name: &str| {
        starts
            .iter()
            .filter(|l| l.starts_with(&format!("start {name} ")))
            .count()
    };
    assert_eq!(
        (count("kill-1"), count("kill-2"), count("kill-3")),
        (1, 2, 2),
        "finished hooks are not run again, cut-off ones are: {starts:#?}"
    );
    assert!(
        starts.iter().all(|l| l.ends_with(" unset")),
        "a hook saw the token secret: {starts:#?}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary.json"),
    )
    .expect("summary json");
    let vms = summary["vms"].as_array().expect("vms");
    assert!(vms.iter().all(|v| v["state"] == "verified"), "{summary:#}");
    assert_eq!(vms[0]["hook"]["state"], "done-before", "{summary:#}");
    assert_eq!(vms[1]["hook"]["state"], "succeeded", "{summary:#}");

    // Every hook done: the rollout is complete.
    let (code, out, err) = output(&["deploy", "--headless", "--time-scale", SCALE], &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already complete"), "{out}{err}");
}

#[test]
fn bad_hooks_and_checks_are_refused_with_exit_2_before_any_request() {
    let sim = start_sim("fast", SCALE);
    let dir = tempfile::tempdir().expect("temp dir");
    let before = sim_stats(&sim)["requests_total"].clone();
    assert!(before.is_u64(), "requests_total in /sim/stats: {before}");
    for (extra, says) in [
        ("[hooks]\non_verified = []", "hooks.on_verified"),
        (
            "[hooks]\non_verified = [\"echo\", \"{hostname}\"]",
            "unknown placeholder {hostname}",
        ),
        (
            "[hooks]\non_finished = [\"./no-such-hook.sh\"]",
            "no-such-hook.sh does not exist",
        ),
        (
            "[hooks]\non_verified = \"ansible-playbook site.yml\"",
            "expected an array",
        ),
        (
            "[[checks.exec]]\nname = \"ssh\"\ncommand = \"ss -ltn\"",
            "checks.exec[0].command",
        ),
    ] {
        let config = write_config(dir.path(), &sim, "", extra);
        let (code, out, err) = output(&["deploy", "--headless", "--time-scale", SCALE], &config);
        assert_eq!(code, 2, "{extra}: {out}{err}");
        assert!(err.contains(says), "{extra}: {err}");
    }
    for (defaults, says) in [
        (
            "disks = [{ slot = \"scsi0\", size = \"10G\", storage = \"ssd\" }]",
            "defaults.disks[0].slot",
        ),
        (
            "disks = [{ slot = \"scsi1\", size = 10, storage = \"ssd\" }]",
            "defaults.disks[0].size",
        ),
    ] {
        let config = write_config(dir.path(), &sim, defaults, "");
        let (code, out, err) = output(&["deploy", "--headless", "--time-scale", SCALE], &config);
        assert_eq!(code, 2, "{defaults}: {out}{err}");
        assert!(err.contains(says), "{defaults}: {err}");
    }
    assert_eq!(
        sim_stats(&sim)["requests_total"],
        before,
        "a request was sent"
    );
    assert!(!dir.path().join("out").exists(), "something was created");
}

/// Pool addresses are journaled: a rerun keeps every address it gave out, even when the pool
/// was widened in between (handing out in order afresh would renumber every VM).
#[test]
fn sigkilled_deploy_keeps_pool_addresses() {
    let sim = start_sim("fast", SCALE);
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = |range: &str| {
        format!(
            "ip_pool = \"{range}/24\"\ngateway = \"10.0.10.1\"\nnameservers = [\"10.0.10.2\"]\nsearchdomain = \"lab.example\""
        )
    };
    let config = write_config(dir.path(), &sim, &pool("10.0.10.20-10.0.10.29"), "");

    // Kill while the second VM clones: the plan put every VM's address on the journal first.
    let (lines, killed) = deploy_until(&config, |l| l.contains("kill-2") && l.contains("cloning "));
    assert!(killed, "kill point reached: {lines:#?}");
    let journal = std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    assert!(
        journal.contains("\"address\":\"10.0.10.21/24\""),
        "{journal}"
    );

    // The operator widens the pool downwards; the resumed run keeps .20 to .22 (afresh, the
    // VMs would get .10 to .12).
    let config = write_config(dir.path(), &sim, &pool("10.0.10.10-10.0.10.29"), "");
    let (lines, killed) = deploy_until(&config, |_| false);
    assert!(!killed);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary.json"),
    )
    .unwrap_or_else(|e| panic!("summary json: {e}: {lines:#?}"));
    let ips: Vec<(String, String)> = summary["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_string(),
                v["ip"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        ips,
        [
            ("kill-1".to_string(), "10.0.10.20".to_string()),
            ("kill-2".to_string(), "10.0.10.21".to_string()),
            ("kill-3".to_string(), "10.0.10.22".to_string()),
        ],
        "{summary:#}"
    );
    let stats = sim_stats(&sim);
    for i in 1..=VMS {
        assert_eq!(stats["clones_by_name"][format!("kill-{i}")], 1, "{stats:#}");
    }
}

/// With two NICs each taking from its own pool, a rerun after SIGKILL keeps every NIC's address:
/// net1's are journaled beside net0's.
#[test]
fn sigkilled_deploy_keeps_every_nics_pool_addresses() {
    let sim = start_sim("fast", SCALE);
    let dir = tempfile::tempdir().expect("temp dir");
    let nics = |low: u8| {
        format!(
            "networks = [\n  {{ bridge = \"vmbr1\", ip_pool = \"10.0.10.{low}-10.0.10.29/24\" }},\n  \
             {{ bridge = \"vmbr0\", vlan = 20, ip_pool = \"10.0.20.{low}-10.0.20.29/24\" }},\n]"
        )
    };
    let config = write_config(dir.path(), &sim, &nics(20), "");
    let (lines, killed) = deploy_until(&config, |l| l.contains("kill-2") && l.contains("cloning "));
    assert!(killed, "kill point reached: {lines:#?}");
    let journal = std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    assert!(
        journal.contains("\"nic_addresses\":{\"net1\":\"10.0.20.22/24\"}"),
        "{journal}"
    );

    // Both pools widened downwards: the resumed run keeps .20 to .22 on both NICs.
    let config = write_config(dir.path(), &sim, &nics(10), "");
    let (lines, killed) = deploy_until(&config, |_| false);
    assert!(!killed);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary.json"),
    )
    .unwrap_or_else(|e| panic!("summary json: {e}: {lines:#?}"));
    for (i, vm) in summary["vms"].as_array().expect("vms").iter().enumerate() {
        assert_eq!(vm["state"], "verified", "{summary:#}");
        assert_eq!(vm["ip"], format!("10.0.10.{}", 20 + i), "{summary:#}");
        assert_eq!(
            vm["nics"][1]["expected"][0],
            format!("10.0.20.{}/24", 20 + i),
            "{summary:#}"
        );
        assert_eq!(vm["nics"][1]["vlan"], 20, "{summary:#}");
    }
    let stats = sim_stats(&sim);
    for i in 1..=VMS {
        assert_eq!(stats["clones_by_name"][format!("kill-{i}")], 1, "{stats:#}");
    }
}
