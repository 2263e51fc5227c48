//! Chaos (issue 7): 200 VMs on an 8-node cluster where everything goes wrong at once: the flaky
//! scenario's transient faults, the stuck scenario's VMs that never get an agent or an IP, and a
//! node that drops off the network for a while. Nothing may panic, every VM must end verified or
//! failed with a reason, the outputs must be complete, and retrying the failed VMs once the node is
//! back must bring every recoverable one to verified.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::{Command, Event};
use pve_rollout::pve::Client;
use pve_rollout::report::Summary;
use pve_rollout::sim::SimStats;
use pve_rollout::sim::scenario::{NodeOutage, Scenario};

const VMS: usize = 200;
/// 200 VMs take the agent lane in turn for thousands of simulated seconds: run them fast.
const SCALE: f64 = 0.003;
/// The node that goes away, and when (simulated seconds).
const LOST_NODE: &str = "pve8";
const OUTAGE_FROM_S: f64 = 20.0;
/// Long enough to catch VMs in every phase, short enough to be over by the first finish.
const OUTAGE_UNTIL_S: f64 = 3000.0;
/// Retry rounds after the first pass: the flaky faults never clear, so a retried VM can meet
/// another one and fail again with its reason; each round retries what is still failed.
const MAX_ROUNDS: usize = 3;
/// Clone ordinals (1 = first clone) whose guest never gets an agent / an IPv4 lease. An ordinal
/// that lands on a clone task that fails (storage lock timeouts) is lost, hence five of each.
const AGENT_NEVER: [usize; 5] = [3, 40, 60, 110, 150];
const IP_NEVER: [usize; 5] = [5, 77, 99, 130, 170];

/// `cluster` with `flaky`'s fault rates, `stuck`'s hopeless guests and a node outage that ends.
fn chaos_scenario() -> Scenario {
    let mut s = Scenario::builtin("cluster").expect("cluster scenario");
    let flaky = Scenario::builtin("flaky").expect("flaky scenario").faults;
    s.name = "chaos".into();
    // 200 VMs of 1 GiB fit 8 nodes of 256 GiB with room to spare, whatever the placement.
    s.cluster.node_memory_gib = 256;
    // 200 concurrent full clones share the storage's throughput: a small disk keeps the run short.
    s.template.disk_size = "8G".into();
    s.faults = flaky;
    s.faults.agent_never_up = AGENT_NEVER.to_vec();
    s.faults.ip_never = IP_NEVER.to_vec();
    s.faults.node_offline = vec![NodeOutage {
        node: LOST_NODE.into(),
        at_s: OUTAGE_FROM_S,
        until_s: Some(OUTAGE_UNTIL_S),
    }];
    s.validate().expect("chaos scenario is valid");
    s
}

fn settings() -> DemoSettings {
    DemoSettings {
        vms: VMS,
        storage: "shared".into(),
        memory_mib: 1024,
        deployment_delay: "500ms".into(),
        stabilization: "2s".into(),
        agent_timeout: "60s".into(),
        ip_timeout: "60s".into(),
        max_in_flight: 8,
        ..DemoSettings::default()
    }
}

