use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use tokio::sync::mpsc::unbounded_channel;

use super::*;
use crate::report::{PhaseTimes, RolloutInfo, SCHEMA_VERSION, VmSummary};

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn state(vm: usize, phase: Phase) -> Event {
    Event::VmState {
        vm,
        state: VmState::Active { phase },
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

fn progress(
    total: usize,
    verified: usize,
    failed: usize,
    in_flight: usize,
    requests: u64,
) -> Event {
    Event::Progress(Progress {
        total,
        queued: total - verified - failed - in_flight,
        in_flight,
        verified,
        failed,
        skipped: 0,
        paused: 0,
        aborted: 0,
        requests,
        eta_s: None,
    })
}

fn summary(aborted: bool, second_state: &str) -> Summary {
    let phases = |list: &[(&str, &str, &str)]| -> IndexMap<String, PhaseTimes> {
        list.iter()
            .map(|(name, s, f)| {
                (
                    name.to_string(),
                    PhaseTimes {
                        started: Some(at(s)),
                        finished: Some(at(f)),
                    },
                )
            })
            .collect()
    };
    Summary {
        schema_version: SCHEMA_VERSION,
        on_finished: None,
        rollout: RolloutInfo {
            id: "web".into(),
            proxmox_url: "https://pve1.example.org:8006".into(),
            template: "ubuntu".into(),
            mode: "pipelined".into(),
            vm_count: 2,
            deployment_delay: "30s".into(),
            nodes: vec!["pve1".into()],
            started: at("2026-11-25T17:00:00Z"),
            finished: Some(at("2026-11-25T17:16:00Z")),
            aborted,
        },
        vms: vec![
            VmSummary {
                name: "web-1".into(),
                vmid: 101,
                node: "pve1".into(),
                state: "verified".into(),
                ip: Some("10.0.0.11".into()),
                ip_candidates: vec!["10.0.0.11".into(), "172.17.0.1".into()],
                uname: None,
                os: None,
                attempts: 1,
                error: None,
                phases: phases(&[("cloning", "2026-11-25T17:00:00Z", "2026-11-25T17:02:03Z")]),
                checks: Vec::new(),
                hook: None,
                nics: Vec::new(),
                pool: None,
                tags: Vec::new(),
            },
            VmSummary {
                name: "web-2".into(),
                vmid: 102,
                node: "pve1".into(),
                state: second_state.into(),
                ip: None,
                ip_candidates: vec![],
                uname: None,
                os: None,
                attempts: 2,
                error: Some("agent did not answer within 15m".into()),
                phases: phases(&[("cloning", "2026-11-25T17:00:30Z", "2026-11-25T17:01:00Z")]),
                checks: Vec::new(),
                hook: None,
                nics: Vec::new(),
                pool: None,
                tags: Vec::new(),
            },
        ],
    }
}

/// A whole small rollout as the engine would report it: one VM verifies, one fails.
fn recorded() -> Vec<Event> {
    vec![
        Event::Planned {
            rollout: "web".into(),
            cluster: "pve1.example.org".into(),
            vms: vec![
                PlannedVm {
                    index: 0,
                    name: "web-1".into(),
                    vmid: 101,
                    node: "pve1".into(),
                    ..Default::default()
                },
                PlannedVm {
                    index: 1,
                    name: "web-2".into(),
                    vmid: 102,
                    node: "pve1".into(),
                    ..Default::default()
                },
            ],
        },
        state(0, Phase::Cloning),
        progress(2, 0, 0, 1, 3),
        Event::Log {
            vm: Some(0),
            level: Level::Info,
            text: "clone task started".into(),
        },
        Event::TaskLog {
            vm: 0,
            lines: vec!["create full clone of drive scsi0".into()],
        },
        state(1, Phase::Cloning),
        state(0, Phase::Configuring),
        state(0, Phase::Booting),
        state(0, Phase::AwaitingAgent),
        Event::Log {
            vm: Some(0),
            level: Level::Warning,
            text: "QEMU guest agent is not running; waiting".into(),
        },
        Event::VmIp {
            vm: 0,
            ip: "10.0.0.11".into(),
            candidates: vec!["10.0.0.11".into(), "172.17.0.1".into()],
        },
        state(0, Phase::IpFound),
        Event::Log {
            vm: Some(0),
            level: Level::Info,
            text: "IP 10.0.0.11 (other candidates: 172.17.0.1)".into(),
        },
        state(0, Phase::Verifying),
        Event::VmGuest {
            vm: 0,
            uname: Some("Linux web-1 6.8.0-45-generic x86_64 GNU/Linux\n".into()),
            os: Some("Ubuntu 24.04.1 LTS".into()),
        },
        Event::Log {
            vm: Some(0),
            level: Level::Success,
            text: "verified: IP 10.0.0.11, 3/3 pings, guest-exec works".into(),
        },
        state(0, Phase::Verified),
        progress(2, 1, 0, 1, 40),
        Event::Attempt { vm: 1, attempt: 2 },
        Event::VmState {
            vm: 1,
            state: VmState::Failed {
                phase: Phase::AwaitingAgent,
                reason: "agent did not answer within 15m\n".into(),
            },
            at: SystemTime::UNIX_EPOCH,
        },
        Event::Log {
            vm: Some(1),
            level: Level::Error,
            text: "failed in awaiting-agent: agent did not answer within 15m".into(),
        },
        progress(2, 1, 1, 0, 77),
        Event::Log {
            vm: None,
            level: Level::Error,
            text: "1 VM failed".into(),
        },
        Event::Exported {
            paths: vec![
                PathBuf::from("rollout-out/summary.json"),
                PathBuf::from("rollout-out/inventory.ini"),
            ],
        },
        Event::Finished {
            summary: Box::new(summary(false, "failed")),
        },
    ]
}

const EXPECTED_PLAIN: &str = "\
[INFO] rollout web on pve1.example.org: 2 VMs
[INFO] web-1 (101): planned on pve1
[INFO] web-2 (102): planned on pve1
[INFO] web-1 (101): cloning
[INFO] web-1 (101): clone task started
[INFO] web-2 (102): cloning
[INFO] web-1 (101): configuring
[INFO] web-1 (101): booting
[INFO] web-1 (101): awaiting-agent
[WARNING] web-1 (101): QEMU guest agent is not running; waiting
[INFO] web-1 (101): IP-found
[INFO] web-1 (101): IP 10.0.0.11 (other candidates: 172.17.0.1)
[INFO] web-1 (101): verifying
[INFO] web-1 (101): guest: Ubuntu 24.04.1 LTS; Linux web-1 6.8.0-45-generic x86_64 GNU/Linux
[SUCCESS] web-1 (101): verified: IP 10.0.0.11, 3/3 pings, guest-exec works
[INFO] progress: 1/2 verified, 0 failed, 0 skipped, 1 in flight, 0 queued, 0 paused; 40 API requests
[INFO] web-2 (102): retrying (attempt 2)
[ERROR] web-2 (102): failed in awaiting-agent: agent did not answer within 15m
[INFO] progress: 1/2 verified, 1 failed, 0 skipped, 0 in flight, 0 queued, 0 paused; 77 API requests
[ERROR] 1 VM failed
[ERROR] rollout finished: 1 verified, 1 failed, 0 skipped of 2
NAME   VMID  NODE  STATE     IP         ATTEMPTS  TIME
web-1  101   pve1  verified  10.0.0.11  1         2m03s
web-2  102   pve1  failed    -          2         30.0s
Outputs:
  rollout-out/summary.json
  rollout-out/inventory.ini
";

fn print_all(events: &[Event], color: bool) -> String {
    let mut printer = Printer::new(Vec::new(), color);
    for event in events {
        printer.event(event);
    }
    String::from_utf8(printer.into_inner()).unwrap()
}

#[test]
fn a_recorded_rollout_prints_the_seeds_lines_and_a_final_table() {
    assert_eq!(print_all(&recorded(), false), EXPECTED_PLAIN);
}

#[test]
fn colour_marks_the_tags_and_states_only() {
    let text = print_all(&recorded(), true);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "\x1b[34m[INFO]\x1b[0m rollout web on pve1.example.org: 2 VMs"
    );
    assert!(lines.contains(
        &"\x1b[33m[WARNING]\x1b[0m web-1 (101): QEMU guest agent is not running; waiting"
    ));
    assert!(lines.contains(
        &"\x1b[32m[SUCCESS]\x1b[0m web-1 (101): verified: IP 10.0.0.11, 3/3 pings, guest-exec works"
    ));
    assert!(lines.contains(&"\x1b[31m[ERROR]\x1b[0m web-2 (102): failed in awaiting-agent: agent did not answer within 15m"));
    assert!(
        lines.contains(&"\x1b[1mNAME   VMID  NODE  STATE     IP         ATTEMPTS  TIME\x1b[0m")
    );
    // Columns stay aligned: escape codes go around the padded text.
    assert!(
        lines.contains(&"web-1  101   pve1  \x1b[32mverified\x1b[0m  10.0.0.11  1         2m03s")
    );
    assert!(
        lines.contains(&"web-2  102   pve1  \x1b[31mfailed\x1b[0m    -          2         30.0s")
    );
    // Without the escape codes it is the plain output.
    let stripped = text
        .replace("\x1b[34m", "")
        .replace("\x1b[32m", "")
        .replace("\x1b[33m", "")
        .replace("\x1b[31m", "")
        .replace("\x1b[1m", "")
        .replace("\x1b[0m", "");
    assert_eq!(stripped, EXPECTED_PLAIN);
    assert!(!print_all(&recorded(), false).contains('\x1b'));
}

#[test]
fn progress_prints_on_settles_and_every_tenth_event() {
    let mut events = vec![];
    for i in 0..25u64 {
        events.push(progress(4, 0, 0, 2, i));
    }
    events.push(progress(4, 1, 0, 1, 30));
    events.push(progress(4, 1, 0, 1, 31));
    let text = print_all(&events, false);
    let requests: Vec<&str> = text
        .lines()
        .map(|l| l.rsplit("; ").next().unwrap())
        .collect();
    // Events 10 and 20 (requests 9 and 19), then the settle (30); 31 is quiet.
    assert_eq!(
        requests,
        ["9 API requests", "19 API requests", "30 API requests"]
    );
}

#[test]
fn paused_skipped_and_unknown_vms() {
    let events = [
        Event::VmState {
            vm: 7,
            state: VmState::Paused {
                phase: Phase::Booting,
            },
            at: SystemTime::UNIX_EPOCH,
        },
        Event::VmState {
            vm: 7,
            state: VmState::Skipped {
                phase: Phase::Booting,
            },
            at: SystemTime::UNIX_EPOCH,
        },
        Event::VmGuest {
            vm: 7,
            uname: None,
            os: None,
        },
    ];
    assert_eq!(
        print_all(&events, false),
        "[WARNING] vm #7: paused (in booting)\n"
    );
}

#[test]
fn aborted_and_all_verified_endings() {
    let text = print_all(
        &[Event::Finished {
            summary: Box::new(summary(true, "skipped")),
        }],
        false,
    );
    assert!(
        text.starts_with("[WARNING] rollout aborted: 1 verified, 0 failed, 1 skipped of 2\n"),
        "{text}"
    );
    let text = print_all(
        &[Event::Finished {
            summary: Box::new(summary(false, "verified")),
        }],
        false,
    );
    assert!(
        text.starts_with("[SUCCESS] rollout finished: 2 verified, 0 failed, 0 skipped of 2\n"),
        "{text}"
    );
    assert!(!text.contains("Outputs:"));
}

#[test]
fn exit_codes_follow_the_summary() {
    assert_eq!(exit_code(&summary(false, "verified")), 0);
    assert_eq!(exit_code(&summary(false, "failed")), 1);
    assert_eq!(exit_code(&summary(false, "skipped")), 1);
    assert_eq!(exit_code(&summary(true, "aborted")), EXIT_ABORTED);
    assert_eq!(
        exit_code(&summary(true, "verified")),
        0,
        "aborted after the last VM verified"
    );
}

#[test]
fn no_color_and_clicolor_force() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(color_enabled_with(true, env(&[])));
    assert!(!color_enabled_with(false, env(&[])));
    assert!(!color_enabled_with(true, env(&[("NO_COLOR", "1")])));
    assert!(
        !color_enabled_with(true, env(&[("NO_COLOR", "false")])),
        "any non-empty value"
    );
    assert!(
        color_enabled_with(true, env(&[("NO_COLOR", "")])),
        "empty means unset"
    );
    assert!(color_enabled_with(false, env(&[("CLICOLOR_FORCE", "1")])));
    assert!(!color_enabled_with(false, env(&[("CLICOLOR_FORCE", "0")])));
    assert!(!color_enabled_with(
        false,
        env(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")])
    ));
    assert!(!color_enabled_with(true, env(&[("TERM", "dumb")])));
}

#[tokio::test]
async fn run_prints_everything_and_returns_the_exit_code() {
    let (event_tx, event_rx) = unbounded_channel();
    let (command_tx, _command_rx) = unbounded_channel();
    let (_interrupt_tx, interrupt_rx) = unbounded_channel();
    for event in recorded() {
        event_tx.send(event).unwrap();
    }
    let mut out = Vec::new();
    let outcome = run_with_interrupts(event_rx, command_tx, &mut out, false, interrupt_rx).await;
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(outcome.summary, Some(summary(false, "failed")));
    assert!(!outcome.aborted && !outcome.forced);
    assert_eq!(String::from_utf8(out).unwrap(), EXPECTED_PLAIN);
}

#[tokio::test]
async fn first_ctrl_c_aborts_gracefully() {
    let (event_tx, event_rx) = unbounded_channel();
    let (command_tx, mut command_rx) = unbounded_channel();
    let (interrupt_tx, interrupt_rx) = unbounded_channel();
    event_tx.send(state(0, Phase::Cloning)).unwrap();
    interrupt_tx.send(Interrupt::CtrlC).unwrap();
    // The "engine": on Abort, finish in-flight work and report an aborted summary.
    let engine = tokio::spawn(async move {
        assert_eq!(command_rx.recv().await, Some(Command::Abort));
        event_tx
            .send(Event::Finished {
                summary: Box::new(summary(true, "skipped")),
            })
            .unwrap();
        command_rx
    });
    let mut out = Vec::new();
    let outcome = run_with_interrupts(event_rx, command_tx, &mut out, false, interrupt_rx).await;
    assert_eq!(outcome.exit_code, EXIT_ABORTED);
    assert!(outcome.aborted && !outcome.forced);
    assert_eq!(outcome.summary.map(|s| s.rollout.aborted), Some(true));
    let mut command_rx = engine.await.unwrap();
    assert!(command_rx.try_recv().is_err(), "Abort is sent once");
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "[INFO] vm #0: cloning");
    assert_eq!(
        lines[1],
        "[WARNING] aborting: no new work starts, calls in flight finish, then the outputs are \
         written. Press Ctrl-C again to stop now."
    );
    assert!(lines[2].starts_with("[WARNING] rollout aborted"), "{text}");
}

