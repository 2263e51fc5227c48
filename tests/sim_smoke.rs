//! Happy path over real HTTPS: clone, configure, start, agent, exec, stats.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_configure_start_and_verify_through_the_agent() {
    let (sim, c) = start(opts("fast", 0.01)).await;
    let v = c.get("/version").await.data();
    assert_eq!(v["release"], "8.4");

    clone_vm(&c, &sim, 101, "web-1").await;
    let cfg = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert_eq!(cfg["name"], "web-1");
    assert!(cfg.get("lock").is_none(), "{cfg}");
    let upid = c
        .post(
            "/nodes/pve1/qemu/101/config",
            "cores=4&sockets=2&memory=32768&net0=virtio%2Cbridge%3Dvmbr1&ipconfig0=ip%3Ddhcp&agent=1&efidisk0=ssd%3A1%2Cefitype%3D4m%2Cpre-enrolled-keys%3D1",
        )
        .await
        .data();
    let st = c.wait_task(&sim, upid.as_str().expect("upid"), 60.0).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let resize = c
        .put("/nodes/pve1/qemu/101/resize", "disk=scsi0&size=%2B0G")
        .await
        .data();
    c.wait_task(&sim, resize.as_str().expect("upid"), 60.0)
        .await;
    start_vm(&c, &sim, 101).await;
    wait_agent(&c, &sim, 101).await;
    let ifs = c
        .until(&sim, 60.0, "ipv4", || async {
            let r = c
                .get("/nodes/pve1/qemu/101/agent/network-get-interfaces")
                .await;
            if r.status != 200 {
                return None;
            }
            let d = r.data();
            let has_v4 = d["result"].as_array()?.iter().any(|i| {
                i["name"] == "ens18"
                    && i["ip-addresses"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["ip-address-type"] == "ipv4"))
            });
            has_v4.then_some(d)
        })
        .await;
    let cfg = c.get("/nodes/pve1/qemu/101/config").await.data();
    let mac = cfg["net0"]
        .as_str()
        .expect("net0")
        .split(['=', ','])
        .nth(1)
        .expect("mac")
        .to_lowercase();
    let nic = ifs["result"]
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["name"] == "ens18")
        .expect("nic")
        .clone();
    assert_eq!(nic["hardware-address"], json!(mac));

    let pid = c
        .post(
            "/nodes/pve1/qemu/101/agent/exec",
            "command=uname&command=-a",
        )
        .await
        .data()["pid"]
        .clone();
    let out = c
        .until(&sim, 30.0, "exec done", || async {
            let d = c
                .get(&format!("/nodes/pve1/qemu/101/agent/exec-status?pid={pid}"))
                .await
                .data();
            (d["exited"] == 1).then_some(d)
        })
        .await;
    assert!(
        out["out-data"]
            .as_str()
            .expect("out")
            .starts_with("Linux web-1 "),
        "{out}"
    );
    let stats = sim.stats();
    let vm = stats.vms.iter().find(|v| v.vmid == 101).expect("vm stats");
    assert!(
        vm.cloned_at.is_some()
            && vm.started_at.is_some()
            && vm.agent_up_at.is_some()
            && vm.ip_at.is_some()
    );
    assert!(vm.first_agent_ok_at.is_some());
    assert_eq!(stats.clones_by_name.get("web-1"), Some(&1));
    sim.shutdown().await;
}
