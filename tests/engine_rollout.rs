//! Whole rollouts in-process against the simulator (issue: the rollout engine).

mod common;

use std::time::Duration;

use common::*;
use pve_rollout::demo::DemoSettings;
use pve_rollout::engine::event::{Command, Event, Phase, VmState};
use pve_rollout::sim::scenario::{Scenario, Span};

const SCALE: f64 = 0.02;

fn settings(vms: usize, mode: &str) -> DemoSettings {
    DemoSettings {
        vms,
        mode: mode.into(),
        deployment_delay: "3s".into(),
        stabilization: "5s".into(),
        agent_timeout: "2m".into(),
        ip_timeout: "2m".into(),
        ..DemoSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_vms_pipelined_all_verify_and_outputs_are_written() {
    let h = Harness::start("fast", 7, SCALE, settings(5, "pipelined")).await;
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 5], "{summary:#?}");
    for vm in &summary.vms {
        let ip = vm.ip.as_deref().expect("every verified VM has an IP");
        assert!(
            ip.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_private()),
            "{ip}"
        );
        assert!(
            vm.uname.as_deref().is_some_and(|u| u.starts_with("Linux")),
            "{vm:?}"
        );
        for key in [
            "cloning",
            "configuring",
            "booting",
            "awaiting-agent",
            "ip-found",
            "verifying",
        ] {
            let t = vm
                .phases
                .get(key)
                .unwrap_or_else(|| panic!("{key} timed for {}", vm.name));
            assert!(t.started.is_some() && t.finished.is_some(), "{key}: {t:?}");
        }
        assert!(h.out.path().join(format!("vm_{}_ip.txt", vm.vmid)).exists());
        assert!(
            h.out
                .path()
                .join(format!("vm_{}_summary.txt", vm.vmid))
                .exists()
        );
    }
    for f in ["summary.json", "summary.md", "inventory.ini"] {
        assert!(h.out.path().join(f).exists(), "{f} written");
    }
    assert!(matches!(events.last(), Some(Event::Finished { .. })));
    // The five mission states were all shown for every VM.
    for vm in 0..5 {
        for phase in [
            Phase::Cloning,
            Phase::Booting,
            Phase::AwaitingAgent,
            Phase::IpFound,
            Phase::Verified,
        ] {
            assert!(
                first_state(&events, vm, is_phase(phase)).is_some(),
                "VM {vm} never {phase}"
            );
        }
    }
    // One guest command per VM proves guest-exec, names the guest and reports the agent's
    // service.
    let stats = h.sim.stats();
    assert_eq!(
        stats
            .requests_by_endpoint
            .get("POST /nodes/{node}/qemu/{vmid}/agent/exec"),
        Some(&5)
    );
    for vm in 0..5 {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Log { vm: Some(v), text, .. }
                if *v == vm && text == "qemu-guest-agent service is active")),
            "VM {vm}'s service state logged"
        );
    }
    // Exactly one clone per VM.
    for vm in &summary.vms {
        assert_eq!(
            stats.clones_by_name.get(&vm.name).copied(),
            Some(1),
            "{}",
            vm.name
        );
    }
}

