//! A 50-VM rollout against the in-process simulator, with the settings a user gets (every timeout
//! at its default; the original wait_for_vm.sh flow's 30 s stagger and 30 s stabilisation), and
//! optionally the same seed again with another setting as the baseline. Prints `key=value` lines
//! in simulated seconds, computed from the simulator's own records (`Sim::stats`), not from the
//! engine's view.
//!
//! `cargo bench --bench rollout`. Knobs (environment): `BENCH_SCENARIO` (`realistic`, a sparse
//! cloud-image template; or `realistic-thick`, a fully allocated 128 GiB one: the storage-bound
//! case),
//! `BENCH_VMS` (50), `BENCH_SEED` (7), `BENCH_SCALE` (wall seconds per simulated second),
//! `BENCH_TEMPLATE_DISK` (the template's disk; unset = the scenario's), `BENCH_BASELINE`
//! (`sequential` or `no-limit`: a second run to compare with, also with every default; unset =
//! none).
//!
//! Lower bound, from the scenario alone (no duration measured in the run): clone k (in any
//! order) starts no earlier than `(k - 1) x stagger` after the rollout's start; each VM then
//! needs at least its clone alone on the storage (the scenario's copy of the template's
//! allocated bytes at the storage's throughput, plus its drawn overhead and allocation), its drawn
//! qmstart, boot, agent and DHCP times, and the least verification can take (the stabilisation
//! and one guest command, `uname -a` and the agent's service, at the scenario's shortest run
//! time, calls at zero latency). Over all VMs that is smallest when the longest chains take the
//! earliest slots. And a storage copies at most its throughput: the clones starting at slot j or
//! later copy at least the bytes of the n - j + 1 smallest copies after slot j's time, so the
//! last clone ends no earlier than `max_j (slot_j + those bytes / throughput)`, followed by the
//! shortest remaining chain.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::{Event, Phase, VmState};
use pve_rollout::sim::{Scenario, SimStats};

struct Run {
    makespan_s: f64,
    lower_bound_s: f64,
    verified: usize,
    /// Simulated seconds from the rollout's start to each verified VM.
    verified_at: Vec<f64>,
    stats: SimStats,
    max_in_flight_per_node: usize,
}

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Case {
    scenario: String,
    vms: usize,
    seed: u64,
    scale: f64,
    disk: Option<String>,
}

