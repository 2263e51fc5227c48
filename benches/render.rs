//! Frame time of the dashboard as a user gets it: a burst of 1,000 engine events through
//! `update()`, then one frame drawn by the dashboard's own `ui::draw` through the real crossterm
//! backend into a sink (build + render + diff + the escape sequences), 120x40, at 50 and 1000 VMs
//! with a full log buffer (10 000 lines).
//! `cargo bench --bench render`: prints `frame_us_50=` and `frame_us_1000=` (medians of update
//! burst + draw, grid view), the two parts apart (`update_burst_us_*`, `draw_us_*`), and the
//! other views' figures on stderr.

use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pve_rollout::engine::event::{Event, Level, Phase, PlannedVm, VmState};
use pve_rollout::ui::model::Model;
use pve_rollout::ui::theme::Theme;
use pve_rollout::ui::update::{Msg, update};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};

const FRAMES: usize = 400;
/// Engine events applied before each frame.
const BURST: usize = 1000;

fn main() {
    for (vms, mode) in [
        (50, "grid"),
        (1000, "grid"),
        (1000, "timeline"),
        (1000, "search"),
    ] {
        let (mut model, start) = fleet(vms);
        match mode {
            "timeline" => {
                update(&mut model, key('t'));
            }
            "search" => {
                for c in "/agent ping".chars() {
                    update(&mut model, key(c));
                }
                update(
                    &mut model,
                    Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
                );
                update(&mut model, key('N'));
            }
            _ => {}
        }
        let theme = Theme::new(false);
        // The diagnostics pane is closed, as it is by default.
        let diagnostics = tui_logger::TuiWidgetState::new();
        // A fixed 120x40 viewport: the backend never asks a terminal for its size.
        let mut terminal = Terminal::with_options(
            CrosstermBackend::new(std::io::sink()),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, 120, 40)),
            },
        )
        .expect("backend");
        pve_rollout::ui::draw(&mut terminal, &model, &theme, &diagnostics).expect("draw");
        let (mut frames, mut updates, mut draws) = (
            Vec::with_capacity(FRAMES),
            Vec::with_capacity(FRAMES),
            Vec::with_capacity(FRAMES),
        );
        for i in 0..FRAMES {
            model.now = start + Duration::from_millis(600_000 + i as u64 * 100);
            // Made beforehand: making events is the engine's work, not the dashboard's.
            let burst: Vec<Event> = (0..BURST).map(|j| step(i * BURST + j, vms)).collect();
            let t = Instant::now();
            for event in burst {
                update(&mut model, Msg::Engine(event));
            }
            let updated = t.elapsed();
            let d = Instant::now();
            pve_rollout::ui::draw(&mut terminal, &model, &theme, &diagnostics).expect("draw");
            draws.push(d.elapsed());
            updates.push(updated);
            frames.push(t.elapsed());
        }
        let pick = |times: &mut Vec<Duration>, q: f64| {
            times.sort();
            times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6
        };
        eprintln!(
            "# {vms:>5} VMs, {mode:<8} 120x40, 10k log lines, {BURST} events + draw: median {:.0} µs, p95 {:.0} µs, p99 {:.0} µs, max {:.0} µs (update {:.0} µs, draw {:.0} µs)",
            pick(&mut frames, 0.5),
            pick(&mut frames, 0.95),
            pick(&mut frames, 0.99),
            pick(&mut frames, 1.0),
            pick(&mut updates, 0.5),
            pick(&mut draws, 0.5),
        );
        if mode == "grid" {
            println!("frame_us_{vms}={:.0}", pick(&mut frames, 0.5));
            println!("update_burst_us_{vms}={:.0}", pick(&mut updates, 0.5));
            println!("draw_us_{vms}={:.0}", pick(&mut draws, 0.5));
        }
    }
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// `vms` VMs spread over the phases, 10 000 log lines.
fn fleet(vms: usize) -> (Model, SystemTime) {
    let start = SystemTime::now();
    let mut m = Model::new("pve-rollout", start);
    m.size = (120, 40);
    let plan = (0..vms)
        .map(|i| PlannedVm {
            index: i,
            name: format!("ubuntu-opentofu-{}", i + 1),
            vmid: 100 + i as u32,
            node: format!("pve{}", i % 8 + 1),
            ..Default::default()
        })
        .collect();
    update(
        &mut m,
        Msg::Engine(Event::Planned {
            rollout: "bench".into(),
            cluster: "sim".into(),
            vms: plan,
        }),
    );
    for i in 0..vms {
        let phase = Phase::ALL[i % Phase::ALL.len()];
        let at = start + Duration::from_secs(i as u64);
        update(
            &mut m,
            Msg::Engine(Event::VmState {
                vm: i,
                state: VmState::Active { phase },
                at,
            }),
        );
        if phase >= Phase::IpFound {
            update(
                &mut m,
                Msg::Engine(Event::VmIp {
                    vm: i,
                    ip: format!("10.20.{}.{}", i / 250, i % 250),
                    candidates: vec![],
                }),
            );
        }
    }
    for n in 0..10_000 {
        update(&mut m, Msg::Engine(log_line(n, vms)));
    }
    update(&mut m, Msg::Resize(120, 40));
    m.select(vms / 2);
    (m, start)
}

fn log_line(n: usize, vms: usize) -> Event {
    let level = [Level::Info, Level::Success, Level::Warning, Level::Error][n % 4];
    Event::Log {
        vm: Some(n % vms),
        level,
        text: format!("line {n}: agent ping 1/3 ok, waiting for the stabilisation period"),
    }
}

/// Alternate a state change and a log line.
fn step(i: usize, vms: usize) -> Event {
    if i.is_multiple_of(2) {
        let phase = Phase::ALL[(i / 2) % Phase::ALL.len()];
        Event::VmState {
            vm: (i * 7) % vms,
            state: VmState::Active { phase },
            at: SystemTime::now(),
        }
    } else {
        log_line(i, vms)
    }
}
