//! Drawing: one module per panel, each a function of `(&Model, &Theme)` into a `Rect`. Nothing here
//! reads a clock or changes the model; the diagnostics pane also gets tui-logger's widget state,
//! which the run loop owns.

pub mod confirm;
pub mod detail;
pub mod diagnostics;
pub mod footer;
pub mod grid;
pub mod header;
pub mod help;
pub mod logs;
pub mod timeline;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use tui_logger::TuiWidgetState;

use super::layout::{self, MIN_HEIGHT, MIN_WIDTH, ViewMode};
use super::model::{Model, Overlay};
use super::theme::Theme;

/// The whole screen; `diagnostics` is the diagnostics pane's widget state.
pub fn draw(frame: &mut Frame<'_>, m: &Model, theme: &Theme, diagnostics: &TuiWidgetState) {
    let area = frame.area();
    let Some(areas) = layout::compute(area.width, area.height, m.view) else {
        too_small(frame, area, theme);
        return;
    };
    header::draw(frame, areas.header, m, theme);
    footer::draw(frame, areas.footer, m, theme);
    if m.overlay == Overlay::Diagnostics {
        diagnostics::draw(frame, areas.body, m, theme, diagnostics);
        return;
    }
    match m.view {
        ViewMode::Grid => {
            grid::draw(frame, areas.list, m, theme);
            detail::draw(frame, areas.detail, m, theme);
        }
        ViewMode::Timeline => timeline::draw(frame, areas.list, m, theme),
    }
    logs::draw_all(frame, areas.logs_all, m, theme);
    logs::draw_selected(frame, areas.logs_vm, m, theme);
    match m.overlay {
        Overlay::Help => help::draw(frame, area, m, theme),
        Overlay::ConfirmQuit { abort_focused } => {
            confirm::draw(frame, area, m, theme, abort_focused)
        }
        Overlay::ConfirmVm { action, vm } => confirm::draw_vm(frame, area, m, theme, action, vm),
        Overlay::None | Overlay::SearchInput | Overlay::Diagnostics => {}
    }
}

/// A bordered panel with a title.
pub fn panel<'a>(title: impl Into<Line<'a>>, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .border_style(theme.border())
        .title(title)
        .title_style(theme.title())
}

