//! Crash and resume (issue 7): a rollout killed at a point of its way is run again, from a new
//! plan over the same config and journal, against the same simulator; the rerun must end with
//! every VM verified and every VM cloned exactly once.
//!
//! The kill is `JoinHandle::abort` on the engine's task when a chosen event goes by: the engine
//! and its VM tasks are dropped at their next await point, as with SIGKILL; only what the
//! journal had flushed survives (the binary is SIGKILLed for real in `tests/resume_sigkill.rs`).

mod common;

use common::*;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::EngineError;
use pve_rollout::engine::event::{Event, Phase, VmState};
use pve_rollout::engine::journal::{self, History, Step};
use pve_rollout::pve::{CloneRequest, TaskState};

const SCALE: f64 = 0.02;
const VMS: usize = 3;

fn settings() -> DemoSettings {
    DemoSettings {
        vms: VMS,
        deployment_delay: "3s".into(),
        stabilization: "2s".into(),
        agent_timeout: "2m".into(),
        ip_timeout: "2m".into(),
        ..DemoSettings::default()
    }
}

fn enters(vm: usize, phase: Phase) -> impl Fn(&Event) -> bool + Sync {
    move |e| {
        matches!(e, Event::VmState { vm: v, state: VmState::Active { phase: p }, .. }
            if *v == vm && *p == phase)
    }
}

/// The clone of `vm` was accepted (its UPID is in the journal by then).
fn clone_accepted(vm: usize) -> impl Fn(&Event) -> bool + Sync {
    move |e| matches!(e, Event::Log { vm: Some(v), text, .. } if *v == vm && text.starts_with("cloning "))
}

/// Kills a rollout at each point in turn (each in a rerun of the one before), then runs it to
/// the end and checks that nothing was lost or doubled.
async fn kill_then_resume(kills: &[&(dyn Fn(&Event) -> bool + Sync)]) {
    let h = Harness::start("fast", 11, SCALE, settings()).await;
    let first_plan = h.plan().await;
    for (k, kill_at) in kills.iter().enumerate() {
        assert!(
            run_and_kill(&h, *kill_at).await,
            "kill point {k} was reached"
        );
    }
    // A resume that loses track of a VM tends to wait for it until a phase timeout: fail fast.
    let (summary, _) = tokio::time::timeout(std::time::Duration::from_secs(60), h.run_plain())
        .await
        .expect("the resumed rollout ends within a minute");
    assert_eq!(states(&summary), ["verified"; VMS], "{summary:#?}");

    let stats = h.sim.stats();
    let history = History::read(&journal::path_in(h.out.path())).expect("journal reads");
    for (vm, planned) in summary.vms.iter().zip(&first_plan.vms) {
        assert_eq!(
            stats.clones_by_name.get(&vm.name).copied(),
            Some(1),
            "{} cloned once: {:?}",
            vm.name,
            stats.clones_by_name
        );
        assert_eq!(vm.vmid, planned.vmid, "the rerun kept {}'s id", vm.name);
        assert_eq!(history.vms[&vm.name].step, Step::Verified);
    }
    // Run again, it is done: the plan sees every VM verified and running, nothing to do.
    assert!(h.plan().await.already_done());
}

macro_rules! kill_points {
    ($($name:ident: [$($kill:expr),+];)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            kill_then_resume(&[$(&$kill),+]).await;
        }
    )+};
}

kill_points! {
    killed_right_after_planning: [|e: &Event| matches!(e, Event::Planned { .. })];
    killed_as_the_first_clone_is_asked_for: [enters(0, Phase::Cloning)];
    killed_when_the_first_clone_was_accepted: [clone_accepted(0)];
    killed_as_the_second_clone_is_asked_for: [enters(1, Phase::Cloning)];
    killed_while_configuring: [enters(0, Phase::Configuring)];
    killed_while_booting: [enters(0, Phase::Booting)];
    killed_with_clones_and_boots_in_flight: [enters(1, Phase::Configuring)];
    killed_awaiting_the_agent: [enters(0, Phase::AwaitingAgent)];
    killed_when_the_ip_was_found: [enters(0, Phase::IpFound)];
    killed_while_verifying: [enters(0, Phase::Verifying)];
    killed_right_after_a_vm_verified: [enters(0, Phase::Verified)];
    killed_when_the_last_clone_was_accepted: [clone_accepted(2)];
    killed_as_the_last_vm_verifies: [enters(2, Phase::Verifying)];
    killed_twice_cloning_then_booting: [clone_accepted(1), enters(1, Phase::Booting)];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_the_journal_assigned_but_someone_else_took_is_refused() {
    let h = Harness::start("fast", 5, SCALE, settings()).await;
    // Killed before the third VM's clone was asked for: its id is only in the journal.
    assert!(run_and_kill(&h, &enters(1, Phase::Cloning)).await);
    let history = History::read(&journal::path_in(h.out.path())).unwrap();
    let third = &history.vms["demo-3"];
    assert_eq!(third.step, Step::Assigned);

    // Someone else creates a VM with that id meanwhile.
    let plan = h.plan().await;
    let source = &plan.vms[0].source;
    let upid = h
        .client
        .clone_vm(
            &source.node,
            source.vmid,
            &CloneRequest {
                newid: third.vmid,
                name: "someone-elses".into(),
                full: true,
                storage: Some("ssd".into()),
                ..CloneRequest::default()
            },
        )
        .await
        .expect("foreign clone accepted");
    let state = loop {
        let s = h.client.task_status(&upid).await.unwrap();
        if s.state != TaskState::Running {
            break s.state;
        }
        tokio::time::sleep(std::time::Duration::from_secs_f64(SCALE)).await;
    };
    assert!(state.is_success(), "{state:?}");

    let err = pve_rollout::engine::plan::build(&h.client, &h.config)
        .await
        .expect_err("preflight refuses the taken id");
    let EngineError::Preflight(problems) = &err else {
        panic!("{err}")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("VM id {}", third.vmid))
                && p.contains("someone-elses")
                && p.contains("demo-3")),
        "{problems:?}"
    );
    assert_eq!(err.exit_code(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_another_rollout_is_refused() {
    let h = Harness::start("fast", 5, SCALE, settings()).await;
    let j = journal::Journal::open(h.out.path()).unwrap();
    j.append(journal::Entry::RolloutStarted {
        rollout: "other".into(),
        settings: "x".into(),
        values: None,
    })
    .await
    .unwrap();
    let err = pve_rollout::engine::plan::build(&h.client, &h.config)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("belongs to rollout 'other'"),
        "{err}"
    );
}