/// A VM's own files (`vm_<VMID>_ip.txt`, `vm_<VMID>_summary.txt`) are written when it settles,
/// as the original wait_for_vm.sh flow wrote them VM by VM, not only at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vms_files_are_written_when_it_settles() {
    let h = Harness::start("fast", 7, SCALE, settings(3, "pipelined")).await;
    let first = h.plan().await.vms[0].vmid;
    let read = |kind: &str| {
        std::fs::read_to_string(h.out.path().join(format!("vm_{first}_{kind}.txt"))).ok()
    };
    // VM 0's files as they were when the last VM was verified (VM 0 settled two staggers,
    // 6 s, before).
    let seen = std::sync::Mutex::new(None);
    let (summary, _) = h
        .run(false, |mut rx, tx| {
            let (seen, read) = (&seen, &read);
            async move {
                while let Some(e) = rx.recv().await {
                    if let Event::VmState {
                        vm: 2,
                        state:
                            VmState::Active {
                                phase: Phase::Verified,
                            },
                        ..
                    } = e
                    {
                        *seen.lock().unwrap() = Some((read("ip"), read("summary")));
                    }
                }
                drop(tx);
                Vec::new()
            }
        })
        .await;
    assert_eq!(states(&summary), ["verified"; 3], "{summary:#?}");
    let (ip, text) = seen.into_inner().unwrap().expect("VM 2 verified");
    let want = summary.vms[0].ip.clone().expect("ip");
    assert_eq!(ip, Some(format!("{want}\n")));
    assert!(text.is_some_and(|t| t.starts_with("Deployment summary for demo-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_keeps_the_original_scripts_order() {
    let h = Harness::start("fast", 3, SCALE, settings(5, "sequential")).await;
    let (summary, events) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 5]);
    for k in 1..5 {
        let prev_verified = first_state(&events, k - 1, is_phase(Phase::Verified)).unwrap();
        let checks_start = first_state(&events, k, is_phase(Phase::AwaitingAgent)).unwrap();
        assert!(
            checks_start > prev_verified,
            "VM {k} started its checks (event {checks_start}) before VM {} was verified (event {prev_verified})",
            k - 1
        );
    }
}

