//! Clones per target storage (`max_clones_per_storage`) and tasks followed through the node's
//! task list, in whole rollouts against the simulator.

mod common;

use common::*;
use pve_rollout::config::ClonesPerStorage;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::Event;
use pve_rollout::sim::{Scenario, SimStats};

const SCALE: f64 = 0.02;

fn settings(vms: usize) -> DemoSettings {
    DemoSettings {
        vms,
        deployment_delay: "3s".into(),
        stabilization: "5s".into(),
        ..DemoSettings::default()
    }
}

/// `realistic` with a smaller template: each clone copies for about `copy_s` alone.
fn storage_bound(disk: &str) -> Scenario {
    let mut scenario = Scenario::builtin("realistic").expect("scenario");
    scenario.template.disk_size = disk.into();
    scenario
}

/// The most clones that were copying onto one storage at the same moment.
fn most_clones_at_once(stats: &SimStats) -> usize {
    let spans: Vec<(f64, f64)> = stats
        .vms
        .iter()
        .filter_map(|v| Some((v.clone_started_at?, v.clone_finished_at?)))
        .collect();
    spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

async fn rollout(scenario: Scenario, vms: usize, limit: ClonesPerStorage) -> (Harness, Vec<Event>) {
    let mut h = Harness::start_with(scenario, 11, SCALE, settings(vms)).await;
    h.config.rollout.max_clones_per_storage = limit;
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), vec!["verified"; vms], "{summary:#?}");
    (h, events)
}

fn logged(events: &[Event], needle: &str) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::Log { text, .. } if text.contains(needle) => Some(text.clone()),
        _ => None,
    })
}

/// A limit of one: never two clones copying onto the storage at once (without it, they do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_one_clone_per_storage_holds() {
    let (free, _) = rollout(storage_bound("8G"), 4, ClonesPerStorage::Limit(0)).await;
    assert!(
        most_clones_at_once(&free.sim.stats()) > 1,
        "the control run overlaps its 40 s clones (3 s apart)"
    );
    let (one, events) = rollout(storage_bound("8G"), 4, ClonesPerStorage::Limit(1)).await;
    assert_eq!(most_clones_at_once(&one.sim.stats()), 1);
    assert!(
        logged(&events, "waiting for a clone slot on storage pve1/ssd").is_some(),
        "the VMs that waited said why"
    );
}

/// `auto`: the first clone runs alone and its pace decides. Four 16 GiB clones (86 s alone, 6 s
/// of preparation each) cannot go one at a time within 2% of the no-limit end (4 x 6 s of
/// preparation in a row), but two at a time can: the model picks 2, and no more run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_measures_the_storage_and_limits_storage_bound_clones() {
    let (h, events) = rollout(storage_bound("16G"), 4, ClonesPerStorage::Auto).await;
    let decision = logged(&events, "a clone alone copies in").expect("auto decided");
    let limit: usize = decision
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a limit was chosen: {decision}"));
    assert!(limit < 4, "{decision}");
    assert!(most_clones_at_once(&h.sim.stats()) <= limit, "{decision}");
}

/// The node's task list does the polling and tells how each task ended: no task is asked for
/// its own status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_followed_through_the_node_task_list() {
    let (h, _) = rollout(storage_bound("8G"), 4, ClonesPerStorage::Auto).await;
    let by = h.sim.stats().requests_by_endpoint;
    let count = |key: &str| by.get(key).copied().unwrap_or(0);
    assert!(count("GET /nodes/{node}/tasks") > 0, "{by:#?}");
    assert_eq!(count("GET /nodes/{node}/tasks/{upid}/status"), 0, "{by:#?}");
}
