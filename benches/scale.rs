//! 1000 VMs over 8 simulated nodes (`cluster` scenario, small template, short delays) must all be
//! verified. The simulator runs in this process; the rollout (engine + the dashboard's model fed
//! every event, as the TUI does) runs in a child process, so its peak RSS is the tool's own and
//! not the simulator's. After the rollout the child fills the log store to its 10k lines and
//! reports its peak RSS again.
//!
//! The rollout runs twice on the same seed, each against a fresh simulator: with the client's
//! default caps (2 requests in flight per node, 16 overall), then with one cap of 2 for the whole
//! process (what the client did before it capped per node). The simulator's per-node counters
//! show that no node served more than its cap at once.
//!
//! `cargo bench --bench scale`. Knobs: `BENCH_VMS` (1000), `BENCH_SCALE` (0.05), `BENCH_SEED` (3),
//! `BENCH_BASELINE` (`0` skips the global-cap run).

use std::process::Command;
use std::time::{Instant, SystemTime};

use pve_rollout::demo::{self, DemoSettings, SimAccess};
use pve_rollout::engine::event::{Event, Level};
use pve_rollout::engine::{self, Clock, Rollout, plan};
use pve_rollout::pve::Client;
use pve_rollout::sim::scenario::Span;
use pve_rollout::sim::{self, Scenario, SimOptions};
use pve_rollout::ui::logs::LOG_CAPACITY;
use pve_rollout::ui::model::Model;
use pve_rollout::ui::update::{Msg, update};
use tokio::sync::mpsc;