/// The VMs (k >= 1) whose checks started before VM k-1 was verified.
fn overlapping_checks(events: &[Event], vms: usize) -> Vec<usize> {
    (1..vms)
        .filter(|&k| {
            first_state(events, k, is_phase(Phase::AwaitingAgent)).expect("checks started")
                < first_state(events, k - 1, is_phase(Phase::Verified)).expect("verified")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_overlaps_checks_that_sequential_serialises() {
    // The same cluster, seed and settings in both modes: only the mode differs.
    const VMS: usize = 4;
    let pipelined = Harness::start("fast", 3, SCALE, settings(VMS, "pipelined")).await;
    let (summary, events) = pipelined.run_plain().await;
    assert_eq!(states(&summary), ["verified"; VMS]);
    assert!(
        !overlapping_checks(&events, VMS).is_empty(),
        "pipelined checks never overlapped"
    );
    let sequential = Harness::start("fast", 3, SCALE, settings(VMS, "sequential")).await;
    let (summary, events) = sequential.run_plain().await;
    assert_eq!(states(&summary), ["verified"; VMS]);
    assert_eq!(
        overlapping_checks(&events, VMS),
        Vec::<usize>::new(),
        "sequential checks overlapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_vms_fail_with_their_reasons_and_the_others_verify() {
    let mut s = settings(6, "pipelined");
    s.agent_timeout = "60s".into();
    s.ip_timeout = "60s".into();
    let h = Harness::start("stuck", 1, SCALE, s).await;
    let (summary, _) = h.run_plain().await;
    // Clones start in VM order, so the 3rd and 5th cloned are VMs 2 and 4.
    for (i, vm) in summary.vms.iter().enumerate() {
        match i {
            2 => {
                assert_eq!(vm.state, "failed");
                assert!(
                    vm.error
                        .as_deref()
                        .unwrap()
                        .contains("guest agent did not answer"),
                    "{vm:?}"
                );
            }
            4 => {
                assert_eq!(vm.state, "failed");
                assert!(
                    vm.error.as_deref().unwrap().contains("no usable IP"),
                    "{vm:?}"
                );
            }
            _ => assert_eq!(vm.state, "verified", "{vm:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_cluster_is_ridden_out() {
    let h = Harness::start("flaky", 11, SCALE, settings(5, "pipelined")).await;
    let (summary, _) = h.run_plain().await;
    assert_eq!(states(&summary), ["verified"; 5], "{summary:#?}");
    // Lost answers and failed clone tasks were retried, yet each name exists exactly once.
    let resources = h.client.cluster_resources(None).await.unwrap();
    for vm in &summary.vms {
        let same_name = resources
            .iter()
            .filter(|r| r.name.as_deref() == Some(vm.name.as_str()))
            .count();
        assert_eq!(same_name, 1, "{} exists once", vm.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_a_vm_and_resume_lets_it_finish() {
    let h = Harness::start("fast", 5, SCALE, settings(3, "pipelined")).await;
    let (summary, events) = h
        .run(false, |mut rx, tx| async move {
            let mut all = Vec::new();
            let mut paused_seen = false;
            let mut pause_sent = false;
            while let Some(e) = rx.recv().await {
                match &e {
                    Event::VmState {
                        vm: 0,
                        state:
                            VmState::Active {
                                phase: Phase::Cloning,
                            },
                        ..
                    } if !pause_sent => {
                        pause_sent = true;
                        tx.send(Command::Pause(0)).unwrap();
                    }
                    Event::VmState {
                        vm: 0,
                        state: VmState::Paused { .. },
                        ..
                    } => paused_seen = true,
                    // Resume VM 0 once the others are verified: it was held all that time.
                    Event::VmState {
                        vm: 2,
                        state:
                            VmState::Active {
                                phase: Phase::Verified,
                            },
                        ..
                    } => {
                        assert!(paused_seen, "VM 0 was never paused");
                        tx.send(Command::Resume(0)).unwrap();
                    }
                    _ => {}
                }
                all.push(e);
            }
            all
        })
        .await;
    assert_eq!(states(&summary), ["verified"; 3]);
    let paused = first_state(&events, 0, |s| matches!(s, VmState::Paused { .. })).unwrap();
    let others_done = first_state(&events, 2, is_phase(Phase::Verified)).unwrap();
    let vm0_done = first_state(&events, 0, is_phase(Phase::Verified)).unwrap();
    assert!(paused < others_done && others_done < vm0_done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_all_stops_new_work_until_resumed() {
    const VMS: usize = 3;
    /// How long the paused rollout is watched, in simulated seconds: several poll intervals
    /// and more than the 3 s deployment delay, so any work that went on would show.
    const WATCH_S: f64 = 60.0;
    let h = Harness::start("fast", 5, SCALE, settings(VMS, "pipelined")).await;
    let sim = &h.sim;
    let (summary, events) = h
        .run(false, |mut rx, tx| async move {
            let mut all = Vec::new();
            let mut pause_sent = false;
            let mut paused = [false; VMS];
            let mut resumed = false;
            while let Some(e) = rx.recv().await {
                match &e {
                    Event::VmState {
                        vm: 0,
                        state:
                            VmState::Active {
                                phase: Phase::Cloning,
                            },
                        ..
                    } if !pause_sent => {
                        pause_sent = true;
                        tx.send(Command::PauseAll).unwrap();
                    }
                    Event::VmState {
                        vm,
                        state: VmState::Paused { .. },
                        ..
                    } if !resumed => {
                        paused[*vm] = true;
                        if paused.iter().all(|p| *p) {
                            // Every VM holds at a step boundary: nothing may reach the
                            // simulator until the rollout is resumed.
                            let before = sim.stats();
                            tokio::time::sleep(Duration::from_secs_f64(WATCH_S * SCALE)).await;
                            let after = sim.stats();
                            assert!(
                                after.now - before.now >= WATCH_S,
                                "watched only {} simulated s",
                                after.now - before.now
                            );
                            assert_eq!(
                                after.requests_by_endpoint, before.requests_by_endpoint,
                                "requests reached the simulator while every VM was paused"
                            );
                            assert_eq!(after.clones_by_name, before.clones_by_name);
                            resumed = true;
                            tx.send(Command::ResumeAll).unwrap();
                        }
                    }
                    _ => {}
                }
                all.push(e);
            }
            assert!(resumed, "not every VM reported paused: {paused:?}");
            all
        })
        .await;
    assert_eq!(states(&summary), ["verified"; VMS]);
    // Each VM went on from where it held.
    for vm in 0..VMS {
        let held = first_state(&events, vm, |s| matches!(s, VmState::Paused { .. })).unwrap();
        let verified = first_state(&events, vm, is_phase(Phase::Verified)).unwrap();
        assert!(held < verified, "VM {vm}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_takes_a_vm_out_and_the_rest_go_on() {
    let mut s = settings(6, "pipelined");
    s.agent_timeout = "10m".into();
    let h = Harness::start("stuck", 1, SCALE, s).await;
    let (summary, _) = h
        .run(false, |mut rx, tx| async move {
            let mut all = Vec::new();
            while let Some(e) = rx.recv().await {
                // VM 2 (the 3rd clone) never gets an agent and VM 4 (the 5th) never gets an IP:
                // skip each once it waits for what will never come, as an operator would.
                if let Event::VmState {
                    vm: vm @ (2 | 4),
                    state:
                        VmState::Active {
                            phase: Phase::AwaitingAgent,
                        },
                    ..
                } = &e
                {
                    tx.send(Command::Skip(*vm)).unwrap();
                }
                all.push(e);
            }
            all
        })
        .await;
    let st = states(&summary);
    assert_eq!(st[2], "skipped");
    assert_eq!(st[4], "skipped");
    for i in [0, 1, 3, 5] {
        assert_eq!(st[i], "verified", "{:?}", summary.vms[i]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reruns_a_failed_vm_from_its_failed_phase_reusing_it() {
    // Agents answer 8 s after the OS is up, but the agent timeout is 3 s: the first attempt
    // fails in awaiting-agent. Retrying then (as an operator would) finds the agent up and
    // verifies the same VM: nothing is cloned again.
    let mut scenario = Scenario::builtin("fast").unwrap();
    scenario.timing.agent_s = Span::fixed(8.0);
    let mut s = settings(2, "pipelined");
    s.agent_timeout = "3s".into();
    let h = Harness::start_with(scenario, 2, SCALE, s).await;
    let (summary, events) = h
        .run(true, |mut rx, tx| async move {
            let mut all = Vec::new();
            let mut finishes = 0;
            while let Some(e) = rx.recv().await {
                if let Event::Finished { summary } = &e {
                    finishes += 1;
                    let failed: Vec<usize> = (0..summary.vms.len())
                        .filter(|&i| summary.vms[i].state == "failed")
                        .collect();
                    if failed.is_empty() || finishes > 4 {
                        // Closing the command channel ends a lingering engine.
                        drop(tx);
                        all.push(e);
                        while let Some(e) = rx.recv().await {
                            all.push(e);
                        }
                        return all;
                    }
                    for vm in failed {
                        tx.send(Command::Retry(vm)).unwrap();
                    }
                }
                all.push(e);
            }
            all
        })
        .await;
    let first_fail = first_state(&events, 0, |s| {
        matches!(
            s,
            VmState::Failed {
                phase: Phase::AwaitingAgent,
                ..
            }
        )
    });
    assert!(
        first_fail.is_some(),
        "the first attempt failed waiting for the agent"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Attempt { vm: 0, attempt: 2 }))
    );
    assert_eq!(states(&summary), ["verified"; 2], "{summary:#?}");
    assert!(summary.vms[0].attempts >= 2);
    let stats = h.sim.stats();
    for vm in &summary.vms {
        assert_eq!(
            stats.clones_by_name.get(&vm.name).copied(),
            Some(1),
            "{} reused, not cloned again",
            vm.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_new_work_and_still_writes_the_outputs() {
    let mut s = settings(6, "pipelined");
    s.deployment_delay = "30s".into();
    let h = Harness::start("fast", 4, SCALE, s).await;
    let (summary, _) = h
        .run(false, |mut rx, tx| async move {
            let mut all = Vec::new();
            while let Some(e) = rx.recv().await {
                if let Event::VmState {
                    vm: 1,
                    state:
                        VmState::Active {
                            phase: Phase::Cloning,
                        },
                    ..
                } = &e
                {
                    tx.send(Command::Abort).unwrap();
                }
                all.push(e);
            }
            all
        })
        .await;
    assert!(summary.rollout.aborted);
    // The last VMs never started cloning (the stagger held them when the abort came): each is
    // marked aborted, with the phase it was in.
    assert_eq!(summary.vms[5].state, "aborted");
    assert!(
        summary.vms[5]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("aborted in queued")),
        "{:?}",
        summary.vms[5]
    );
    let json = std::fs::read_to_string(h.out.path().join("summary.json")).unwrap();
    assert!(json.contains("\"aborted\": true"), "{json}");
}
