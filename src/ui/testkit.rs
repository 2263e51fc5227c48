//! Fixtures for the UI tests: a fixed clock, events, keys, and a mid-rollout model built by
//! feeding real events through `update`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use indexmap::IndexMap;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::engine::event::{Event, Level, Phase, PlannedVm, Progress, VmState};
use crate::report::{RolloutInfo, Summary, VmSummary};

use super::model::Model;
use super::theme::Theme;
use super::update::{Msg, UpdateResult, update};
use super::view;

/// A fixed instant: `secs` after the fixture's rollout start.
pub fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

pub fn active(phase: Phase) -> VmState {
    VmState::Active { phase }
}

pub fn key(c: char) -> Msg {
    let modifiers = if c.is_ascii_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    Msg::Key(KeyEvent::new(KeyCode::Char(c), modifiers))
}

pub fn code(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub fn mouse(kind: MouseEventKind, column: u16, row: u16) -> Msg {
    Msg::Mouse(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

pub fn click(column: u16, row: u16) -> Msg {
    mouse(MouseEventKind::Down(MouseButton::Left), column, row)
}

pub fn plan(n: usize) -> Event {
    Event::Planned {
        rollout: "ubuntu-opentofu".into(),
        cluster: "pve-lab".into(),
        vms: (0..n)
            .map(|i| PlannedVm {
                index: i,
                name: format!("ubuntu-opentofu-{}", i + 1),
                vmid: 101 + i as u32,
                node: format!("pve{}", i % 3 + 1),
                ..Default::default()
            })
            .collect(),
    }
}

pub fn state(vm: usize, state: VmState, secs: u64) -> Event {
    Event::VmState {
        vm,
        state,
        at: t(secs),
    }
}

pub fn log(vm: Option<usize>, level: Level, text: &str) -> Event {
    Event::Log {
        vm,
        level,
        text: text.into(),
    }
}

pub fn summary(states: &[&str]) -> Box<Summary> {
    Box::new(Summary {
        schema_version: crate::report::SCHEMA_VERSION,
        on_finished: None,
        rollout: RolloutInfo {
            id: "r1".into(),
            proxmox_url: "https://127.0.0.1:8006".into(),
            template: "ubuntu".into(),
            mode: "pipelined".into(),
            vm_count: states.len(),
            deployment_delay: "30s".into(),
            nodes: vec!["pve1".into()],
            started: jiff::Timestamp::UNIX_EPOCH,
            finished: None,
            aborted: false,
        },
        vms: states
            .iter()
            .enumerate()
            .map(|(i, s)| VmSummary {
                name: format!("ubuntu-opentofu-{}", i + 1),
                vmid: 101 + i as u32,
                node: "pve1".into(),
                state: (*s).into(),
                ip: None,
                ip_candidates: vec![],
                uname: None,
                os: None,
                attempts: 1,
                error: None,
                phases: IndexMap::new(),
                checks: Vec::new(),
                hook: None,
                nics: Vec::new(),
                pool: None,
                tags: Vec::new(),
            })
            .collect(),
    })
}

/// A model at `t(0)`, 140x45, with `n` planned VMs.
pub fn model(n: usize) -> Model {
    let mut m = Model::new("pve-rollout", t(0));
    m.size = (140, 45);
    update(&mut m, Msg::Engine(plan(n)));
    m
}

/// Apply `msg` with the clock at `t(secs)`.
pub fn at(m: &mut Model, secs: u64, msg: Msg) -> UpdateResult {
    m.now = t(secs);
    update(m, msg)
}

pub fn ev(m: &mut Model, secs: u64, event: Event) -> UpdateResult {
    at(m, secs, Msg::Engine(event))
}

/// Walk VM `vm` through the phases, entering each at the given second.
pub fn walk(m: &mut Model, vm: usize, steps: &[(Phase, u64)]) {
    for (phase, secs) in steps {
        ev(m, *secs, state(vm, active(*phase), *secs));
    }
}

/// `(second, event)` for VM `vm` entering each phase at its second.
fn steps(script: &mut Vec<(u64, Event)>, vm: usize, steps: &[(Phase, u64)]) {
    for (phase, secs) in steps {
        script.push((*secs, state(vm, active(*phase), *secs)));
    }
}

/// Ten VMs 192 s into a rollout: two verified, one in each busy phase, a retried VM (selected,
/// with a rich detail pane), one paused, one failed, one skipped, one queued. Events are applied
/// in time order, with the clock at each event's second.
pub fn mid_rollout() -> Model {
    use Phase::*;
    let mut m = model(10);
    let full = |start: u64| {
        [
            (Cloning, start),
            (Configuring, start + 38),
            (Booting, start + 42),
            (AwaitingAgent, start + 56),
            (IpFound, start + 73),
            (Verifying, start + 76),
        ]
    };
    let verified = "verified: agent up, 3/3 pings, qemu-guest-agent active";
    let lock = "can't lock file '/var/lock/qemu-server/lock-104.conf' - got timeout";
    let mut s: Vec<(u64, Event)> = vec![(
        0,
        log(
            None,
            Level::Info,
            "plan: 10 VMs on pve1, pve2, pve3 from template 'ubuntu' (9000), pipelined checks",
        ),
    )];
    steps(&mut s, 0, &full(2));
    steps(&mut s, 0, &[(Verified, 120)]);
    s.push((
        2,
        log(
            Some(0),
            Level::Info,
            "clone started: UPID:pve1:0001A2B3:0C4D5E6F:67A1B2C3:qmclone:9000:root@pam!rollout:",
        ),
    ));
    s.push((120, log(Some(0), Level::Success, verified)));
    steps(&mut s, 1, &full(32));
    steps(&mut s, 1, &[(Verified, 160)]);
    s.push((160, log(Some(1), Level::Success, verified)));
    steps(&mut s, 2, &full(62)[..5]);
    steps(&mut s, 2, &[(Verifying, 152)]);
    for (vm, ip, at) in [
        (0, "10.20.0.11", 75u64),
        (1, "10.20.0.12", 105),
        (2, "10.20.0.13", 135),
    ] {
        let host = &ip[ip.len() - 2..];
        s.push((
            at,
            Event::VmIp {
                vm,
                ip: ip.into(),
                candidates: vec![ip.into(), format!("fe80::be24:11ff:fe00:1{host}")],
            },
        ));
        s.push((
            at,
            log(
                Some(vm),
                Level::Info,
                &format!("IP {ip} found (2 candidates)"),
            ),
        ));
    }
    s.push((
        118,
        Event::VmGuest {
            vm: 0,
            uname: Some(
                "Linux ubuntu-opentofu-1 6.8.0-51-generic #52-Ubuntu SMP x86_64 GNU/Linux".into(),
            ),
            os: Some("Ubuntu 24.04.1 LTS".into()),
        },
    ));
    // VM 4 (index 3): a clone failed on a lock timeout, the operator retried, it waits for its agent
    steps(&mut s, 3, &[(Cloning, 92)]);
    s.push((
        110,
        log(
            Some(3),
            Level::Warning,
            &format!("clone: {lock} (retrying in 4s)"),
        ),
    ));
    let reason = format!("clone failed after 3 tries: {lock}");
    s.push((
        120,
        state(
            3,
            VmState::Failed {
                phase: Cloning,
                reason: reason.clone(),
            },
            120,
        ),
    ));
    s.push((120, log(Some(3), Level::Error, &reason)));
    s.push((125, Event::Attempt { vm: 3, attempt: 2 }));
    s.push((
        125,
        log(
            Some(3),
            Level::Info,
            "retry requested: attempt 2 from cloning",
        ),
    ));
    steps(
        &mut s,
        3,
        &[
            (Cloning, 125),
            (Configuring, 140),
            (Booting, 146),
            (AwaitingAgent, 160),
        ],
    );
    s.push((
        171,
        log(
            Some(3),
            Level::Info,
            "agent not ready yet: QEMU guest agent is not running",
        ),
    ));
    s.push((
        146,
        Event::TaskLog {
            vm: 3,
            lines: vec![
                "generating cloud-init ISO".into(),
                "swtpm_setup: Not overwriting existing state file.".into(),
                "TASK OK".into(),
            ],
        },
    ));
    steps(
        &mut s,
        4,
        &[(Cloning, 122), (Configuring, 158), (Booting, 163)],
    );
    steps(&mut s, 5, &[(Cloning, 152)]);
    steps(&mut s, 6, &[(Cloning, 182)]);
    s.push((185, state(6, VmState::Paused { phase: Cloning }, 185)));
    s.push((185, log(Some(6), Level::Info, "paused by the operator")));
    steps(&mut s, 7, &[(Cloning, 186)]);
    let full_disk = "storage 'ssd' has not enough free space";
    s.push((
        188,
        state(
            7,
            VmState::Failed {
                phase: Cloning,
                reason: full_disk.into(),
            },
            188,
        ),
    ));
    s.push((
        188,
        log(Some(7), Level::Error, &format!("clone failed: {full_disk}")),
    ));
    s.push((189, state(8, VmState::Skipped { phase: Queued }, 189)));
    s.push((189, log(Some(8), Level::Warning, "skipped by the operator")));
    s.push((
        190,
        Event::Progress(Progress {
            total: 10,
            requests: 412,
            ..Progress::default()
        }),
    ));
    s.sort_by_key(|(secs, _)| *secs);
    for (secs, event) in s {
        ev(&mut m, secs, event);
    }
    m.now = t(192);
    m.select(3);
    m.flash = None;
    m
}

/// Draw the whole screen at `w`x`h`.
pub fn render(m: &Model, theme: &Theme, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    terminal
        .draw(|frame| view::draw(frame, m, theme, &tui_logger::TuiWidgetState::new()))
        .expect("draw");
    terminal
}

/// Draw only `panel` into a `w`x`h` buffer.
pub fn render_panel(
    w: u16,
    h: u16,
    panel: impl FnOnce(&mut ratatui::Frame<'_>, ratatui::layout::Rect),
) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    terminal
        .draw(|frame| panel(frame, frame.area()))
        .expect("draw");
    terminal
}

/// Exported paths for tests.
pub fn paths() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/tmp/out/summary.json"),
        PathBuf::from("/tmp/out/summary.md"),
    ]
}

/// The text of row `y` of a test terminal.
pub fn row_text(terminal: &Terminal<TestBackend>, y: u16) -> String {
    let buf = terminal.backend().buffer();
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol())
        .collect::<String>()
}

/// Position of the first cell at which `needle` starts, scanning rows top to bottom.
pub fn find(terminal: &Terminal<TestBackend>, needle: &str) -> Option<(u16, u16)> {
    let buf = terminal.backend().buffer();
    let first = needle.chars().next()?;
    let len = needle.chars().count() as u16;
    for y in 0..buf.area.height {
        for x in 0..buf.area.width.saturating_sub(len - 1) {
            if buf[(x, y)].symbol().starts_with(first)
                && (0..len)
                    .map(|i| buf[(x + i, y)].symbol())
                    .collect::<String>()
                    == needle
            {
                return Some((x, y));
            }
        }
    }
    None
}
