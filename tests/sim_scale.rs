//! Scale: many VMs over 8 nodes with 50 concurrent, careful callers all complete.
//! (Blind polling would be answered with 596s, as a real cluster would; see sim_time.rs.)

#[path = "sim_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use pve_rollout::sim::Sim;

fn transient(r: &Resp) -> bool {
    r.status == 596 || r.status == 595
}

/// GET with retries on proxy errors, polling politely.
async fn get(c: &Client, sim: &Sim, path: &str) -> Resp {
    loop {
        let r = c.get(path).await;
        if !transient(&r) {
            return r;
        }
        tick(sim, 2.0).await;
    }
}

async fn task_ok(c: &Client, sim: &Sim, upid: &str) -> bool {
    loop {
        let node = upid.split(':').nth(1).expect("node");
        let d = get(c, sim, &format!("/nodes/{node}/tasks/{upid}/status"))
            .await
            .data();
        if d["status"] == "stopped" {
            return d["exitstatus"] == "OK";
        }
        tick(sim, 2.0).await;
    }
}

async fn one_vm(c: &Client, sim: &Sim, id: u32) {
    let node = format!("pve{}", id % 8 + 1);
    let cfg_path = format!("/nodes/{node}/qemu/{id}/config");
    loop {
        let r = c
            .post(
                "/nodes/pve1/qemu/9000/clone",
                &format!("newid={id}&name=vm{id}&full=1&target={node}"),
            )
            .await;
        let cloned = match r.status {
            200 => task_ok(c, sim, r.data().as_str().expect("upid")).await,
            // The answer was lost: the VM (or its clone in progress) tells.
            596 => loop {
                let cfg = get(c, sim, &cfg_path).await;
                if cfg.status != 200 {
                    break false;
                }
                if cfg.data().get("lock").is_none() {
                    break true;
                }
                tick(sim, 2.0).await;
            },
            _ => false,
        };
        if cloned {
            break;
        }
        // Storage lock timeouts under this much parallelism: back off and clone again.
        tick(sim, 5.0).await;
    }
    loop {
        let r = c
            .post(&format!("/nodes/{node}/qemu/{id}/status/start"), "")
            .await;
        if r.status == 200 && task_ok(c, sim, r.data().as_str().expect("upid")).await {
            break;
        }
        tick(sim, 2.0).await;
    }
    loop {
        let r = c
            .post(&format!("/nodes/{node}/qemu/{id}/agent/ping"), "")
            .await;
        if r.status == 200 {
            break;
        }
        tick(sim, 3.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_vms_many_callers() {
    let n: u32 = std::env::var("SIM_SCALE_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let scale: f64 = std::env::var("SIM_SCALE_TIME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.01);
    let mut o = opts("cluster", scale);
    o.scenario.faults.node_offline.clear();
    let (sim, c) = start(o).await;
    let sim = Arc::new(sim);
    let next = Arc::new(AtomicU32::new(1000));
    let t = std::time::Instant::now();
    let mut workers = Vec::new();
    for _ in 0..50 {
        let (c, sim, next) = (c.clone(), sim.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= 1000 + n {
                    break;
                }
                one_vm(&c, &sim, id).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let s = sim.stats();
    eprintln!(
        "{n} VMs: {:.1} s wall, {:.0} s simulated, {} requests, {:.0} worker-s, peak in flight {}, statuses {:?}",
        t.elapsed().as_secs_f64(),
        sim.now(),
        s.requests_total,
        s.worker_seconds,
        s.peak_in_flight,
        s.responses_by_status
    );
    assert_eq!(
        s.vms
            .iter()
            .filter(|v| v.first_agent_ok_at.is_some())
            .count(),
        n as usize
    );
    assert!(
        s.peak_in_flight >= 40,
        "50 callers in parallel: {}",
        s.peak_in_flight
    );
}

/// Each request is counted at the node that serves it: `/nodes/{node}/...` at that node, the
/// cluster-wide calls at the entry node (the first of the scenario's nodes).
#[tokio::test]
async fn requests_are_counted_at_their_serving_node() {
    let mut o = opts("cluster", 0.01);
    o.scenario.faults.node_offline.clear();
    let entry = o.scenario.cluster.nodes[0].clone();
    let other = o.scenario.cluster.nodes[2].clone();
    let (sim, c) = start(o).await;
    let before = sim.stats().node_load;
    let calls = (0..4)
        .map(|_| {
            let (c, path) = (c.clone(), format!("/nodes/{other}/status"));
            tokio::spawn(async move { c.get(&path).await.status })
        })
        .chain((0..3).map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/cluster/resources").await.status })
        }));
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.expect("join"), 200);
    }
    let after = sim.stats().node_load;
    let served = |node: &str| {
        after.get(node).map_or(0, |l| l.requests) - before.get(node).map_or(0, |l| l.requests)
    };
    assert_eq!(served(&other), 4, "{after:?}");
    assert_eq!(served(&entry), 3, "{after:?}");
    let peak = after[&other].peak_in_flight;
    assert!((1..=4).contains(&peak), "{after:?}");
}