async fn rollout(case: &Case, mode: &str, baseline: bool) -> Run {
    let no_limit = baseline && mode == "pipelined";
    let mut scenario = Scenario::builtin(&case.scenario).expect("scenario");
    if let Some(disk) = &case.disk {
        scenario.template.disk_size = disk.clone();
    }
    let exec_min = scenario.timing.exec_s.min;
    let settings = DemoSettings {
        vms: case.vms,
        mode: mode.into(),
        // The original wait_for_vm.sh flow's defaults: 30 s between clones, 30 s stabilisation.
        deployment_delay: "30s".into(),
        stabilization: "30s".into(),
        ..DemoSettings::default()
    };
    let mut h = common::Harness::start_with(scenario, case.seed, case.scale, settings).await;
    if no_limit {
        h.config.rollout.max_clones_per_storage = pve_rollout::config::ClonesPerStorage::Limit(0);
    }
    let delay = h.config.rollout.deployment_delay.as_secs_f64();
    let settle = h.config.checks.stabilization.as_secs_f64();
    let t0 = h.sim.now();
    let sim = &h.sim;
    // When each VM was verified, on the simulator's clock.
    let verified_at = std::sync::Mutex::new(Vec::new());
    let (summary, events) = h
        .run(false, |mut rx, tx| {
            let verified_at = &verified_at;
            async move {
                let mut events = Vec::new();
                while let Some(event) = rx.recv().await {
                    if let Event::VmState {
                        state:
                            VmState::Active {
                                phase: Phase::Verified,
                            },
                        ..
                    } = &event
                        && let Ok(mut at) = verified_at.lock()
                    {
                        at.push(sim.now() - t0);
                    }
                    events.push(event);
                }
                drop(tx);
                events
            }
        })
        .await;
    let verified_at = verified_at.into_inner().unwrap_or_default();
    for event in &events {
        if let Event::Log { text, .. } = event
            && text.contains("a clone alone copies in")
        {
            eprintln!("# {text}");
        }
    }
    let end = h.sim.now();
    // The rollout ends once its outputs are written, after the last VM is verified.
    eprintln!(
        "# last verified at {:.1} s, outputs written at {:.1} s",
        verified_at.iter().copied().fold(0.0, f64::max),
        end - t0
    );
    let stats = h.sim.stats();
    let verified = summary.vms.iter().filter(|v| v.state == "verified").count();
    for v in summary.vms.iter().filter(|v| v.state != "verified") {
        eprintln!("# {} {}: {:?}", v.name, v.state, v.error);
    }
    // How far the clone starts drifted from the stagger's schedule.
    let mut starts: Vec<f64> = stats
        .vms
        .iter()
        .filter_map(|v| v.clone_started_at)
        .map(|at| at - t0)
        .collect();
    starts.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (starts.first(), starts.last()) {
        let scheduled = (starts.len() - 1) as f64 * delay;
        eprintln!(
            "# clone starts: first {first:.1} s, last {last:.1} s ({:+.1} s past first + {scheduled:.0} s)",
            last - first - scheduled
        );
    }
    // Where the last VM's time went (the makespan's own chain), in simulated seconds.
    let last = summary
        .vms
        .iter()
        .filter_map(|v| Some((v, v.phases.values().filter_map(|t| t.finished).max()?)))
        .max_by_key(|(_, at)| *at);
    if let Some((v, _)) = last {
        let mut line = format!("# last verified {}:", v.name);
        for (phase, times) in &v.phases {
            if let (Some(s), Some(f)) = (times.started, times.finished) {
                let took = f.duration_since(s).as_secs_f64() / case.scale;
                line.push_str(&format!(" {phase} {took:.1}"));
            }
        }
        if let Some(sim) = stats.vms.iter().find(|s| s.name == v.name) {
            line.push_str(&format!(
                "; drawn: clone {:.1} start {:.1} boot {:.1} agent {:.1} dhcp {:.1}",
                sim.clone_s, sim.start_s, sim.boot_s, sim.agent_s, sim.dhcp_s
            ));
            // How late the chain's waits were noticed, by the simulator's clock.
            let late = |at: Option<f64>, after: Option<f64>| match (at, after) {
                (Some(at), Some(after)) => format!("{:.1}", at - after),
                _ => "-".into(),
            };
            line.push_str(&format!(
                "; noticed late by: clone end {} s, agent {} s",
                late(sim.clone_noticed_at, sim.clone_finished_at),
                late(sim.first_agent_ok_at, sim.agent_up_at),
            ));
        }
        eprintln!("{line}");
    }
    Run {
        makespan_s: end - t0,
        lower_bound_s: lower_bound(&stats, delay, settle + exec_min),
        verified,
        verified_at,
        stats,
        max_in_flight_per_node: h.config.proxmox.max_in_flight_per_node,
    }
}

