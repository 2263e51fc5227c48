//! `destroy` removes exactly this rollout's VMs, never anyone else's, and is safe to run twice.

mod common;

use std::time::Duration;

use common::*;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::journal::{Entry, Journal};
use pve_rollout::engine::{Clock, destroy};
use pve_rollout::pve::{CloneRequest, ConfigUpdate, ErrorClass, TaskState, Upid};

const SCALE: f64 = 0.02;

async fn wait(h: &Harness, upid: &Upid) -> TaskState {
    loop {
        let s = h.client.task_status(upid).await.expect("task status");
        if s.state != TaskState::Running {
            return s.state;
        }
        // Simulator time: the engine's clock at the same scale.
        Clock::new(h.scale).sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_only_ours_and_twice_is_safe() {
    let h = Harness::start(
        "fast",
        21,
        SCALE,
        DemoSettings {
            vms: 2,
            deployment_delay: "2s".into(),
            stabilization: "1s".into(),
            ..DemoSettings::default()
        },
    )
    .await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 2]);
    let ours: Vec<u32> = summary.vms.iter().map(|v| v.vmid).collect();

    // A foreign VM that looks like ours: our name pattern, our tag, another rollout's marker,
    // and (by some mix-up) named in our journal.
    let plan = h.plan().await;
    let src = &plan.vms[0].source;
    let foreign = ours.iter().max().unwrap() + 10;
    let upid = h
        .client
        .clone_vm(
            &src.node,
            src.vmid,
            &CloneRequest {
                newid: foreign,
                name: "demo-3".into(),
                description: Some("pve-rollout: someone-else".into()),
                full: true,
                storage: Some("ssd".into()),
                ..CloneRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(wait(&h, &upid).await.is_success());
    h.client
        .set_config(
            &src.node,
            foreign,
            &ConfigUpdate {
                set: vec![("tags".into(), "pve-rollout".into())],
                ..ConfigUpdate::default()
            },
        )
        .await
        .unwrap();
    let journal = Journal::open(h.out.path()).unwrap();
    journal
        .append(Entry::Assigned {
            name: "demo-3".into(),
            vmid: foreign,
            node: src.node.clone(),
            address: None,
            nic_addresses: Default::default(),
        })
        .await
        .unwrap();

    let found = destroy::find(&h.client, &h.config).await.unwrap();
    let mut ids: Vec<u32> = found.targets.iter().map(|t| t.vmid).collect();
    ids.sort();
    assert_eq!(ids, ours, "{found:?}");
    assert!(
        found
            .spared
            .iter()
            .any(|s| s.contains(&foreign.to_string()) && s.contains("left alone")),
        "{found:?}"
    );
    assert!(found.targets.iter().all(|t| t.status == "running"));

    let removed = destroy::remove(
        &h.client,
        &journal,
        Clock::new(SCALE),
        found.targets.clone(),
    )
    .await;
    assert!(removed.iter().all(|r| r.result.is_ok()), "{removed:?}");
    for t in &found.targets {
        let err = h.client.vm_config(&t.node, t.vmid).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::NotFound, "VM {} is gone", t.vmid);
    }
    let cfg = h
        .client
        .vm_config(&src.node, foreign)
        .await
        .expect("the foreign VM stays");
    assert_eq!(cfg.get("name"), Some("demo-3"));

    // Twice: nothing left to find, and removing the same list again is harmless.
    let again = destroy::find(&h.client, &h.config).await.unwrap();
    assert!(again.targets.is_empty(), "{again:?}");
    let removed = destroy::remove(&h.client, &journal, Clock::new(SCALE), found.targets).await;
    assert!(removed.iter().all(|r| r.result.is_ok()), "{removed:?}");
    assert!(h.client.vm_config(&src.node, foreign).await.is_ok());
}