fn too_small(frame: &mut Frame<'_>, area: Rect, theme: &Theme) {
    let text = vec![
        Line::from(Span::styled("Terminal too small", theme.title())),
        Line::from(format!(
            "{}x{}: need at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from(Span::styled("enlarge it, or q to quit", theme.dim())),
    ];
    let height = (text.len() as u16).min(area.height);
    let y = area.y + (area.height - height) / 2;
    frame.render_widget(
        Paragraph::new(text).centered().wrap(Wrap { trim: true }),
        Rect::new(area.x, y, area.width, height),
    );
}

#[cfg(test)]
mod tests {
    use ratatui::style::Color;

    use super::*;
    use crate::engine::event::Phase;
    use crate::ui::state::StateKind;
    use crate::ui::testkit::{self, key, mid_rollout, render};
    use crate::ui::update::update;

    /// A copy's percentage and ETA in the grid, the IP wait with what the agent reports in the
    /// detail, the rollout's ETA and the request count in the header; a `Progress` without a
    /// state change still updates the count.
    #[test]
    fn whole_screen_copy_progress_and_ip_wait_120x24() {
        use crate::engine::event::{Event, Progress};
        use crate::ui::testkit::{ev, model, walk};
        let mut m = model(3);
        m.size = (120, 24);
        walk(&mut m, 0, &[(Phase::Cloning, 2)]);
        walk(
            &mut m,
            1,
            &[
                (Phase::Cloning, 1),
                (Phase::Booting, 30),
                (Phase::AwaitingAgent, 45),
                (Phase::AwaitingIp, 66),
            ],
        );
        let copy = Event::CopyProgress {
            vm: 0,
            percent: 42.37,
            eta_s: Some(190.0),
        };
        ev(&mut m, 120, copy);
        let reported = Event::VmReported {
            vm: 1,
            addresses: "lo 127.0.0.1 ::1; eth0 fe80::be24:11ff:fe00:222".into(),
        };
        ev(&mut m, 121, reported);
        let progress = |requests| {
            Event::Progress(Progress {
                total: 3,
                queued: 1,
                in_flight: 2,
                requests,
                eta_s: Some(3600),
                ..Progress::default()
            })
        };
        ev(&mut m, 122, progress(135));
        let r = ev(&mut m, 123, progress(175));
        assert!(r.dirty, "a new request count redraws");
        m.select(1);
        let terminal = render(&m, &Theme::new(false), 120, 24);
        insta::assert_snapshot!(terminal.backend());
        for text in [
            "cloning 42%",
            // 190 s predicted at 120 s, drawn at 123 s.
            "~3m07s",
            "ETA 1h00m",
            "175 API requests",
            "awaiting-ip",
            "agent reports lo 127.0.0.1 ::1; eth0",
            "fe80::be24:11ff:fe00:222",
        ] {
            assert!(testkit::find(&terminal, text).is_some(), "{text}");
        }
    }

    #[test]
    fn recreate_asks_naming_the_vm_and_its_id() {
        let mut m = mid_rollout();
        let vm = m.selected;
        update(&mut m, key('R'));
        let terminal = render(&m, &Theme::new(false), 140, 45);
        let (name, vmid) = (m.vms[vm].name.clone(), m.vms[vm].vmid);
        let line = format!("Destroy {name} (VMID {vmid}) with its disks,");
        assert!(testkit::find(&terminal, &line).is_some(), "{line}");
        assert!(testkit::find(&terminal, "y yes · n/Esc cancel").is_some());
    }

    #[test]
    fn whole_screen_140x45() {
        let m = mid_rollout();
        insta::assert_snapshot!(render(&m, &Theme::new(false), 140, 45).backend());
    }

    #[test]
    fn whole_screen_80x24() {
        let mut m = mid_rollout();
        m.size = (80, 24);
        m.keep_selection_visible();
        insta::assert_snapshot!(render(&m, &Theme::new(false), 80, 24).backend());
    }

    #[test]
    fn whole_screen_timeline_140x45() {
        let mut m = mid_rollout();
        update(&mut m, key('t'));
        insta::assert_snapshot!(render(&m, &Theme::new(false), 140, 45).backend());
    }

    #[test]
    fn whole_screen_timeline_80x24_no_color() {
        let mut m = mid_rollout();
        m.size = (80, 24);
        update(&mut m, key('t'));
        insta::assert_snapshot!(render(&m, &Theme::new(true), 80, 24).backend());
    }

    #[test]
    fn whole_screen_finished_140x45() {
        let mut m = mid_rollout();
        for vm in 2..7 {
            testkit::walk(&mut m, vm, &[(Phase::Verified, 200 + vm as u64)]);
        }
        testkit::ev(
            &mut m,
            210,
            crate::engine::event::Event::Exported {
                paths: testkit::paths(),
            },
        );
        testkit::ev(
            &mut m,
            211,
            crate::engine::event::Event::Finished {
                summary: testkit::summary(&[
                    "verified", "verified", "verified", "verified", "verified", "verified",
                    "verified", "failed", "skipped", "queued",
                ]),
            },
        );
        m.now = testkit::t(400);
        let terminal = render(&m, &Theme::new(false), 140, 45);
        insta::assert_snapshot!(terminal.backend());
        assert!(
            testkit::row_text(&terminal, 0).contains("elapsed 03:31"),
            "frozen at the finish"
        );
    }

    #[test]
    fn too_small_says_so() {
        let m = mid_rollout();
        let terminal = render(&m, &Theme::new(false), 50, 12);
        insta::assert_snapshot!(terminal.backend());
        assert!(testkit::find(&terminal, "need at least 60x16").is_some());
    }

    #[test]
    fn the_selected_vm_reads_in_every_panel_without_colour() {
        let m = mid_rollout();
        let terminal = render(&m, &Theme::new(true), 140, 45);
        let buf = terminal.backend().buffer();
        assert!(
            buf.content()
                .iter()
                .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
            "NO_COLOR: not a single coloured cell"
        );
        for kind in [
            StateKind::Cloning,
            StateKind::Booting,
            StateKind::AwaitingAgent,
            StateKind::IpFound,
            StateKind::Verified,
        ] {
            let word = kind.label();
            assert!(testkit::find(&terminal, word).is_some(), "{word} on screen");
        }
    }
}
