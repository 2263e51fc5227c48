//! The operator's first minutes, against the simulator (in this process, on its own port): the
//! binary runs as a child with its own directory and environment. `init` (one node and the
//! 8-node `cluster` scenario) and `import-tf` write configs that `plan` accepts and `deploy`
//! completes; `deploy --events ndjson` streams the rollout as JSON lines; the log file holds the
//! run and never the secret; `insecure = true` is said once, without escape codes in a pipe.

use std::path::Path;
use std::process::Output;

use pve_rollout::demo::{self, DemoSettings};
use pve_rollout::sim::{self, Scenario, Sim, SimOptions};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pve-rollout");
const SCALE: f64 = 0.02;

async fn start(scenario: &str) -> Sim {
    sim::start(SimOptions {
        scenario: Scenario::builtin(scenario).expect("scenario"),
        seed: 3,
        time_scale: SCALE,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

/// `pve-rollout ARGS` in `cwd`, with only PATH, the token secret and `env` in its environment.
async fn run(sim: &Sim, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PVE_TOKEN_SECRET", sim.token_secret())
        .env("HOME", cwd);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("pve-rollout runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json parses")
}

/// `init` with flags only, then `plan` and `deploy` of what it wrote.
async fn init_plan_deploy(scenario: &str, vms: &str) -> (Value, String) {
    let sim = start(scenario).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fingerprint = sim.fingerprint();
    let init = [
        "init",
        "--url",
        &sim.url(),
        "--token-id",
        &sim.token_id(),
        "--fingerprint",
        &fingerprint,
        "--vms",
        vms,
        "--yes",
    ];
    let out = run(&sim, dir.path(), &[], &init).await;
    ok(&out, "init");
    let written = std::fs::read_to_string(dir.path().join("deploy.toml")).expect("deploy.toml");
    assert!(
        !written.contains(&sim.token_secret()),
        "the secret was written:\n{written}"
    );
    // A second init does not overwrite it.
    let again = run(&sim, dir.path(), &[], &init).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("--force"));

    let plan = run(&sim, dir.path(), &[], &["plan"]).await;
    ok(&plan, "plan");
    let scale = SCALE.to_string();
    let deploy = run(
        &sim,
        dir.path(),
        &[],
        &["deploy", "--headless", "--time-scale", &scale],
    )
    .await;
    ok(&deploy, "deploy");
    sim.shutdown().await;
    (summary(&dir.path().join("rollout-out")), written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_on_one_node_writes_a_config_that_plans_and_deploys() {
    let (summary, written) = init_plan_deploy("fast", "2").await;
    let vms = summary["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 2);
    assert!(
        vms.iter().all(|vm| vm["state"] == "verified"),
        "{summary:#}"
    );
    for comment in [
        "# Cloud-init templates found: ubuntu (9000 on pve1)",
        "# Bridges: pve1: vmbr0 vmbr1",
    ] {
        assert!(written.contains(comment), "{comment} missing:\n{written}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_on_the_8_node_cluster_spreads_the_vms_over_shared_storage() {
    let (summary, written) = init_plan_deploy("cluster", "8").await;
    let vms = summary["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 8);
    assert!(
        vms.iter().all(|vm| vm["state"] == "verified"),
        "{summary:#}"
    );
    assert!(written.contains("storage = \"shared\""), "{written}");
    let nodes: std::collections::BTreeSet<&str> =
        vms.iter().filter_map(|vm| vm["node"].as_str()).collect();
    assert!(nodes.len() > 1, "all on one node: {nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_tf_turns_the_fixture_into_a_config_plan_accepts() {
    let sim = start("fast").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/terraform");
    let out = run(
        &sim,
        dir.path(),
        &[],
        &[
            "import-tf",
            fixture.to_str().expect("utf-8"),
            "--url",
            &sim.url(),
            "--token-id",
            &sim.token_id(),
            "--fingerprint",
            &sim.fingerprint(),
        ],
    )
    .await;
    ok(&out, "import-tf");
    let stdout = text(&out.stdout);
    for skipped in [
        "provisioner \"local-exec\"",
        "lifecycle block",
        "onboot: a conditional",
    ] {
        assert!(stdout.contains(skipped), "{skipped} not named:\n{stdout}");
    }
    let plan = run(&sim, dir.path(), &[], &["plan", "--json"]).await;
    ok(&plan, "plan");
    let doc: Value = serde_json::from_slice(&plan.stdout).expect("plan --json parses");
    assert_eq!(doc["v"], 1);
    let names: Vec<&str> = doc["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["web-server-1", "db-server-1"]);
    assert_eq!(doc["vms"][1]["memory_mib"], 32768);
    assert_eq!(doc["vms"][1]["disk_size_bytes"], 256u64 << 30);
    let nics = &doc["vms"][1]["nics"];
    assert_eq!(nics[0]["name"], "net0", "{nics}");
    assert_eq!(nics[0]["bridge"], doc["vms"][1]["bridge"], "{nics}");
    sim.shutdown().await;
}

/// A config for `sim` from the demo's writer; `insecure` swaps the pin for `insecure = true`.
fn write_config(sim: &Sim, dir: &Path, vms: usize, insecure: bool) {
    let settings = DemoSettings {
        vms,
        output: dir.join("out"),
        ..DemoSettings::default()
    };
    let mut toml = demo::config_toml(sim, &settings);
    if insecure {
        let line = format!("fingerprint = \"{}\"", sim.fingerprint());
        toml = toml.replace(&line, "insecure = true");
    }
    std::fs::write(dir.join("deploy.toml"), toml).expect("write config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ndjson_stream_of_a_rollout_holds_the_summarys_facts_and_the_log_no_secret() {
    let sim = start("fast").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(&sim, dir.path(), 3, false);
    let scale = SCALE.to_string();
    let out = run(
        &sim,
        dir.path(),
        &[("RUST_LOG", "debug")],
        &["deploy", "--events", "ndjson", "--time-scale", &scale],
    )
    .await;
    ok(&out, "deploy");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["v"] == 1 && l["type"].is_string() && l["at"].is_string())
    );
    assert_eq!(
        lines.first().map(|l| &l["type"]),
        Some(&Value::from("planned"))
    );
    assert_eq!(
        lines.last().map(|l| &l["type"]),
        Some(&Value::from("finished"))
    );
    // Human lines went to stderr.
    assert!(
        text(&out.stderr).contains("[SUCCESS]"),
        "{}",
        text(&out.stderr)
    );

    let summary = summary(&dir.path().join("out"));
    let of = |kind: &str, name: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["type"] == kind && l["name"] == name)
            .collect()
    };
    for vm in summary["vms"].as_array().expect("vms") {
        let name = vm["name"].as_str().expect("name");
        let planned = lines[0]["vms"].as_array().expect("planned vms");
        assert!(
            planned
                .iter()
                .any(|p| p["name"] == name && p["vmid"] == vm["vmid"] && p["node"] == vm["node"])
        );
        let states = of("state", name);
        assert_eq!(
            states.last().map(|s| &s["state"]),
            Some(&vm["state"]),
            "{name}"
        );
        let ips = of("ip", name);
        assert_eq!(ips.last().map(|i| &i["ip"]), Some(&vm["ip"]), "{name}");
        assert!(vm["ip"].is_string());
    }

    // The log file: in the output dir by default, at debug here (RUST_LOG), never the secret.
    let log = std::fs::read_to_string(dir.path().join("out/pve-rollout.log")).expect("log file");
    assert!(
        log.contains("DEBUG") && log.contains("pve_rollout::events"),
        "{log}"
    );
    assert!(log.contains("verified"), "{log}");
    assert!(
        !log.contains(&sim.token_secret()),
        "the token secret is in the log"
    );
    assert!(!text(&out.stderr).contains(&sim.token_secret()));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_is_said_once_and_without_escape_codes_in_a_pipe() {
    let sim = start("fast").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(&sim, dir.path(), 1, true);
    for env in [&[][..], &[("RUST_LOG", "debug")][..]] {
        let out = run(&sim, dir.path(), env, &["plan"]).await;
        ok(&out, "plan");
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains('\x1b'),
            "escape codes in a pipe ({env:?}):\n{stderr}"
        );
        let warnings = stderr
            .lines()
            .filter(|l| l.contains("WARN") || l.starts_with("warning:"))
            .filter(|l| l.contains("insecure") || l.contains("certificate"))
            .count();
        assert_eq!(warnings, 1, "{env:?}:\n{stderr}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_on_resume_is_named_and_refused_without_a_terminal() {
    let sim = start("fast").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(&sim, dir.path(), 2, false);
    let scale = SCALE.to_string();
    let deploy = ["deploy", "--headless", "--time-scale", &scale];
    ok(&run(&sim, dir.path(), &[], &deploy).await, "first deploy");
    // The journal holds the settings themselves, and no secret.
    let journal = std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    assert!(
        journal.contains("\"demo-1.memory\":\"4096 MiB\""),
        "{journal}"
    );
    assert!(!journal.contains(&sim.token_secret()));

    // Same settings: no question, already complete.
    let same = run(&sim, dir.path(), &[], &deploy).await;
    ok(&same, "same settings");
    assert!(text(&same.stdout).contains("already complete"));

    // Memory doubled and a third VM: listed, and refused without a terminal (stdin is null).
    let settings = DemoSettings {
        vms: 3,
        memory_mib: 8192,
        output: dir.path().join("out"),
        ..DemoSettings::default()
    };
    std::fs::write(
        dir.path().join("deploy.toml"),
        demo::config_toml(&sim, &settings),
    )
    .expect("write");
    let refused = run(&sim, dir.path(), &[], &deploy).await;
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    for line in [
        "demo-1.memory: 4096 MiB -> 8192 MiB",
        "demo-2.memory: 4096 MiB -> 8192 MiB",
        "demo-3.vmid: (none) -> ",
        "--accept-changes",
    ] {
        assert!(stderr.contains(line), "{line} missing:\n{stderr}");
    }
    let after_refusal =
        std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    assert_eq!(
        after_refusal, journal,
        "a refused resume wrote to the journal"
    );

    // Accepted: the added VM alone (the VMs that exist keep what they were created with).
    let settings = DemoSettings {
        memory_mib: 4096,
        ..settings
    };
    std::fs::write(
        dir.path().join("deploy.toml"),
        demo::config_toml(&sim, &settings),
    )
    .expect("write");
    let accepted = run(
        &sim,
        dir.path(),
        &[],
        &[
            "deploy",
            "--headless",
            "--accept-changes",
            "--time-scale",
            &scale,
        ],
    )
    .await;
    ok(&accepted, "--accept-changes");
    assert!(text(&accepted.stderr).contains("demo-3.vmid: (none) -> "));
    let summary = summary(&dir.path().join("out"));
    assert_eq!(summary["vms"].as_array().map(Vec::len), Some(3));
    sim.shutdown().await;
}
