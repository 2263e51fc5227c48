//! Behaviours of real clusters the simulator models as scenario keys or faults: HA resources,
//! pools, privilege-separated tokens with per-path ACLs, the template's backup lock, quorum loss,
//! disabled or node-bound storages, the agent socket's single client, gzip bodies.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use pve_rollout::sim::scenario::{AclSpec, TokenSpec, Window};
use serde_json::{Value, json};

const SCALE: f64 = 0.01;

async fn exit_of(c: &Client, sim: &pve_rollout::sim::Sim, upid: &Value, max_s: f64) -> String {
    let st = c.wait_task(sim, upid.as_str().expect("upid"), max_s).await;
    st["exitstatus"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn ha_managed_vm_starts_and_stops_through_the_ha_manager() {
    let mut o = opts("fast", SCALE);
    o.scenario.cluster.ha_managed = vec![1];
    o.scenario.cluster.ha_delay_s = 5.0;
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "ha").await;
    let cur = c.get("/nodes/pve1/qemu/101/status/current").await.data();
    assert_eq!(cur["ha"]["managed"], 1);
    let u = c.post("/nodes/pve1/qemu/101/status/start", "").await.data();
    assert!(u.as_str().expect("upid").contains(":hastart:101:"), "{u}");
    assert_eq!(exit_of(&c, &sim, &u, 30.0).await, "OK");
    assert_eq!(
        task_log(&c, u.as_str().expect("upid")).await,
        ["Requesting HA start for VM 101", "TASK OK"]
    );
    // The request ends before the VM runs; the resource manager starts it later.
    c.until(&sim, 60.0, "HA start", || async {
        let s = c.get("/nodes/pve1/qemu/101/status/current").await.data();
        (s["status"] == "running").then_some(())
    })
    .await;
    let ha = c.get("/cluster/ha/status/current").await.data();
    assert!(
        ha.as_array()
            .expect("list")
            .iter()
            .any(|e| e["sid"] == "vm:101" && e["type"] == "service"),
        "{ha}"
    );
    let u = c.post("/nodes/pve1/qemu/101/status/stop", "").await.data();
    assert!(u.as_str().expect("upid").contains(":hastop:101:"), "{u}");
    c.until(&sim, 120.0, "HA stop", || async {
        let s = c.get("/nodes/pve1/qemu/101/status/current").await.data();
        (s["status"] == "stopped").then_some(())
    })
    .await;
    c.delete("/nodes/pve1/qemu/101").await.expect_err(
        500,
        "unable to remove VM 101 - used in HA resources and purge parameter not set.",
    );
    let d = c.delete("/nodes/pve1/qemu/101?purge=1").await.data();
    assert_eq!(exit_of(&c, &sim, &d, 60.0).await, "OK");
}

#[tokio::test]
async fn privsep_token_has_only_its_acl_entries_and_permissions_answers_per_path() {
    let mut o = opts("fast", SCALE);
    o.scenario.auth.tokens.push(TokenSpec {
        id: "ci@pve!roll".into(),
        secret: "s".into(),
        privsep: true,
        privileges: Vec::new(),
        acl: vec![
            AclSpec {
                path: "/vms/101".into(),
                privileges: vec!["VM.Audit".into(), "VM.PowerMgmt".into()],
                propagate: true,
            },
            AclSpec {
                path: "/storage".into(),
                privileges: vec!["Datastore.Audit".into()],
                propagate: true,
            },
        ],
    });
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "mine").await;
    clone_vm(&c, &sim, 102, "other").await;
    let t = c.with(Cred::Token("ci@pve!roll=s".into()));
    t.get("/nodes/pve1/qemu/101/status/current").await.data();
    t.get("/nodes/pve1/qemu/102/status/current")
        .await
        .expect_err(403, "Permission check failed (/vms/102, VM.Audit)");
    t.put("/nodes/pve1/qemu/101/config", "cores=2")
        .await
        .expect_err(403, "Permission check failed (/vms/101, VM.Config.Disk|VM.Config.CDROM|VM.Config.CPU|VM.Config.Memory|VM.Config.Network|VM.Config.HWType|VM.Config.Options|VM.Config.Cloudinit)");
    let list = t.get("/nodes/pve1/qemu").await.data();
    assert_eq!(
        list.as_array()
            .expect("list")
            .iter()
            .map(|v| v["vmid"].clone())
            .collect::<Vec<_>>(),
        [json!(101)]
    );
    assert_eq!(
        t.get("/access/permissions").await.data(),
        json!({
            "/storage": {"Datastore.Audit": 1},
            "/vms/101": {"VM.Audit": 1, "VM.PowerMgmt": 1},
        })
    );
    assert_eq!(
        t.get("/access/permissions?path=/storage/ssd").await.data(),
        json!({"/storage/ssd": {"Datastore.Audit": 1}})
    );
    assert_eq!(
        t.get("/access/permissions?path=/vms/102").await.data(),
        json!({})
    );
}

