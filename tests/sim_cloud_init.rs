//! cloud-init's first boot as the simulator models it: with `ciupgrade` on (PVE's default) the
//! package upgrade delays the agent, which cloud-init installs after it, by the scenario's
//! `ciupgrade_s`, once; and a guest whose cloud-init fails says so in `cloud-init status
//! --long`.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use pve_rollout::sim::scenario::Span;
use serde_json::Value;

const SCALE: f64 = 0.01;
const UPGRADE_S: f64 = 30.0;

fn stats_of(sim: &pve_rollout::sim::Sim, vmid: u32) -> pve_rollout::sim::VmStats {
    sim.stats()
        .vms
        .into_iter()
        .find(|v| v.vmid == vmid)
        .expect("stats")
}

/// Simulated seconds from the latest start to the agent's first answer being possible.
fn agent_after_start(sim: &pve_rollout::sim::Sim, vmid: u32) -> f64 {
    let v = stats_of(sim, vmid);
    v.agent_up_at.expect("agent up") - v.started_at.expect("started")
}

async fn stop_vm(c: &Client, sim: &pve_rollout::sim::Sim, vmid: u32) {
    let upid = c
        .post(&format!("/nodes/pve1/qemu/{vmid}/status/stop"), "")
        .await
        .data();
    let st = c.wait_task(sim, upid.as_str().expect("upid"), 120.0).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
}

#[tokio::test]
async fn ciupgrade_delays_the_first_boots_agent_by_the_upgrade() {
    let mut o = opts("fast", SCALE);
    o.scenario.timing.ciupgrade_s = Span::fixed(UPGRADE_S);
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "upgrading").await;
    clone_vm(&c, &sim, 102, "not-upgrading").await;
    c.put("/nodes/pve1/qemu/102/config", "ciupgrade=0")
        .await
        .data();
    for vmid in [101, 102] {
        start_vm(&c, &sim, vmid).await;
        wait_agent(&c, &sim, vmid).await;
    }
    let (upgrading, plain) = (stats_of(&sim, 101), stats_of(&sim, 102));
    assert_eq!(upgrading.ciupgrade_s, UPGRADE_S);
    assert_eq!(plain.ciupgrade_s, 0.0);
    let late = agent_after_start(&sim, 101) - (upgrading.boot_s + upgrading.agent_s);
    let on_time = agent_after_start(&sim, 102) - (plain.boot_s + plain.agent_s);
    assert!((late - UPGRADE_S).abs() < 1e-6, "{late}");
    assert!(on_time.abs() < 1e-6, "{on_time}");

    // The upgrade is a first boot's: started again, the agent is up on its usual time.
    stop_vm(&c, &sim, 101).await;
    start_vm(&c, &sim, 101).await;
    wait_agent(&c, &sim, 101).await;
    let again = stats_of(&sim, 101);
    assert_eq!(again.ciupgrade_s, 0.0);
    let second = agent_after_start(&sim, 101) - (again.boot_s + again.agent_s);
    assert!(second.abs() < 1e-6, "{second}");
}

/// Runs `argv` in the guest and returns (exit code, stdout).
async fn guest_run(
    c: &Client,
    sim: &pve_rollout::sim::Sim,
    vmid: u32,
    argv: &[&str],
) -> (i64, String) {
    let body: String = argv
        .iter()
        .map(|a| format!("command={}", enc(a)))
        .collect::<Vec<_>>()
        .join("&");
    let pid = c
        .post(&format!("/nodes/pve1/qemu/{vmid}/agent/exec"), &body)
        .await
        .data()["pid"]
        .as_i64()
        .expect("pid");
    c.until(sim, 600.0, "exec exits", || async {
        let st: Value = c
            .get(&format!(
                "/nodes/pve1/qemu/{vmid}/agent/exec-status?pid={pid}"
            ))
            .await
            .data();
        (st["exited"] == 1).then(|| {
            (
                st["exitcode"].as_i64().unwrap_or(-1),
                st["out-data"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
    .await
}

#[tokio::test]
async fn a_failed_cloud_init_says_which_module_in_the_long_status() {
    let mut o = opts("fast", SCALE);
    o.scenario.faults.cloud_init_error = vec![2];
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "fine").await;
    clone_vm(&c, &sim, 102, "broken").await;
    for vmid in [101, 102] {
        start_vm(&c, &sim, vmid).await;
        wait_agent(&c, &sim, vmid).await;
    }
    let (code, out) = guest_run(&c, &sim, 101, &["cloud-init", "status", "--wait"]).await;
    assert_eq!((code, out.as_str()), (0, "status: done\n"));
    let (code, out) = guest_run(&c, &sim, 102, &["cloud-init", "status", "--wait"]).await;
    assert_eq!((code, out.as_str()), (1, "status: error\n"));
    let (code, out) = guest_run(&c, &sim, 102, &["cloud-init", "status", "--long"]).await;
    assert_eq!(code, 1);
    for line in [
        "status: error",
        "extended_status: error - done",
        "detail: DataSourceNoCloud [seed=/dev/sr0]",
        "errors:\n\t- ('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))",
        "recoverable_errors: {}",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
}