fn failed(summary: &Summary) -> Vec<usize> {
    summary
        .vms
        .iter()
        .enumerate()
        .filter(|(_, v)| v.state == "failed")
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_vms_through_flaky_stuck_and_a_lost_node() {
    let wall = Instant::now();
    let h = Harness::start_with(chaos_scenario(), 42, SCALE, settings()).await;
    assert_eq!(
        h.config.rollout.nodes.len(),
        8,
        "all 8 nodes online at start"
    );
    let probe = h.client.clone();

    // Each Finished ends a round: wait for the lost node to be back, retry every failed VM, and
    // stop after MAX_ROUNDS retry rounds or when only hopeless VMs are left failed.
    let sim = &h.sim;
    let (summary, events) = h
        .run(true, |mut rx, tx| async move {
            let mut all = Vec::new();
            let mut rounds = 0;
            let mut tx = Some(tx);
            while let Some(e) = rx.recv().await {
                let finished = match &e {
                    Event::Finished { summary } => Some(summary.as_ref().clone()),
                    _ => None,
                };
                all.push(e);
                let (Some(finished), Some(commands)) = (finished, &tx) else {
                    continue;
                };
                let failed_now = failed(&finished);
                let hopeless = hopeless_names(&sim.stats());
                let recoverable_failed = failed_now
                    .iter()
                    .any(|&i| !hopeless.contains(&finished.vms[i].name));
                if !recoverable_failed || rounds == MAX_ROUNDS {
                    // Closing the command channel ends the lingering engine.
                    tx = None;
                    continue;
                }
                if rounds == 0 {
                    wait_until_online(&probe, LOST_NODE).await;
                }
                rounds += 1;
                for i in failed_now {
                    commands.send(Command::Retry(i)).expect("engine listens");
                }
            }
            all
        })
        .await;
    let finishes: Vec<&Summary> = events
        .iter()
        .filter_map(|e| match e {
            Event::Finished { summary } => Some(summary.as_ref()),
            _ => None,
        })
        .collect();
    let first = finishes[0];
    // First pass: every VM settled, failed ones carry a reason; the summary is complete.
    assert_eq!(first.vms.len(), VMS);
    for vm in &first.vms {
        assert!(
            vm.state == "verified" || vm.state == "failed",
            "{} ended {}",
            vm.name,
            vm.state
        );
        if vm.state == "failed" {
            assert!(
                vm.error.as_deref().is_some_and(|e| !e.trim().is_empty()),
                "{} failed without a reason",
                vm.name
            );
        }
    }
    let first_failed = failed(first);

    // Which VMs can never verify: the simulator knows which guests are hopeless (an ordinal
    // whose clone task failed and was redone is lost, so not every ordinal lands).
    let stats = h.sim.stats();
    let hopeless = hopeless_names(&stats);
    // How many land depends on which clones were redone (the stuck scenario's own test pins
    // them down); here they only must fail with a reason and stay failed.
    println!(
        "hopeless guests: {} never-agent, {} never-IP: {hopeless:?}",
        stats.vms.iter().filter(|v| v.agent_never).count(),
        stats.vms.iter().filter(|v| v.ip_never).count()
    );
    for name in &hopeless {
        let vm = first
            .vms
            .iter()
            .find(|v| v.name == **name)
            .expect("planned");
        assert_eq!(vm.state, "failed", "{name} cannot verify: {vm:?}");
    }
    let lost_node_failed = first
        .vms
        .iter()
        .filter(|v| v.state == "failed" && v.node == LOST_NODE)
        .filter(|v| !hopeless.contains(v.name.as_str()))
        .count();
    assert!(
        lost_node_failed > 0,
        "the outage made no VM fail, so it was not exercised: {first_failed:?}"
    );

    // After the retries: every recoverable VM verified, the hopeless ones failed again.
    assert_eq!(summary.vms.len(), VMS);
    for vm in &summary.vms {
        if hopeless.contains(vm.name.as_str()) {
            assert_eq!(vm.state, "failed", "{vm:?}");
            assert!(vm.error.as_deref().is_some_and(|e| !e.trim().is_empty()));
        } else {
            assert_eq!(
                vm.state,
                "verified",
                "{} (node {}) after {} retry round(s): {:?}",
                vm.name,
                vm.node,
                finishes.len() - 1,
                vm.error
            );
        }
    }
    let retried = events
        .iter()
        .filter(|e| matches!(e, Event::Attempt { .. }))
        .count();
    let asked: usize = finishes[..finishes.len() - 1]
        .iter()
        .map(|s| failed(s).len())
        .sum();
    assert_eq!(retried, asked, "one new attempt per Retry of a failed VM");

    // Whatever answers were lost and clones redone, each VM exists exactly once.
    let resources = h.client.cluster_resources(None).await.expect("resources");
    for vm in &summary.vms {
        let same_name = resources
            .iter()
            .filter(|r| r.name.as_deref() == Some(vm.name.as_str()))
            .count();
        assert_eq!(same_name, 1, "{} exists once", vm.name);
    }

    // The written outputs are the final summary, complete.
    let json = std::fs::read_to_string(h.out.path().join("summary.json")).expect("summary.json");
    let parsed: Summary = serde_json::from_str(&json).expect("summary.json parses");
    assert_eq!(parsed.vms.len(), VMS);
    assert_eq!(parsed.count("verified"), VMS - hopeless.len());
    let inventory =
        std::fs::read_to_string(h.out.path().join("inventory.ini")).expect("inventory.ini");
    for vm in parsed.vms.iter().filter(|v| v.state == "verified") {
        let ip = vm.ip.as_deref().expect("verified VMs have an IP");
        assert!(
            inventory
                .lines()
                .any(|l| l.starts_with(vm.name.as_str()) && l.contains(ip)),
            "{} missing from the inventory",
            vm.name
        );
    }

    // Why the first pass failed, by kind (ids and nodes blanked), for the record.
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for vm in first.vms.iter().filter(|v| v.state == "failed") {
        let text = vm.error.as_deref().unwrap_or_default();
        let kind: String = text
            .chars()
            .take(48)
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        *reasons.entry(kind).or_default() += 1;
    }
    println!("first-pass failures by kind: {reasons:#?}");

    let stats = h.sim.stats();
    let faults: u64 = stats
        .responses_by_status
        .iter()
        .filter(|(code, _)| **code >= 500)
        .map(|(_, n)| n)
        .sum();
    println!(
        "chaos: {VMS} VMs; first pass {} failed ({lost_node_failed} on {LOST_NODE}, {} hopeless); \
         {retried} VM retries over {} round(s); {} verified, {} failed at the end; \
         simulator answers by status {:?} ({faults} errors); client request retries {}; \
         {} requests; {:.0} simulated s, {:.1} s wall",
        first_failed.len(),
        hopeless.len(),
        finishes.len() - 1,
        summary.count("verified"),
        summary.count("failed"),
        stats.responses_by_status,
        h.client.stats().retries_total,
        stats.requests_total,
        stats.now,
        wall.elapsed().as_secs_f64(),
    );
}

/// Names of the VMs whose guest never gets an agent or an IP, as the simulator made them.
fn hopeless_names(stats: &SimStats) -> BTreeSet<String> {
    stats
        .vms
        .iter()
        .filter(|v| v.agent_never || v.ip_never)
        .map(|v| v.name.clone())
        .collect()
}

/// Polls the cluster until `node` reports online again (bounded, so a bug cannot hang the test).
async fn wait_until_online(client: &Client, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = client.nodes().await.expect("nodes answer");
        if nodes.iter().any(|n| n.node == node && n.status == "online") {
            return;
        }
        assert!(Instant::now() < deadline, "{node} never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every clone answer lost, clones landing on other nodes: the VM is found locked on the source
/// node without its marker while the clone runs; the engine waits for it instead of calling it
/// someone else's, and adopts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_clone_answers_across_nodes_are_awaited_and_adopted() {
    let mut s = Scenario::builtin("cluster").expect("cluster scenario");
    s.cluster.nodes.truncate(3);
    s.faults.node_offline.clear();
    s.faults.p_clone_response_lost = 1.0;
    // A clone (40 GiB at 1 GB/s) outlasts the 30 s after which the lost answer comes back, so
    // the client finds each VM while its clone still runs.
    s.template.disk_size = "40G".into();
    for storage in &mut s.storages {
        if storage.id == "shared" {
            storage.throughput_mb_s = 1000.0;
        }
    }
    s.validate().expect("valid");
    let h = Harness::start_with(
        s,
        3,
        0.01,
        DemoSettings {
            vms: 3,
            storage: "shared".into(),
            deployment_delay: "10s".into(),
            ..settings()
        },
    )
    .await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 3], "{summary:#?}");
    assert!(
        summary.vms.iter().any(|v| v.node != "pve1"),
        "some clone crossed nodes"
    );
    let resources = h.client.cluster_resources(None).await.expect("resources");
    for vm in &summary.vms {
        let same_name = resources
            .iter()
            .filter(|r| r.name.as_deref() == Some(vm.name.as_str()))
            .count();
        assert_eq!(same_name, 1, "{} exists once", vm.name);
    }
}