/// See the module's comment. `verify_min`: the least a verification takes.
fn lower_bound(stats: &SimStats, delay: f64, verify_min: f64) -> f64 {
    let vms: Vec<_> = stats
        .vms
        .iter()
        .filter(|v| v.clone_index.is_some())
        .collect();
    let after_clone = |v: &pve_rollout::sim::VmStats| {
        v.start_s + v.boot_s + v.agent_s + v.ciupgrade_s + v.dhcp_s + verify_min
    };
    // Longest chains first on the earliest slots.
    let mut chains: Vec<f64> = vms.iter().map(|v| v.clone_s + after_clone(v)).collect();
    chains.sort_by(|a, b| b.total_cmp(a));
    let by_vm = chains
        .iter()
        .enumerate()
        .map(|(k, chain)| k as f64 * delay + chain)
        .fold(0.0, f64::max);
    // Each storage's throughput.
    let mut storages: BTreeMap<&str, Vec<&pve_rollout::sim::VmStats>> = BTreeMap::new();
    for v in &vms {
        storages.entry(v.copy_storage.as_str()).or_default().push(v);
    }
    let by_storage = storages
        .values()
        .map(|on| {
            let mut copies: Vec<f64> = on.iter().map(|v| v.copy_s).collect();
            copies.sort_by(f64::total_cmp);
            let tail = on
                .iter()
                .map(|v| after_clone(v))
                .fold(f64::INFINITY, f64::min);
            // At best these m clones take the first m slots; those from slot i on copy at least
            // the m - i smallest copies.
            let m = copies.len();
            (0..m)
                .map(|i| i as f64 * delay + copies[..m - i].iter().sum::<f64>())
                .fold(0.0, f64::max)
                + tail
        })
        .fold(0.0, f64::max);
    by_vm.max(by_storage)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn main() {
    let disk = std::env::var("BENCH_TEMPLATE_DISK").ok();
    let scenario = env("BENCH_SCENARIO", "realistic".to_string());
    let case = Case {
        vms: env("BENCH_VMS", 50usize),
        seed: env("BENCH_SEED", 7u64),
        // Storage-bound clones run for hours (simulated); sparse or small ones well under one.
        scale: env(
            "BENCH_SCALE",
            if scenario == "realistic-thick" && disk.is_none() {
                0.003
            } else {
                0.01
            },
        ),
        scenario,
        disk,
    };
    let baseline: Option<String> = std::env::var("BENCH_BASELINE").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let wall = Instant::now();
    let (run, base) = runtime.block_on(async {
        let run = rollout(&case, "pipelined", false).await;
        let base = match baseline.as_deref() {
            Some("sequential") => Some(rollout(&case, "sequential", true).await),
            Some("no-limit") => Some(rollout(&case, "pipelined", true).await),
            Some(other) => panic!("BENCH_BASELINE={other}: expected sequential or no-limit"),
            None => None,
        };
        (run, base)
    });
    let r = &run;
    let verified = r.verified.max(1) as f64;
    let detect = sorted(
        r.stats
            .vms
            .iter()
            .filter_map(|v| Some(v.first_agent_ok_at? - v.agent_up_at?))
            .collect(),
    );
    let noticed = sorted(
        r.stats
            .vms
            .iter()
            .filter_map(|v| Some(v.clone_noticed_at? - v.clone_finished_at?))
            .collect(),
    );
    let peak_node = r
        .stats
        .node_load
        .values()
        .map(|l| l.peak_in_flight)
        .max()
        .unwrap_or(0);

    // Diagnostics on stderr, the figures on stdout.
    eprintln!(
        "# {} VMs, scenario {}, seed {}, scale {}, template disk {}, wall {:.1} s",
        case.vms,
        case.scenario,
        case.seed,
        case.scale,
        case.disk.as_deref().unwrap_or("(scenario's)"),
        wall.elapsed().as_secs_f64()
    );
    for (endpoint, n) in &r.stats.requests_by_endpoint {
        eprintln!("#   {:>7.2}/VM {endpoint}", *n as f64 / verified);
    }
    println!("scenario={}", case.scenario);
    println!("vms={}", case.vms);
    println!("verified={}", r.verified);
    println!("makespan_s={:.1}", r.makespan_s);
    println!("lower_bound_s={:.1}", r.lower_bound_s);
    println!("ratio_makespan_lb={:.4}", r.makespan_s / r.lower_bound_s);
    println!("mean_time_to_verified_s={:.1}", mean(&r.verified_at));
    println!(
        "requests_per_vm={:.1}",
        r.stats.requests_total as f64 / verified
    );
    println!(
        "worker_seconds_per_vm={:.2}",
        r.stats.worker_seconds / verified
    );
    println!("peak_in_flight={}", r.stats.peak_in_flight);
    println!("peak_in_flight_one_node={peak_node}");
    println!("max_in_flight_per_node={}", r.max_in_flight_per_node);
    println!("agent_detect_p50_s={:.2}", percentile(&detect, 0.5));
    println!("agent_detect_p99_s={:.2}", percentile(&detect, 0.99));
    println!("clone_noticed_p50_s={:.2}", percentile(&noticed, 0.5));
    println!("clone_noticed_p99_s={:.2}", percentile(&noticed, 0.99));
    if let (Some(b), Some(name)) = (&base, &baseline) {
        println!("baseline={name}");
        println!("baseline_verified={}", b.verified);
        println!("baseline_makespan_s={:.1}", b.makespan_s);
        println!(
            "baseline_mean_time_to_verified_s={:.1}",
            mean(&b.verified_at)
        );
        println!("ratio_makespan_baseline={:.3}", r.makespan_s / b.makespan_s);
        println!(
            "ratio_mean_time_to_verified_baseline={:.3}",
            mean(&r.verified_at) / mean(&b.verified_at)
        );
    }
    println!("wall_s={:.1}", wall.elapsed().as_secs_f64());
}
