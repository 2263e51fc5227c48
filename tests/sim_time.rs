//! The time model: seeded draws reproduce, storage throughput is shared by concurrent clones,
//! pvedaemon workers are held by agent timeouts, and the stuck/cluster scenarios' faults.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use pve_rollout::sim::{Sim, VmStats};

/// Clones `names` one after the other, starts them, and waits for every agent (or gives up).
async fn mini_rollout(sim: &Sim, c: &Client, names: &[&str]) -> Vec<VmStats> {
    for (i, name) in names.iter().enumerate() {
        let id = 101 + i as u32;
        clone_vm(c, sim, id, name).await;
        start_vm(c, sim, id).await;
    }
    for i in 0..names.len() {
        wait_agent(c, sim, 101 + i as u32).await;
    }
    c.until(sim, 60.0, "every lease", || async {
        sim.stats()
            .vms
            .iter()
            .all(|v| v.ip_at.is_some())
            .then_some(())
    })
    .await;
    let mut vms = sim.stats().vms;
    vms.sort_by_key(|v| v.vmid);
    vms
}

async fn macs(c: &Client, n: u32) -> Vec<String> {
    let mut out = Vec::new();
    for id in 101..101 + n {
        out.push(
            c.get(&format!("/nodes/pve1/qemu/{id}/config")).await.data()["net0"]
                .as_str()
                .expect("net0")
                .to_string(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_draws_different_seed_different_draws() {
    let names = ["web-1", "web-2", "web-3"];
    let mut runs = Vec::new();
    for seed in [42, 42, 7] {
        let mut o = opts("fast", 0.005);
        o.seed = seed;
        let (sim, c) = start(o).await;
        let vms = mini_rollout(&sim, &c, &names).await;
        let m = macs(&c, 3).await;
        for v in &vms {
            // The guest timeline follows the draws exactly, whatever the request timing was.
            let up = v.agent_up_at.expect("agent up") - v.started_at.expect("started");
            assert!(
                (up - (v.boot_s + v.agent_s + v.ciupgrade_s)).abs() < 1e-9,
                "{v:?}"
            );
            let ip = v.ip_at.expect("ip") - v.agent_up_at.expect("agent");
            assert!((ip - v.dhcp_s).abs() < 1e-9, "{v:?}");
        }
        runs.push((vms, m));
        sim.shutdown().await;
    }
    let draws = |vms: &[VmStats]| {
        vms.iter()
            .map(|v| (v.name.clone(), v.clone_s, v.boot_s, v.agent_s, v.dhcp_s))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        draws(&runs[0].0),
        draws(&runs[1].0),
        "same seed, same draws"
    );
    assert_eq!(runs[0].1, runs[1].1, "same seed, same MACs");
    assert_ne!(
        draws(&runs[0].0),
        draws(&runs[2].0),
        "another seed draws differently"
    );
    assert_ne!(runs[0].1, runs[2].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clones_share_storage_throughput() {
    let mut o = opts("fast", 0.01);
    for s in &mut o.scenario.storages {
        s.throughput_mb_s = 4000.0;
    }
    let (sim, c) = start(o).await;
    let bytes_s = (128u64 << 30) as f64 / 4000e6;
    clone_vm(&c, &sim, 101, "alone").await;
    let mut upids = Vec::new();
    for id in 102..=104 {
        upids.push(
            c.post("/nodes/pve1/qemu/9000/clone", &format!("newid={id}&full=1"))
                .await
                .data(),
        );
    }
    for u in &upids {
        assert_eq!(
            c.wait_task(&sim, u.as_str().expect("s"), 2000.0).await["exitstatus"],
            "OK"
        );
    }
    let stats = sim.stats();
    let dur = |id: u32| {
        let v = stats.vms.iter().find(|v| v.vmid == id).expect("vm");
        v.clone_finished_at.expect("finished") - v.clone_started_at.expect("started")
    };
    let alone = dur(101);
    assert!(
        alone >= bytes_s,
        "a copy is never faster than bytes/throughput: {alone} < {bytes_s}"
    );
    assert!(
        alone < bytes_s * 1.2 + 2.0,
        "an uncontended clone runs at full speed: {alone}"
    );
    let alone_stat = stats
        .vms
        .iter()
        .find(|v| v.vmid == 101)
        .expect("vm")
        .clone_s;
    assert!(
        (alone - alone_stat).abs() < alone * 0.1 + 0.5,
        "clone_s is the uncontended duration: {alone_stat} vs {alone}"
    );
    for id in 102..=104 {
        // Three equal copies started together each take ~3x as long alone (less the head start).
        assert!(
            dur(id) > 2.2 * bytes_s,
            "three clones share the storage: {} vs {bytes_s}",
            dur(id)
        );
    }
}

#[tokio::test]
async fn agent_calls_to_a_down_agent_hold_workers_for_the_ping_timeout() {
    let (sim, c) = start(opts("stuck", 0.01)).await;
    for id in 101..=103 {
        clone_vm(&c, &sim, id, &format!("vm{id}")).await;
    }
    start_vm(&c, &sim, 103).await;
    let before = sim.stats().worker_seconds;
    for _ in 0..4 {
        c.post("/nodes/pve1/qemu/103/agent/ping", "")
            .await
            .expect_err(500, "QEMU guest agent is not running");
    }
    let spent = sim.stats().worker_seconds - before;
    assert!(
        spent >= 12.0,
        "4 failed pings hold a worker ~3 s each: {spent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_scenario_withholds_agent_of_third_and_ip_of_fifth() {
    let (sim, c) = start(opts("stuck", 0.005)).await;
    for id in 101..=105 {
        clone_vm(&c, &sim, id, &format!("vm{id}")).await;
        start_vm(&c, &sim, id).await;
    }
    for id in [101, 102, 104, 105] {
        wait_agent(&c, &sim, id).await;
    }
    // Long after every other agent is up, the 3rd still has none and the 5th has no IPv4.
    c.until(&sim, 120.0, "others have IPs", || async {
        let s = sim.stats();
        [101, 102, 104]
            .iter()
            .all(|id| s.vms.iter().any(|v| v.vmid == *id && v.ip_at.is_some()))
            .then_some(())
    })
    .await;
    c.post("/nodes/pve1/qemu/103/agent/ping", "")
        .await
        .expect_err(500, "QEMU guest agent is not running");
    let ifs = c
        .get("/nodes/pve1/qemu/105/agent/network-get-interfaces")
        .await
        .data()
        .to_string();
    assert!(!ifs.contains("\"10.20.") && ifs.contains("fe80::"), "{ifs}");
    let s = sim.stats();
    let v3 = s.vms.iter().find(|v| v.vmid == 103).expect("vm3");
    let v5 = s.vms.iter().find(|v| v.vmid == 105).expect("vm5");
    assert!(v3.agent_never && v3.agent_up_at.is_none() && v5.ip_never && v5.ip_at.is_none());
}

#[tokio::test]
async fn cluster_node_goes_offline_at_its_time() {
    let (sim, c) = start(opts("cluster", 0.001)).await;
    assert_eq!(c.get("/nodes").await.data().as_array().expect("a").len(), 8);
    assert_eq!(c.get("/nodes/pve8/qemu").await.status, 200);
    c.until(&sim, 400.0, "pve8 offline", || async {
        let r = c.get("/nodes/pve8/qemu").await;
        (r.status == 595 && r.reason == "No route to host").then_some(())
    })
    .await;
    assert!(sim.now() >= 300.0);
    assert_eq!(c.get("/nodes/pve7/qemu").await.status, 200);
}

fn transient(r: &Resp) -> bool {
    r.status == 595
        || r.status == 596
        || (r.status == 500
            && (r.reason.contains("got timeout") || r.reason.starts_with("can't lock file")))
}

/// A careful client: retries transient failures.
async fn retry(sim: &Sim, c: &Client, method: &str, path: &str, form: Option<&str>) -> Resp {
    for _ in 0..60 {
        let r = c.request(method, path, form, &[]).await;
        if !transient(&r) {
            return r;
        }
        tick(sim, 1.0).await;
    }
    panic!("{method} {path}: still failing after 60 attempts");
}

/// Waits for a task, retrying the status polls themselves.
async fn task_exit(sim: &Sim, c: &Client, upid: &str) -> String {
    c.until(sim, 3000.0, "task end", || async {
        let r = retry(
            sim,
            c,
            "GET",
            &format!("/nodes/pve1/tasks/{upid}/status"),
            None,
        )
        .await;
        let d = r.data();
        (d["status"] == "stopped").then(|| d["exitstatus"].as_str().unwrap_or("").to_string())
    })
    .await
}

/// Clones until the VM exists unlocked, surviving lost answers and failed clone tasks.
async fn careful_clone(sim: &Sim, c: &Client, id: u32, name: &str) {
    loop {
        let mut r = c
            .post(
                "/nodes/pve1/qemu/9000/clone",
                &format!("newid={id}&name={name}&full=1"),
            )
            .await;
        if r.status == 596 {
            // The clone may have happened: look before cloning again.
            r = retry(
                sim,
                c,
                "GET",
                &format!("/nodes/pve1/qemu/{id}/config"),
                None,
            )
            .await;
            if r.status != 200 {
                continue;
            }
        } else if transient(&r) {
            tick(sim, 1.0).await;
            continue;
        }
        let done = if r.status == 200 && r.json()["data"].is_string() {
            task_exit(sim, c, r.data().as_str().expect("upid")).await == "OK"
        } else {
            r.status == 200
                || r.reason == format!("unable to create VM {id}: config file already exists")
        };
        if !done {
            continue;
        }
        // Wait for the lock to go (or the config to vanish when that clone task failed).
        let ok = c
            .until(sim, 3000.0, "clone settled", || async {
                let cfg = retry(
                    sim,
                    c,
                    "GET",
                    &format!("/nodes/pve1/qemu/{id}/config"),
                    None,
                )
                .await;
                match cfg.status {
                    200 if cfg.data().get("lock").is_none() => Some(true),
                    200 => None,
                    _ => Some(false),
                }
            })
            .await;
        if ok {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_scenario_is_recoverable_by_a_careful_client() {
    let mut o = opts("flaky", 0.002);
    let f = &mut o.scenario.faults;
    (
        f.p_596,
        f.p_595,
        f.p_clone_response_lost,
        f.p_config_lock_timeout,
        f.p_storage_lock_timeout,
        f.p_agent_timeout,
    ) = (0.2, 0.2, 0.5, 0.3, 0.3, 0.3);
    let (sim, c) = start(o).await;
    for id in 101..=104u32 {
        let name = format!("web-{id}");
        careful_clone(&sim, &c, id, &name).await;
        let r = retry(
            &sim,
            &c,
            "PUT",
            &format!("/nodes/pve1/qemu/{id}/config"),
            Some("cores=2&memory=4096"),
        )
        .await;
        assert_eq!(r.status, 200, "{} {}", r.status, r.reason);
        loop {
            let r = retry(
                &sim,
                &c,
                "POST",
                &format!("/nodes/pve1/qemu/{id}/status/start"),
                Some(""),
            )
            .await;
            let exit = task_exit(&sim, &c, r.data().as_str().expect("upid")).await;
            if exit == "OK" || exit.contains("already running") {
                break;
            }
        }
    }
    for id in 101..=104u32 {
        let out = c
            .until(&sim, 3000.0, "uname", || async {
                let r = c
                    .post(
                        &format!("/nodes/pve1/qemu/{id}/agent/exec"),
                        "command=uname&command=-a",
                    )
                    .await;
                if r.status != 200 {
                    return None;
                }
                let pid = r.data()["pid"].clone();
                let st = retry(
                    &sim,
                    &c,
                    "GET",
                    &format!("/nodes/pve1/qemu/{id}/agent/exec-status?pid={pid}"),
                    None,
                )
                .await;
                (st.status == 200 && st.data()["exited"] == 1).then(|| st.data())
            })
            .await;
        assert!(
            out["out-data"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("Linux web-{id} "))),
            "{out}"
        );
    }
    let s = sim.stats();
    assert!(
        s.responses_by_status.contains_key(&596) && s.responses_by_status.contains_key(&595),
        "{:?}",
        s.responses_by_status
    );
    for id in 101..=104u32 {
        assert_eq!(
            s.vms
                .iter()
                .filter(|v| v.vmid == id && v.cloned_at.is_some())
                .count(),
            1
        );
    }
}
