//! The operator's two moves for a VM whose guest never came up: reboot it and wait again, or
//! throw it away and clone it again (same name and id). Both are engine commands, journaled.

mod common;

use common::*;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::{Command, Event, Phase, VmState};
use pve_rollout::engine::journal::{self, Step};

fn settings(vms: usize) -> DemoSettings {
    DemoSettings {
        vms,
        deployment_delay: "2s".into(),
        stabilization: "2s".into(),
        agent_timeout: "5m".into(),
        ip_timeout: "2m".into(),
        ..DemoSettings::default()
    }
}

/// Sends `command` once `trigger` matches an event, then runs until every VM is verified.
async fn drive(
    h: &Harness,
    trigger: impl Fn(&Event) -> bool + Send + 'static,
    command: Command,
) -> (pve_rollout::report::Summary, Vec<Event>) {
    h.run(true, move |mut rx, tx| async move {
        let mut all = Vec::new();
        let mut sent = false;
        while let Some(e) = rx.recv().await {
            if !sent && trigger(&e) {
                tx.send(command).expect("engine listens");
                sent = true;
            }
            let done = sent
                && matches!(&e, Event::Finished { summary }
                    if summary.vms.iter().all(|v| v.state == "verified"));
            all.push(e);
            if done {
                break;
            }
        }
        drop(tx);
        while let Some(e) = rx.recv().await {
            all.push(e);
        }
        all
    })
    .await
}

/// The `stuck` scenario's third clone never gets an agent; recreating it gives a fresh clone
/// (same name, same id) whose agent answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_destroys_and_clones_again_with_the_same_name_and_id() {
    let h = Harness::start("stuck", 2, 0.02, settings(3)).await;
    let stuck = 2;
    let (summary, events) = drive(
        &h,
        move |e| {
            matches!(e, Event::VmState { vm, state: VmState::Active { phase: Phase::AwaitingAgent }, .. }
                if *vm == stuck)
        },
        Command::Recreate(stuck),
    )
    .await;
    assert_eq!(states(&summary), ["verified"; 3], "{summary:#?}");
    let vm = &summary.vms[stuck];
    assert_eq!(vm.attempts, 2);
    let stats = h.sim.stats();
    assert_eq!(stats.clones_by_name.get(&vm.name), Some(&2), "cloned again");
    assert!(
        stats
            .vms
            .iter()
            .filter(|v| v.vmid == vm.vmid)
            .all(|v| v.name == vm.name),
        "the same id"
    );
    assert!(events.iter().any(|e| matches!(e,
        Event::Log { vm: Some(v), text, .. } if *v == stuck && text.starts_with("recreate"))));
    let history = journal::History::read(&journal::path_in(h.out.path())).expect("journal");
    assert_eq!(history.vms[&vm.name].step, Step::Verified);
    let text = std::fs::read_to_string(journal::path_in(h.out.path())).expect("journal");
    assert!(text.contains("\"event\":\"recreate-requested\""), "{text}");
}

/// A verified VM rebooted on the operator's word goes through booting and the checks again,
/// on the same VM (not cloned again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_and_wait_stops_starts_and_verifies_the_same_vm_again() {
    let h = Harness::start("fast", 4, 0.02, settings(2)).await;
    let (summary, events) = drive(
        &h,
        |e| {
            matches!(
                e,
                Event::VmState {
                    vm: 0,
                    state: VmState::Active {
                        phase: Phase::Verified
                    },
                    ..
                }
            )
        },
        Command::RebootAndWait(0),
    )
    .await;
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    assert_eq!(summary.vms[0].attempts, 2);
    let verified = first_state(&events, 0, is_phase(Phase::Verified)).expect("verified");
    let booting_again = events[verified..]
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::VmState {
                    vm: 0,
                    state: VmState::Active {
                        phase: Phase::Booting
                    },
                    ..
                }
            )
        })
        .expect("booting again after the reboot");
    assert!(
        events[verified + booting_again..].iter().any(|e| matches!(
            e,
            Event::VmState {
                vm: 0,
                state: VmState::Active {
                    phase: Phase::Verified
                },
                ..
            }
        )),
        "verified again"
    );
    let stats = h.sim.stats();
    assert_eq!(
        stats.clones_by_name.get(&summary.vms[0].name),
        Some(&1),
        "not cloned again"
    );
    let text = std::fs::read_to_string(journal::path_in(h.out.path())).expect("journal");
    assert!(text.contains("\"event\":\"reboot-requested\""), "{text}");
}
