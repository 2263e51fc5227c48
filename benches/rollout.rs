//! A 50-VM rollout on the `realistic` scenario (a sparse cloud-image template), pipelined then
//! sequential on the same seed (so the same draws), against the in-process simulator. Prints
//! `key=value` lines in simulated seconds, computed from the simulator's own records
//! (`Sim::stats`), not from the engine's view.
//!
//! `cargo bench --bench rollout`. Knobs (environment): `BENCH_VMS` (50), `BENCH_SEED` (7),
//! `BENCH_SCALE` (wall seconds per simulated second), `BENCH_SCENARIO` (`realistic`, or
//! `realistic-thick` for a fully allocated 128 GiB template: the storage-bound case),
//! `BENCH_TEMPLATE_DISK` (the template's disk; unset = the scenario's 128G).
//!
//! Lower bound: a VM cannot be verified before its clone may start under the stagger
//! (`first clone start + k * deployment_delay`), plus its clone as the simulator actually ran it
//! (`clone_finished_at - clone_started_at`: the storage's throughput shared with the clones that
//! really overlapped it, which the stagger fixes, not the engine), plus its qmstart task, boot,
//! agent start and DHCP draws, plus the least verification can take: pings and API calls at zero
//! latency, the stabilisation wait, and three guest-execs at the scenario's minimum run time.
//! `lower_bound_s` is the largest such sum over the VMs (the critical path), from the rollout's
//! start.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use pve_rollout::demo::DemoSettings;
use pve_rollout::sim::{Scenario, SimStats};

struct Run {
    /// Simulated second at which the rollout started and ended.
    t0: f64,
    makespan_s: f64,
    lower_bound_s: f64,
    verified: usize,
    stats: SimStats,
    max_in_flight: usize,
}

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn rollout(
    scenario: &str,
    mode: &str,
    vms: usize,
    seed: u64,
    scale: f64,
    disk: Option<&str>,
) -> Run {
    let mut scenario = Scenario::builtin(scenario).expect("bench scenario");
    if let Some(disk) = disk {
        scenario.template.disk_size = disk.to_string();
    }
    let exec_min = scenario.timing.exec_s.min;
    let settings = DemoSettings {
        vms,
        mode: mode.into(),
        // The original wait_for_vm.sh flow's defaults: 30 s between clones, 30 s stabilisation.
        deployment_delay: "30s".into(),
        stabilization: "30s".into(),
        ..DemoSettings::default()
    };
    let h = common::Harness::start_with(scenario, seed, scale, settings).await;
    let delay = h.config.rollout.deployment_delay.as_secs_f64();
    let settle = h.config.checks.stabilization.as_secs_f64();
    let t0 = h.sim.now();
    let (summary, _events) = h.run_plain().await;
    let end = h.sim.now();
    let stats = h.sim.stats();
    let verified = summary.vms.iter().filter(|v| v.state == "verified").count();
    let first_clone = stats
        .vms
        .iter()
        .filter_map(|v| v.clone_started_at)
        .fold(f64::INFINITY, f64::min);
    let verify_min = settle + 3.0 * exec_min;
    let lower_bound_s = stats
        .vms
        .iter()
        .filter_map(|v| {
            let k = v.clone_index? as f64 - 1.0;
            let clone = v.clone_finished_at? - v.clone_started_at?;
            Some(
                first_clone - t0
                    + k * delay
                    + clone
                    + v.start_s
                    + v.boot_s
                    + v.agent_s
                    + v.dhcp_s
                    + verify_min,
            )
        })
        .fold(0.0, f64::max);
    Run {
        t0,
        makespan_s: end - t0,
        lower_bound_s,
        verified,
        stats,
        max_in_flight: h.config.proxmox.max_in_flight,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let vms = env("BENCH_VMS", 50usize);
    let seed = env("BENCH_SEED", 7u64);
    let disk = std::env::var("BENCH_TEMPLATE_DISK").ok();
    let scenario = std::env::var("BENCH_SCENARIO").unwrap_or_else(|_| "realistic".into());
    // 50 full clones of a fully allocated 128G disk take ~9.5 simulated hours; the sparse
    // template's (3 GiB allocated) or a small disk's finish in well under an hour.
    let thick = scenario == "realistic-thick" && disk.is_none();
    let scale = env("BENCH_SCALE", if thick { 0.003 } else { 0.01 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let wall = Instant::now();
    let (pipelined, sequential) = runtime.block_on(async {
        let p = rollout(&scenario, "pipelined", vms, seed, scale, disk.as_deref()).await;
        let s = rollout(&scenario, "sequential", vms, seed, scale, disk.as_deref()).await;
        (p, s)
    });
    let p = &pipelined;
    let verified = p.verified.max(1) as f64;
    let mut detect: Vec<f64> = p
        .stats
        .vms
        .iter()
        .filter_map(|v| Some(v.first_agent_ok_at? - v.agent_up_at?))
        .collect();
    detect.sort_by(f64::total_cmp);

    // Diagnostics on stderr, the figures on stdout.
    eprintln!(
        "# {vms} VMs, seed {seed}, scale {scale}, template disk {}, wall {:.1} s",
        disk.as_deref().unwrap_or("128G (scenario)"),
        wall.elapsed().as_secs_f64()
    );
    for (name, r) in [("pipelined", p), ("sequential", &sequential)] {
        eprintln!(
            "# {name}: verified {}/{vms}, requests {}, worker-s {:.1}, peak {}",
            r.verified, r.stats.requests_total, r.stats.worker_seconds, r.stats.peak_in_flight
        );
    }
    // The VM on the critical path: where its time went (simulated seconds from the start).
    if let Some(v) = p.stats.vms.iter().max_by(|a, b| {
        let end = |v: &pve_rollout::sim::VmStats| v.first_agent_ok_at.unwrap_or(0.0);
        end(a).total_cmp(&end(b))
    }) {
        eprintln!(
            "# rollout {:.1}..{:.1}; last VM {}: clone {:?}..{:?}, started {:?}, agent up {:?}, first answer {:?}, ip {:?}",
            p.t0,
            p.t0 + p.makespan_s,
            v.name,
            v.clone_started_at,
            v.clone_finished_at,
            v.started_at,
            v.agent_up_at,
            v.first_agent_ok_at,
            v.ip_at
        );
    }
    for (endpoint, n) in &p.stats.requests_by_endpoint {
        eprintln!("#   {:>7.2}/VM {endpoint}", *n as f64 / verified);
    }
    println!("verified_pipelined={}", p.verified);
    println!("verified_sequential={}", sequential.verified);
    println!("makespan_pipelined_s={:.1}", p.makespan_s);
    println!("makespan_sequential_s={:.1}", sequential.makespan_s);
    println!("lower_bound_s={:.1}", p.lower_bound_s);
    println!("ratio_pipelined_lb={:.3}", p.makespan_s / p.lower_bound_s);
    println!(
        "ratio_pipelined_sequential={:.3}",
        p.makespan_s / sequential.makespan_s
    );
    println!(
        "requests_per_vm={:.1}",
        p.stats.requests_total as f64 / verified
    );
    println!(
        "worker_seconds_per_vm={:.2}",
        p.stats.worker_seconds / verified
    );
    println!("peak_in_flight={}", p.stats.peak_in_flight);
    println!("max_in_flight={}", p.max_in_flight);
    println!("detect_p50_s={:.2}", percentile(&detect, 0.5));
    println!("detect_p99_s={:.2}", percentile(&detect, 0.99));
    println!("wall_s={:.1}", wall.elapsed().as_secs_f64());
}