/// pvedaemon answers some protected calls 596 after 30 s and runs them anyway: a clone, a
/// config update, a start, a guest-exec or a delete whose answer was lost may have happened. The
/// engine looks before repeating each, so every VM is made once, configured, started and proven,
/// and `destroy` removes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_after_the_work_ran_are_checked_before_repeating() {
    let mut s = Scenario::builtin("fast").expect("fast scenario");
    s.faults.p_596_executed = 0.15;
    s.validate().expect("valid");
    let h = Harness::start_with(
        s,
        5,
        0.01,
        DemoSettings {
            vms: 6,
            storage: "ssd".into(),
            deployment_delay: "5s".into(),
            ..settings()
        },
    )
    .await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 6], "{summary:#?}");
    let stats = h.sim.stats();
    assert!(
        stats.responses_by_status.get(&596).copied().unwrap_or(0) > 0,
        "the fault fired: {:?}",
        stats.responses_by_status
    );
    let resources = h.client.cluster_resources(None).await.expect("resources");
    for vm in &summary.vms {
        let same_name = resources
            .iter()
            .filter(|r| r.name.as_deref() == Some(vm.name.as_str()))
            .count();
        assert_eq!(same_name, 1, "{} exists once", vm.name);
    }
    let journal = pve_rollout::engine::journal::Journal::open(h.out.path()).expect("journal");
    let found = pve_rollout::engine::destroy::find(&h.client, &h.config)
        .await
        .expect("find");
    assert_eq!(found.targets.len(), 6, "{found:?}");
    let removed = pve_rollout::engine::destroy::remove(
        &h.client,
        &journal,
        pve_rollout::engine::Clock::new(0.01),
        found.targets,
    )
    .await;
    assert!(removed.iter().all(|r| r.result.is_ok()), "{removed:?}");
    let left = h.client.cluster_resources(None).await.expect("resources");
    assert!(
        summary.vms.iter().all(|vm| left
            .iter()
            .all(|r| r.name.as_deref() != Some(vm.name.as_str()))),
        "all removed"
    );
}
