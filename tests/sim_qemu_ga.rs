//! The qemu-ga backend: a real `qemu-ga` per running VM (in its own network namespace when
//! possible), so guest-exec runs real commands.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use pve_rollout::sim::AgentBackend;
use serde_json::Value;

async fn exec(c: &Client, sim: &pve_rollout::sim::Sim, vmid: u32, form: &str) -> Value {
    let pid = c
        .post(&format!("/nodes/pve1/qemu/{vmid}/agent/exec"), form)
        .await
        .data()["pid"]
        .clone();
    c.until(sim, 3000.0, "exec done", || async {
        let d = c
            .get(&format!(
                "/nodes/pve1/qemu/{vmid}/agent/exec-status?pid={pid}"
            ))
            .await
            .data();
        (d["exited"] == 1).then_some(d)
    })
    .await
}

fn qemu_ga_processes_of(marker: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let s = String::from_utf8_lossy(c);
            s.contains("qemu-ga") && s.contains(marker)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs qemu-ga"]
async fn qemu_ga_backend_runs_real_commands() {
    let mut o = opts("fast", 0.01);
    o.agent = AgentBackend::QemuGa;
    let (sim, c) = start(o).await;
    for id in [101, 102] {
        clone_vm(&c, &sim, id, &format!("vm{id}")).await;
        if id == 102 {
            // cloud-init's static address: the namespace's NIC carries it instead of a lease.
            // A second NIC on VLAN 20 with static IPv4 and IPv6: a second interface.
            c.put(
                "/nodes/pve1/qemu/102/config",
                "ipconfig0=ip%3D10.0.10.42%2F24%2Cgw%3D10.0.10.1\
                 &net1=virtio%2Cbridge%3Dvmbr0%2Ctag%3D20\
                 &ipconfig1=ip%3D10.0.20.42%2F24%2Cip6%3Dfd00%3A20%3A%3A42%2F64",
            )
            .await
            .data();
        }
        start_vm(&c, &sim, id).await;
    }
    for id in [101, 102] {
        wait_agent(&c, &sim, id).await;
    }
    let out = exec(&c, &sim, 101, "command=uname&command=-a").await;
    let real = std::process::Command::new("uname")
        .arg("-a")
        .output()
        .expect("uname");
    assert_eq!(out["exitcode"], 0);
    assert_eq!(
        out["out-data"].as_str().expect("out"),
        String::from_utf8_lossy(&real.stdout)
    );
    let out = exec(
        &c,
        &sim,
        101,
        "command=sh&command=-c&command=echo%20err%201%3E%262%3B%20exit%203",
    )
    .await;
    assert_eq!(
        (out["exitcode"].clone(), out["err-data"].clone()),
        (serde_json::json!(3), serde_json::json!("err\n"))
    );
    assert!(
        out.get("out-data").is_none(),
        "empty streams are omitted: {out}"
    );
    c.post("/nodes/pve1/qemu/101/agent/exec", "command=%2Fno%2Fsuch%2Fbinary")
        .await
        .expect_err(500, "Agent error: Guest agent command failed, error was 'Failed to execute child process “/no/such/binary” (No such file or directory)'");

    // In its own namespace, each VM reports its own NIC (net0's MAC) and its own lease, or
    // ipconfig0's static address.
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let isolated = namespaces.contains("pvesim");
    eprintln!("agents isolated in network namespaces: {isolated}");
    if isolated {
        for id in [101u32, 102] {
            let want = match id {
                102 => "10.0.10.42".to_string(),
                _ => format!("10.20.0.{}", id % 250 + 3),
            };
            let mac = c.get(&format!("/nodes/pve1/qemu/{id}/config")).await.data()["net0"]
                .as_str()
                .expect("net0")
                .split(['=', ','])
                .nth(1)
                .expect("mac")
                .to_lowercase();
            let ifs = c
                .until(&sim, 60.0, "lease", || async {
                    let d = c
                        .get(&format!(
                            "/nodes/pve1/qemu/{id}/agent/network-get-interfaces"
                        ))
                        .await
                        .data();
                    d.to_string().contains(&format!("\"{want}\"")).then_some(d)
                })
                .await;
            let nic = ifs["result"]
                .as_array()
                .expect("a")
                .iter()
                .find(|i| i["hardware-address"] == mac.as_str())
                .cloned();
            let nic = nic.unwrap_or_else(|| panic!("no interface with {mac}: {ifs}"));
            let v4: Vec<&str> = nic["ip-addresses"]
                .as_array()
                .expect("a")
                .iter()
                .filter(|a| a["ip-address-type"] == "ipv4")
                .filter_map(|a| a["ip-address"].as_str())
                .collect();
            assert_eq!(v4, [want.as_str()]);
        }
        // 102's net1: its own interface, its own MAC, both static addresses.
        let config = c.get("/nodes/pve1/qemu/102/config").await.data();
        let mac = config["net1"]
            .as_str()
            .expect("net1")
            .split(['=', ','])
            .nth(1)
            .expect("mac")
            .to_lowercase();
        let ifs = c
            .get("/nodes/pve1/qemu/102/agent/network-get-interfaces")
            .await
            .data();
        let nic = (ifs["result"].as_array().expect("a").iter())
            .find(|i| i["hardware-address"] == mac.as_str())
            .unwrap_or_else(|| panic!("no interface with {mac}: {ifs}"));
        assert_eq!(nic["name"], "ens19", "{nic}");
        let addresses: Vec<&str> = (nic["ip-addresses"].as_array().expect("a").iter())
            .filter_map(|a| a["ip-address"].as_str())
            .collect();
        assert!(
            addresses.contains(&"10.0.20.42") && addresses.contains(&"fd00:20::42"),
            "{addresses:?}"
        );
    }
    // Stopping a VM ends its agent; shutting down ends all of them and their namespaces.
    let marker = format!("pve-rollout-sim-{}-", std::process::id());
    assert!(qemu_ga_processes_of(&marker) >= 2);
    let s = c.post("/nodes/pve1/qemu/102/status/stop", "").await.data();
    c.wait_task(&sim, s.as_str().expect("s"), 30.0).await;
    c.post("/nodes/pve1/qemu/102/agent/ping", "")
        .await
        .expect_err(500, "VM 102 is not running");
    sim.shutdown().await;
    assert_eq!(
        qemu_ga_processes_of(&marker),
        0,
        "no orphan qemu-ga processes"
    );
    let after = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !after.contains(&format!("pvesim{}x", std::process::id())),
        "namespaces removed: {after}"
    );
}