#[tokio::test]
async fn backup_lock_on_the_template_fails_clones_at_once() {
    let mut o = opts("fast", SCALE);
    o.scenario.faults.template_backup = vec![Window {
        at_s: 0.0,
        until_s: Some(20.0),
    }];
    let (sim, c) = start(o).await;
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101")
        .await
        .expect_err(500, "VM is locked (backup)");
    let u = c
        .until(&sim, 60.0, "backup over", || async {
            let r = c.post("/nodes/pve1/qemu/9000/clone", "newid=101").await;
            (r.status == 200).then(|| r.data())
        })
        .await;
    assert!(sim.now() >= 20.0);
    assert_eq!(exit_of(&c, &sim, &u, 60.0).await, "OK");
}

#[tokio::test]
async fn quorum_loss_fails_clone_and_start() {
    let mut o = opts("fast", SCALE);
    o.scenario.faults.quorum_lost = vec![Window {
        at_s: 0.0,
        until_s: None,
    }];
    let (sim, c) = start(o).await;
    c.post("/nodes/pve1/qemu/9000/clone", "newid=101")
        .await
        .expect_err(500, "cluster not ready - no quorum?");
    c.post("/nodes/pve1/qemu/9000/status/start", "")
        .await
        .expect_err(500, "cluster not ready - no quorum?");
    let st = c.get("/cluster/status").await.data();
    let _ = sim;
    assert!(
        st.as_array()
            .expect("list")
            .iter()
            .all(|e| e["type"] == "node")
    );
}

#[tokio::test]
async fn disabled_or_node_bound_storages_refuse_clones() {
    let mut o = opts("cluster", SCALE);
    for s in &mut o.scenario.storages {
        if s.id == "ssd" {
            s.disabled = true;
        }
    }
    let (_sim, c) = start(o).await;
    c.post(
        "/nodes/pve1/qemu/9000/clone",
        "newid=101&full=1&storage=ssd",
    )
    .await
    .expect_err(500, "storage 'ssd' is disabled");
    let mut o = opts("cluster", SCALE);
    for s in &mut o.scenario.storages {
        if s.id == "ssd" {
            s.nodes = vec!["pve1".into()];
        }
    }
    let (_sim, c) = start(o).await;
    c.post(
        "/nodes/pve1/qemu/9000/clone",
        "newid=101&full=1&storage=shared&target=pve2",
    )
    .await
    .data();
    let list = c.get("/nodes/pve2/storage").await.data();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|s| s["storage"] != "ssd"),
        "ssd exists on pve1 only: {list}"
    );
    c.get("/nodes/pve2/storage?storage=ssd")
        .await
        .expect_err(400, "Parameter verification failed.");
}

#[tokio::test]
async fn the_agent_socket_serves_one_client_at_a_time() {
    // Every agent command hangs for its 5 s timeout, holding the socket meanwhile.
    let mut o = opts("fast", SCALE);
    o.scenario.faults.p_agent_timeout = 1.0;
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "a").await;
    start_vm(&c, &sim, 101).await;
    c.until(&sim, 120.0, "agent up", || async {
        let r = c.post("/nodes/pve1/qemu/101/agent/ping", "").await;
        r.reason.contains("got timeout").then_some(())
    })
    .await;
    let call = |path: &'static str| {
        let c = c.clone();
        tokio::spawn(async move { c.get(path).await })
    };
    let a = call("/nodes/pve1/qemu/101/agent/get-osinfo");
    let b = call("/nodes/pve1/qemu/101/agent/get-host-name");
    let mut reasons = vec![a.await.expect("join").reason, b.await.expect("join").reason];
    reasons.sort();
    assert!(
        reasons[0].ends_with("failed - got timeout")
            && reasons[1] == "unable to connect to VM 101 qga socket - timeout after 11 retries",
        "one client talks, the other cannot connect: {reasons:?}"
    );
}

#[tokio::test]
async fn bodies_over_1_kib_are_gzipped_when_the_client_accepts_it() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    let st = clone_vm(&c, &sim, 101, "a").await;
    // The clone's log, with its progress lines, is well over 1 KiB.
    let path = format!(
        "/nodes/pve1/tasks/{}/log?limit=0",
        enc(st["upid"].as_str().expect("upid"))
    );
    let plain = c.get(&path).await;
    assert!(plain.header("content-encoding").is_none());
    assert!(plain.body.len() > 1024, "{}", plain.body.len());
    let z = c
        .request("GET", &path, None, &[("Accept-Encoding", "gzip, deflate")])
        .await;
    assert_eq!(z.header("content-encoding"), Some("gzip"));
    assert_eq!(&z.body[..2], &[0x1f, 0x8b]);
    assert!(z.body.len() < plain.body.len());
    // Small bodies stay plain.
    let v = c
        .request("GET", "/version", None, &[("Accept-Encoding", "gzip")])
        .await;
    assert!(v.header("content-encoding").is_none());
    assert_eq!(v.json()["data"]["release"], "8.4");
}
