//! The read endpoints dashboards and exporters poll, in the shapes PVE's API code returns.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use serde_json::{Value, json};

const SCALE: f64 = 0.01;

fn kinds(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["type"].as_str().map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test]
async fn cluster_status_lists_the_cluster_then_its_nodes() {
    let (_sim, c) = start(opts("cluster", SCALE)).await;
    let st = c.get("/cluster/status").await.data();
    let list = st.as_array().expect("list");
    assert_eq!(list[0]["type"], "cluster");
    assert_eq!(list[0]["quorate"], 1);
    assert_eq!(list[0]["nodes"], list.len() - 1);
    assert_eq!(list[1]["id"], "node/pve1");
    assert_eq!(
        (list[1]["local"].clone(), list[1]["online"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(list[1]["nodeid"], 1);
    // A standalone node: no cluster entry.
    let (_sim, c) = start(opts("fast", SCALE)).await;
    assert_eq!(kinds(&c.get("/cluster/status").await.data()), ["node"]);
}

#[tokio::test]
async fn cluster_resources_without_type_has_every_kind() {
    let mut o = opts("fast", SCALE);
    o.scenario.cluster.pools = vec!["ci".into()];
    let (_sim, c) = start(o).await;
    let all = c.get("/cluster/resources").await.data();
    assert_eq!(kinds(&all), ["node", "pool", "qemu", "sdn", "storage"]);
    // 8.x has no `type=pool`: pools come only with the whole list.
    let pool: Vec<&Value> = all
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["type"] == "pool")
        .collect();
    assert_eq!(
        pool,
        [&json!({"id": "/pool/ci", "pool": "ci", "type": "pool"})]
    );
    let sdn = c.get("/cluster/resources?type=sdn").await.data();
    assert_eq!(
        sdn,
        json!([{"id": "sdn/pve1/localnetwork", "sdn": "localnetwork", "node": "pve1", "type": "sdn", "status": "ok"}])
    );
    let e = c
        .get("/cluster/resources?type=lxc")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert!(e["errors"]["type"].is_string());
}

#[tokio::test]
async fn task_lists_filter_like_pve() {
    let (sim, c) = start(slow_clone_opts(SCALE)).await;
    clone_vm(&c, &sim, 101, "a").await;
    let running = begin_clone(&c, &sim, 102, "").await;
    // The default source is the archive: finished tasks only.
    let archive = c.get("/nodes/pve1/tasks").await.data();
    assert!(
        archive
            .as_array()
            .expect("list")
            .iter()
            .all(|t| t["upid"] != running.as_str())
    );
    assert_eq!(archive[0]["status"], "OK");
    let active = c.get("/nodes/pve1/tasks?source=active").await.data();
    assert_eq!(active.as_array().expect("list").len(), 1);
    assert_eq!(active[0]["upid"], running.as_str());
    // Tasks.pm lists a running task with `status` `RUNNING` (and no end time).
    assert_eq!(active[0]["status"], "RUNNING");
    assert!(active[0].get("endtime").is_none());
    let all = c
        .get("/nodes/pve1/tasks?source=all&typefilter=qmclone&vmid=9000")
        .await
        .data();
    assert_eq!(all.as_array().expect("list").len(), 2);
    let paged = c
        .get("/nodes/pve1/tasks?source=all&start=1&limit=1")
        .await
        .data();
    assert_eq!(paged.as_array().expect("list").len(), 1);
    assert_eq!(paged[0]["upid"], all[1]["upid"]);
    assert_eq!(c.get("/nodes/pve1/tasks?vmid=4242").await.data(), json!([]));
    let cluster = c.get("/cluster/tasks").await.data();
    assert!(cluster.as_array().expect("list").len() >= 2);
    assert_eq!(cluster[0]["saved"], "1");
}

#[tokio::test]
async fn node_level_reads_answer_in_pves_shapes() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "a").await;
    assert_eq!(c.get("/nodes/pve1/lxc").await.data(), json!([]));
    assert_eq!(c.get("/nodes/pve1/replication").await.data(), json!([]));
    let net = c.get("/nodes/pve1/network").await.data();
    let ifaces: Vec<&str> = net
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["iface"].as_str())
        .collect();
    assert_eq!(ifaces, ["eno1", "vmbr0", "vmbr1"]);
    assert_eq!(net[1]["cidr"], "192.168.100.11/24");
    let bridges = c.get("/nodes/pve1/network?type=bridge").await.data();
    assert_eq!(bridges.as_array().expect("list").len(), 2);
    let content = c
        .get("/nodes/pve1/storage/ssd/content?vmid=101")
        .await
        .data();
    let vols: Vec<&str> = content
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["volid"].as_str())
        .collect();
    assert!(vols.contains(&"ssd:vm-101-disk-1"), "{content}");
    let scsi = content
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["volid"] == "ssd:vm-101-disk-1")
        .expect("scsi0 volume");
    assert_eq!(
        (scsi["size"].clone(), scsi["format"].clone()),
        (json!(128u64 << 30), json!("raw"))
    );
    assert_eq!(scsi["vmid"], 101);
    c.get("/nodes/pve1/storage/nope/content")
        .await
        .expect_err(500, "storage 'nope' does not exist");
    let sub = c.get("/nodes/pve1/subscription").await.data();
    assert_eq!(sub["status"], "notfound");
    assert_eq!(sub["message"], "There is no subscription key");
}

#[tokio::test]
async fn ha_backup_qdevice_and_pools_reads() {
    let mut o = opts("fast", SCALE);
    o.scenario.cluster.pools = vec!["ci".into(), "prod".into()];
    let (sim, c) = start(o).await;
    clone_vm(&c, &sim, 101, "a").await;
    let ha = c.get("/cluster/ha/status/current").await.data();
    assert_eq!(
        ha,
        json!([{"id": "quorum", "type": "quorum", "node": "pve1", "status": "OK", "quorate": 1}])
    );
    let nb = c.get("/cluster/backup-info/not-backed-up").await.data();
    assert_eq!(
        nb,
        json!([{"vmid": 101, "type": "qemu", "name": "a"}, {"vmid": 9000, "type": "qemu", "name": "ubuntu"}])
    );
    // Without a QDevice socket PVE answers an empty object, not an error.
    assert_eq!(c.get("/cluster/config/qdevice").await.data(), json!({}));
    assert_eq!(
        c.get("/pools").await.data(),
        json!([{"poolid": "ci"}, {"poolid": "prod"}])
    );
    c.get("/pools?poolid=nope")
        .await
        .expect_err(500, "pool 'nope' does not exist");
}
