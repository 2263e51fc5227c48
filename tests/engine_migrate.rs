//! A template with local disks on another node: the VM is cloned where the template lives and
//! the stopped clone migrated to its node (the plan shows it; a linked clone is refused with
//! the reason). A rollout killed mid-migration and resumed waits for that migration instead of
//! asking for another, and every VM ends verified on its node.

mod common;

use common::*;
use pve_rollout::config::{CloneMode, Placement};
use pve_rollout::engine::event::Event;
use pve_rollout::sim::Scenario;

const SCALE: f64 = 0.02;
const MIGRATE_POST: &str = "POST /nodes/{node}/qemu/{vmid}/migrate";

/// Two nodes, the template on pve1's local LVM-thin storage, VMs spread over both.
async fn harness(seed: u64) -> Harness {
    let mut scenario = Scenario::builtin("cluster").expect("cluster");
    scenario.template.storage = "ssd".into();
    scenario.template.node = "pve1".into();
    let settings = quick(2);
    let mut h = Harness::start_with(scenario, seed, SCALE, settings).await;
    h.config.rollout.nodes = vec!["pve1".into(), "pve2".into()];
    h.config.rollout.placement = Placement::Spread;
    h.config.defaults.storage = "ssd".into();
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_clone_that_would_need_a_migration_is_refused_with_the_reason() {
    let mut h = harness(41).await;
    h.config.defaults.clone = CloneMode::Linked;
    let problems = h.refused_plan().await;
    assert_eq!(
        problems.len(),
        1,
        "only the VM placed on pve2: {problems:#?}"
    );
    assert!(
        problems[0].contains("is placed on pve2")
            && problems[0].contains("cloned on pve1")
            && problems[0].contains("a linked clone cannot migrate"),
        "{problems:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloned_where_the_template_lives_migrated_and_resumed_mid_migration() {
    let h = harness(42).await;
    let plan = h.plan().await;
    let nodes: Vec<&str> = plan.vms.iter().map(|vm| vm.node.as_str()).collect();
    assert_eq!(nodes, ["pve1", "pve2"]);
    assert!(!plan.vms[0].source.migrate);
    assert!(plan.vms[1].source.migrate && plan.vms[1].source.node == "pve1");
    let table = plan.table();
    assert!(
        table.contains("clone 9000 on pve1, migrate -> pve2"),
        "{table}"
    );

    // Killed while the second VM's migration runs (PVE goes on with it).
    let migrating = |e: &Event| matches!(e, Event::Log { vm: Some(1), text, .. } if text.starts_with("migrating "));
    assert!(run_and_kill(&h, &migrating).await, "the migration began");
    let vmid = plan.vms[1].vmid;
    let during = h
        .client
        .vm_config("pve1", vmid)
        .await
        .expect("on pve1 still");
    assert_eq!(during.lock(), Some("migrate"), "{during:?}");

    let replan = h.plan().await;
    assert_eq!(replan.vms[1].node, "pve2", "still bound for pve2");
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Log { vm: Some(1), text, .. }
            if text.starts_with("waiting for the migration an earlier run started"))),
        "the resume awaited the earlier migration"
    );
    let stats = h.sim.stats();
    assert_eq!(
        stats.requests_by_endpoint.get(MIGRATE_POST).copied(),
        Some(1),
        "one migration asked for"
    );
    assert_eq!(
        stats.clones_by_name.get(&plan.vms[1].name).copied(),
        Some(1)
    );
    let config = h.client.vm_config("pve2", vmid).await.expect("on pve2");
    assert!(
        config
            .get("scsi0")
            .unwrap_or_default()
            .starts_with(&format!("ssd:vm-{vmid}-disk-")),
        "{config:?}"
    );
    let status = h.client.vm_status("pve2", vmid).await.expect("status");
    assert!(status.is_running());
}