const ROLE: &str = "BENCH_SCALE_ROLE";

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmHWM` (peak resident set) of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if std::env::var(ROLE).as_deref() == Ok("rollout") {
        runtime.block_on(rollout());
    } else {
        runtime.block_on(simulator());
    }
}

/// The parent: the runs, each a simulator and a child that rolls out against it.
async fn simulator() {
    let wall = Instant::now();
    let per_node = pve_rollout::pve::DEFAULT_MAX_IN_FLIGHT_PER_NODE;
    let run = one_run(pve_rollout::pve::DEFAULT_MAX_IN_FLIGHT, per_node, "").await;
    if env("BENCH_BASELINE", 1u8) == 1 {
        let base = one_run(per_node, per_node, "global_cap_").await;
        println!("ratio_simulated_s_global_cap={:.3}", run / base);
    }
    println!("wall_s={:.1}", wall.elapsed().as_secs_f64());
}

/// One rollout with these caps; prints its figures with `prefix`; returns its simulated seconds.
async fn one_run(max_in_flight: usize, per_node: usize, prefix: &str) -> f64 {
    let vms = env("BENCH_VMS", 1000usize);
    let scale = env("BENCH_SCALE", 0.05f64);
    let mut scenario = Scenario::builtin("cluster").expect("cluster scenario");
    // Scale, not fault handling: keep every node up, and clone a small template (a 2 GiB cloud
    // image, grown by the resize) so 1000 clones do not queue on storage.
    scenario.faults.node_offline.clear();
    scenario.template.disk_size = "2G".into();
    // Every clone takes the cluster-wide allocation lock of the shared storage (10 s timeout):
    // keep its hold short so 1000 clones, 5 a second, do not queue past it.
    for storage in &mut scenario.storages {
        storage.alloc_s = Span::new(0.02, 0.05);
    }
    let sim = sim::start(SimOptions {
        scenario,
        seed: env("BENCH_SEED", 3u64),
        time_scale: scale,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let access = SimAccess::of(&sim);
    let t0 = sim.now();
    let wall = Instant::now();
    let exe = std::env::current_exe().expect("own path");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .env(ROLE, "rollout")
            .env("BENCH_VMS", vms.to_string())
            .env("BENCH_SCALE", scale.to_string())
            .env("BENCH_MAX_IN_FLIGHT", max_in_flight.to_string())
            .env("BENCH_MAX_IN_FLIGHT_PER_NODE", per_node.to_string())
            .env("BENCH_SIM_URL", &access.url)
            .env("BENCH_SIM_TOKEN_ID", &access.token_id)
            .env("BENCH_SIM_TOKEN_SECRET", &access.token_secret)
            .env("BENCH_SIM_FINGERPRINT", &access.fingerprint)
            .output()
    })
    .await
    .expect("join")
    .expect("child runs");
    let stats = sim.stats();
    let simulated = sim.now() - t0;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("{prefix}{line}");
    }
    let peak_node = stats
        .node_load
        .values()
        .map(|l| l.peak_in_flight)
        .max()
        .unwrap_or(0);
    for (node, load) in &stats.node_load {
        eprintln!(
            "# {prefix}{node}: {} requests, at most {} at once",
            load.requests, load.peak_in_flight
        );
    }
    for (endpoint, n) in &stats.requests_by_endpoint {
        eprintln!("# {prefix}{:8.2}/VM {endpoint}", *n as f64 / vms as f64);
    }
    println!("{prefix}max_in_flight={max_in_flight}");
    println!("{prefix}max_in_flight_per_node={per_node}");
    println!("{prefix}wall_s={:.1}", wall.elapsed().as_secs_f64());
    println!("{prefix}simulated_s={simulated:.0}");
    println!("{prefix}requests_total={}", stats.requests_total);
    println!(
        "{prefix}requests_per_vm={:.1}",
        stats.requests_total as f64 / vms as f64
    );
    println!("{prefix}peak_in_flight={}", stats.peak_in_flight);
    println!("{prefix}peak_in_flight_one_node={peak_node}");
    println!("{prefix}peak_rss_simulator_mib={:.1}", peak_rss_mib());
    assert!(out.status.success(), "rollout child failed: {}", out.status);
    assert!(
        peak_node <= per_node as u64,
        "a node served {peak_node} requests at once, above the cap of {per_node}"
    );
    simulated
}

/// The child: engine + dashboard model, as `pve-rollout deploy` runs them (minus the terminal).
async fn rollout() {
    let vms = env("BENCH_VMS", 1000usize);
    let scale = env("BENCH_SCALE", 0.05f64);
    let var = |k: &str| std::env::var(k).expect("set by the parent");
    let access = SimAccess {
        url: var("BENCH_SIM_URL"),
        token_id: var("BENCH_SIM_TOKEN_ID"),
        token_secret: var("BENCH_SIM_TOKEN_SECRET"),
        fingerprint: var("BENCH_SIM_FINGERPRINT"),
    };
    let out = tempfile::tempdir().expect("temp dir");
    let mut settings = DemoSettings {
        vms,
        max_in_flight: env(
            "BENCH_MAX_IN_FLIGHT",
            pve_rollout::pve::DEFAULT_MAX_IN_FLIGHT,
        ),
        max_in_flight_per_node: env(
            "BENCH_MAX_IN_FLIGHT_PER_NODE",
            pve_rollout::pve::DEFAULT_MAX_IN_FLIGHT_PER_NODE,
        ),
        output: out.path().to_path_buf(),
        memory_mib: 512,
        // The template is on the shared NFS storage: clones land on every node.
        storage: "shared".into(),
        deployment_delay: "200ms".into(),
        stabilization: "1s".into(),
        ..DemoSettings::default()
    };
    let mut client_config = demo::client_config_at(&access, settings.max_in_flight, scale);
    client_config.max_in_flight_per_node = settings.max_in_flight_per_node;
    let client = Client::new(client_config).expect("client");
    settings.nodes = demo::online_nodes(&client).await.expect("nodes");
    let config = demo::config_at(&access, &settings).expect("config");
    let plan = plan::build(&client, &config).await.expect("preflight");
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    let engine = tokio::spawn(engine::run(
        Rollout {
            client,
            config,
            plan,
            clock: Clock::new(scale),
            linger: false,
        },
        etx,
        crx,
    ));
    let mut model = Model::new("pve-rollout", SystemTime::now());
    let mut logs = 0usize;
    while let Some(event) = erx.recv().await {
        logs += usize::from(matches!(event, Event::Log { .. }));
        update(&mut model, Msg::Engine(event));
    }
    drop(ctx);
    let summary = engine.await.expect("engine task");
    let rss_rollout = peak_rss_mib();
    let verified = summary.vms.iter().filter(|v| v.state == "verified").count();
    for v in summary.vms.iter().filter(|v| v.state != "verified") {
        eprintln!("# {} {}: {:?}", v.name, v.state, v.error);
    }
    for n in logs..LOG_CAPACITY {
        update(
            &mut model,
            Msg::Engine(Event::Log {
                vm: Some(n % vms),
                level: Level::Info,
                text: format!("filler line {n}: agent ping 1/3 ok, waiting for the stabilisation"),
            }),
        );
    }
    println!("vms={vms}");
    println!("verified={verified}");
    println!("log_lines_from_rollout={logs}");
    println!("peak_rss_rollout_mib={rss_rollout:.1}");
    println!("peak_rss_with_10k_log_lines_mib={:.1}", peak_rss_mib());
    assert_eq!(verified, vms, "every VM verified");
}
