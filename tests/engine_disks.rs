//! Extra disks end to end: the plan refuses a storage the VM's node lacks, one without images,
//! a format the storage cannot allocate and a slot the template uses (exit 3, nothing created);
//! otherwise each disk is allocated in the configure step and found in the VM's config after
//! boot.

mod common;

use common::*;
use pve_rollout::config::{ExtraDisk, VmOverrides};
use pve_rollout::engine::event::Event;

const SCALE: f64 = 0.02;

fn disk(slot: &str, size: u64, storage: &str, format: Option<&str>) -> ExtraDisk {
    ExtraDisk {
        slot: slot.into(),
        size,
        storage: storage.into(),
        format: format.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_disks_are_checked_at_plan_allocated_and_verified() {
    let mut h = Harness::start("fast", 31, SCALE, quick(2)).await;
    h.config.defaults.disks = vec![
        disk("scsi1", 200 << 30, "nope", None),
        disk("scsi2", 10 << 30, "local", None),
        disk("ide2", 10 << 30, "ssd", None),
        disk("sata1", 10 << 30, "ssd", Some("qcow2")),
    ];
    let problems = h.refused_plan().await;
    assert_eq!(problems.len(), 8, "four per VM: {problems:#?}");
    for (needle, says) in [
        (
            "disks: scsi1 of",
            "storage 'nope' does not exist on node pve1",
        ),
        (
            "disks: scsi2 of",
            "storage 'local' on pve1 does not hold VM images",
        ),
        (
            "disks: ide2 of",
            "the template 9000 on pve1 uses ide2 already",
        ),
        (
            "disks: sata1 of",
            "storage 'ssd' (lvmthin) allocates raw volumes only, not qcow2",
        ),
    ] {
        assert_eq!(
            problems
                .iter()
                .filter(|p| p.contains(needle) && p.contains(says))
                .count(),
            2,
            "{needle} {says}: {problems:#?}"
        );
    }

    // The defaults' disks for one VM, its own list (replacing them) for the other.
    h.config.defaults.disks = vec![
        disk("scsi1", 200 << 30, "ssd", None),
        disk("virtio1", 512 << 20, "shared", Some("qcow2")),
    ];
    h.config.vm_configs.clear();
    h.config
        .vm_configs
        .insert("data-1".into(), VmOverrides::default());
    h.config.vm_configs.insert(
        "data-2".into(),
        VmOverrides {
            disks: Some(vec![disk("sata1", 20 << 30, "ssd", Some("raw"))]),
            ..VmOverrides::default()
        },
    );
    let plan = h.plan().await;
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    let one = h
        .client
        .vm_config(&plan.vms[0].node, plan.vms[0].vmid)
        .await
        .expect("config");
    let vmid = plan.vms[0].vmid;
    let scsi1 = one.get("scsi1").unwrap_or_default();
    assert!(
        scsi1.starts_with(&format!("ssd:vm-{vmid}-disk-")) && scsi1.ends_with("size=200G"),
        "{scsi1}"
    );
    let virtio1 = one.get("virtio1").unwrap_or_default();
    assert!(
        virtio1.starts_with(&format!("shared:{vmid}/vm-{vmid}-disk-"))
            && virtio1.contains(".qcow2,size=512M"),
        "{virtio1}"
    );
    let two = h
        .client
        .vm_config(&plan.vms[1].node, plan.vms[1].vmid)
        .await
        .expect("config");
    assert!(two.get("scsi1").is_none() && two.get("virtio1").is_none());
    assert!(
        two.get("sata1").unwrap_or_default().ends_with("size=20G"),
        "{two:?}"
    );
    let verified_disks = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Log { text, .. } if text.starts_with("extra disks in the config"))
        })
        .count();
    assert_eq!(verified_disks, 2, "each VM's disks checked after boot");
}
