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
