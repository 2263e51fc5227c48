//! New disks and migrations as the simulator models PVE: a new volume `<storage>:<GiB>` is
//! checked like PVE checks it (storage exists, holds images, is on the node, takes the format)
//! and allocated thin; an offline migration copies local disks to the target node.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;

const SCALE: f64 = 0.01;

/// The `used` of `volid` in the storage's content listing on `node`.
async fn used_of(c: &Client, node: &str, sid: &str, volid: &str) -> Option<u64> {
    let list = c
        .get(&format!("/nodes/{node}/storage/{sid}/content"))
        .await
        .data();
    list.as_array()?
        .iter()
        .find(|v| v["volid"] == volid)
        .and_then(|v| v["used"].as_u64())
}

#[tokio::test]
async fn new_disks_are_validated_and_allocated_thin() {
    let (sim, c) = start(opts("fast", SCALE)).await;
    clone_vm(&c, &sim, 101, "disks").await;
    c.put("/nodes/pve1/qemu/101/config", "scsi1=nope:10")
        .await
        .expect_err(500, "storage 'nope' does not exist");
    let body = c
        .put("/nodes/pve1/qemu/101/config", "scsi1=local:10")
        .await
        .expect_err(400, "Parameter verification failed.");
    assert_eq!(
        body["errors"]["storage"],
        "storage 'local' does not support vm images"
    );
    c.put("/nodes/pve1/qemu/101/config", "scsi1=ssd:10,format%3Dqcow2")
        .await
        .expect_err(500, "unsupported format 'qcow2'");

    c.put(
        "/nodes/pve1/qemu/101/config",
        "scsi1=ssd:200&virtio1=shared:0.5,format%3Dqcow2",
    )
    .await
    .data();
    let config = c.get("/nodes/pve1/qemu/101/config").await.data();
    let scsi1 = config["scsi1"].as_str().expect("scsi1");
    let virtio1 = config["virtio1"].as_str().expect("virtio1");
    assert!(
        scsi1.starts_with("ssd:vm-101-disk-") && scsi1.ends_with(",size=200G"),
        "{scsi1}"
    );
    assert!(
        virtio1.starts_with("shared:101/vm-101-disk-") && virtio1.contains(".qcow2,size=512M"),
        "{virtio1}"
    );
    // Thin: LVM-thin uses nothing yet; qcow2 only its metadata (8 bytes per 64 KiB cluster).
    let ssd_volid = scsi1.split(',').next().expect("volid");
    assert_eq!(used_of(&c, "pve1", "ssd", ssd_volid).await, Some(0));
    let shared_volid = virtio1.split(',').next().expect("volid");
    assert_eq!(
        used_of(&c, "pve1", "shared", shared_volid).await,
        Some((512 << 20) / 8192)
    );
}

#[tokio::test]
async fn a_new_disk_on_a_storage_of_another_node_is_refused() {
    let mut o = opts("cluster", SCALE);
    for s in &mut o.scenario.storages {
        if s.id == "ssd" {
            s.nodes = vec!["pve2".into()];
        }
    }
    let (sim, c) = start(o).await;
    let upid = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            "newid=101&name=d&full=1&storage=shared",
        )
        .await
        .data();
    let st = c.wait_task(&sim, upid.as_str().expect("upid"), 600.0).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    c.put("/nodes/pve1/qemu/101/config", "scsi1=ssd:10")
        .await
        .expect_err(500, "storage 'ssd' is not available on node 'pve1'");
}

/// The cluster scenario with its template on pve1's local LVM-thin storage.
fn local_template_opts() -> pve_rollout::sim::SimOptions {
    let mut o = opts("cluster", SCALE);
    o.scenario.template.storage = "ssd".into();
    o.scenario.template.node = "pve1".into();
    o
}

async fn full_clone(c: &Client, sim: &pve_rollout::sim::Sim, newid: u32) {
    let upid = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            &format!("newid={newid}&name=m{newid}&full=1&storage=ssd"),
        )
        .await
        .data();
    let st = c.wait_task(sim, upid.as_str().expect("upid"), 600.0).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
}

