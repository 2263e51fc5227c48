//! A panic inside one VM's task (forced by the debug-build hook `PVE_ROLLOUT_TEST_VM_PANIC`)
//! fails that VM alone with `internal error: <message>`; the others verify, and a retry
//! verifies it. The only test of this binary: the hook is read from the process environment.

mod common;

use common::*;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::{Command, Event, Phase, VmState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_vm_task_fails_that_vm_alone_and_a_retry_verifies_it() {
    // SAFETY: set before any task of this binary's only test reads the environment.
    unsafe { std::env::set_var("PVE_ROLLOUT_TEST_VM_PANIC", "demo-2:booting") };
    let settings = DemoSettings {
        vms: 3,
        deployment_delay: "3s".into(),
        stabilization: "5s".into(),
        ..DemoSettings::default()
    };
    let h = Harness::start("fast", 3, 0.02, settings).await;
    let (summary, events) = h
        .run(true, |mut rx, tx| async move {
            let mut all = Vec::new();
            while let Some(e) = rx.recv().await {
                match &e {
                    Event::VmState {
                        vm: 1,
                        state: VmState::Failed { .. },
                        ..
                    } => tx.send(Command::Retry(1)).expect("engine listens"),
                    Event::Finished { summary }
                        if summary.vms.iter().all(|v| v.state == "verified") =>
                    {
                        all.push(e);
                        break;
                    }
                    _ => {}
                }
                all.push(e);
            }
            drop(tx);
            while let Some(e) = rx.recv().await {
                all.push(e);
            }
            all
        })
        .await;
    assert_eq!(states(&summary), ["verified"; 3], "{summary:#?}");
    assert_eq!(summary.vms[1].attempts, 2, "the retry ran");
    assert_eq!(summary.vms[0].attempts, 1);
    // The failure: in the phase it panicked in, with the panic's text, also as a log line.
    let failed = events.iter().find_map(|e| match e {
        Event::VmState {
            vm: 1,
            state: VmState::Failed { phase, reason },
            ..
        } => Some((*phase, reason.clone())),
        _ => None,
    });
    let (phase, reason) = failed.expect("VM 2 failed once");
    assert_eq!(phase, Phase::Booting);
    assert!(
        reason.starts_with("internal error: PVE_ROLLOUT_TEST_VM_PANIC: deliberate panic"),
        "{reason}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Log { vm: Some(1), text, .. } if text.contains("the VM's task panicked")
    )));
    // Each VM was cloned once: the retry went on from booting.
    let stats = h.sim.stats();
    assert!(stats.clones_by_name.values().all(|n| *n == 1), "{stats:?}");
}