#[tokio::test]
async fn second_ctrl_c_stops_at_once() {
    let (_event_tx, event_rx) = unbounded_channel::<Event>();
    let (command_tx, mut command_rx) = unbounded_channel();
    let (interrupt_tx, interrupt_rx) = unbounded_channel();
    interrupt_tx.send(Interrupt::CtrlC).unwrap();
    interrupt_tx.send(Interrupt::CtrlC).unwrap();
    let mut out = Vec::new();
    let outcome = run_with_interrupts(event_rx, command_tx, &mut out, false, interrupt_rx).await;
    assert_eq!(outcome.exit_code, EXIT_FORCED);
    assert!(outcome.aborted && outcome.forced);
    assert_eq!(outcome.summary, None);
    assert_eq!(command_rx.try_recv(), Ok(Command::Abort));
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("[ERROR] stopped at once; outputs may be incomplete\n"),
        "{text}"
    );
}

#[tokio::test]
async fn an_engine_that_vanishes_is_an_error() {
    let (event_tx, event_rx) = unbounded_channel::<Event>();
    let (command_tx, _command_rx) = unbounded_channel();
    let (_interrupt_tx, interrupt_rx) = unbounded_channel::<Interrupt>();
    drop(event_tx);
    let mut out = Vec::new();
    let outcome = run_with_interrupts(event_rx, command_tx, &mut out, false, interrupt_rx).await;
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[ERROR] the engine stopped without a summary\n"
    );
}