/// Migrates `vmid` from pve1 to pve2 and returns the task's log and its simulated duration.
async fn migrate(c: &Client, sim: &pve_rollout::sim::Sim, vmid: u32) -> (Vec<String>, f64) {
    let begun = sim.now();
    let upid = c
        .post(
            &format!("/nodes/pve1/qemu/{vmid}/migrate"),
            "target=pve2&targetstorage=ssd",
        )
        .await
        .data();
    let upid = upid.as_str().expect("upid").to_string();
    assert!(upid.contains(&format!(":qmigrate:{vmid}:")), "{upid}");
    let locked = c
        .get(&format!("/nodes/pve1/qemu/{vmid}/config"))
        .await
        .data();
    assert_eq!(locked["lock"], "migrate", "{locked}");
    let st = c.wait_task(sim, &upid, 1200.0).await;
    let took = sim.now() - begun;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    (task_log(c, &upid).await, took)
}

#[tokio::test]
async fn offline_migration_moves_disks_and_config_in_time_with_their_size() {
    let (sim, c) = start(local_template_opts()).await;
    // Cloning to another node is refused while the template's disks are local.
    c.post(
        "/nodes/pve1/qemu/9000/clone",
        "newid=101&name=x&full=1&storage=ssd&target=pve2",
    )
    .await
    .expect_err(500, "can't clone to non-shared storage 'ssd'");
    full_clone(&c, &sim, 101).await;
    full_clone(&c, &sim, 102).await;
    c.put("/nodes/pve1/qemu/102/resize", "disk=scsi0&size=256G")
        .await
        .data();
    tick(&sim, 5.0).await;

    c.post("/nodes/pve1/qemu/101/migrate", "target=pve1")
        .await
        .expect_err(400, "Parameter verification failed.");
    c.post("/nodes/pve1/qemu/101/migrate", "target=pve9")
        .await
        .expect_err(500, "no such cluster node 'pve9'");
    c.post(
        "/nodes/pve1/qemu/101/migrate",
        "target=pve2&targetstorage=local",
    )
    .await
    .expect_err(500, "storage 'local' does not support vm images");
    c.post("/nodes/pve2/qemu/101/migrate", "target=pve3")
        .await
        .expect_err(
            500,
            "Configuration file 'nodes/pve2/qemu-server/101.conf' does not exist",
        );

    let (log, small) = migrate(&c, &sim, 101).await;
    let text = log.join("\n");
    for line in [
        "starting migration of VM 101 to node 'pve2' (192.168.100.12)",
        "found local disk 'ssd:vm-101-disk-",
        "found generated disk 'ssd:vm-101-cloudinit' (in current VM config)",
        "copying local disk images",
        "migration finished successfully (duration 00:0",
        "TASK OK",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let moved = c.get("/nodes/pve2/qemu/101/config").await.data();
    assert!(moved.get("lock").is_none(), "{moved}");
    assert!(
        moved["scsi0"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ssd:vm-101-disk-"),
        "{moved}"
    );
    c.get("/nodes/pve1/qemu/101/config").await.expect_err(
        500,
        "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist",
    );
    let volumes = |node: &'static str| {
        let c = c.clone();
        async move {
            c.get(&format!("/nodes/{node}/storage/ssd/content?vmid=101"))
                .await
                .data()
                .as_array()
                .map_or(0, |a| a.len())
        }
    };
    assert_eq!(volumes("pve1").await, 0, "freed on the source");
    assert_eq!(volumes("pve2").await, 3, "efidisk, scsi0, cloud-init");

    // Twice the disk, twice the time (LVM volumes are exported whole).
    let (_, large) = migrate(&c, &sim, 102).await;
    let ratio = large / small;
    assert!((1.7..2.3).contains(&ratio), "{small} s then {large} s");
}

#[tokio::test]
async fn a_linked_clone_on_local_storage_cannot_migrate() {
    let (sim, c) = start(local_template_opts()).await;
    let upid = c
        .post("/nodes/pve1/qemu/9000/clone", "newid=101&name=l")
        .await
        .data();
    let st = c.wait_task(&sim, upid.as_str().expect("upid"), 600.0).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let upid = c
        .post("/nodes/pve1/qemu/101/migrate", "target=pve2")
        .await
        .data();
    let upid = upid.as_str().expect("upid");
    let st = c.wait_task(&sim, upid, 600.0).await;
    assert_eq!(st["exitstatus"], "migration aborted", "{st}");
    let text = task_log(&c, upid).await.join("\n");
    assert!(
        text.contains("ERROR: migration aborted (duration 00:00:0")
            && text.contains("as it's a clone of 'base-9000-disk-"),
        "{text}"
    );
    let config = c.get("/nodes/pve1/qemu/101/config").await.data();
    assert!(config.get("lock").is_none(), "unlocked again: {config}");
}
