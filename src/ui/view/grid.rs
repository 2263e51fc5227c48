//! The VM grid: glyph, name, vmid, node, state, time, IP, attempts. Only the rows on screen are
//! built, from strings cached on each VM; columns drop (node, then IP, attempts, vmid) when narrow.

use std::time::SystemTime;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

use crate::ui::layout;
use crate::ui::layout::ViewMode;
use crate::ui::logs::fit_name;
use crate::ui::model::{Model, VmRow};
use crate::ui::state::StateKind;
use crate::ui::text;
use crate::ui::theme::{SPINNER, Theme, state_glyph};

use super::panel;

const NAME_MIN: u16 = 10;
const STATE_W: u16 = 14; // "awaiting-agent"
const TIME_W: u16 = 8; // spinner, space, "59m59s"

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Glyph,
    Name,
    Vmid,
    Node,
    State,
    Time,
    Ip,
    Attempts,
}

/// Columns in display order with their widths, for an inner width of `width`.
fn columns(m: &Model, width: u16) -> Vec<(Col, u16)> {
    let node_w = m.node_width as u16;
    let mut cols = vec![
        (Col::Glyph, 1),
        (Col::Name, m.name_width as u16),
        (Col::Vmid, 5),
        (Col::Node, node_w),
        (Col::State, STATE_W),
        (Col::Time, TIME_W),
        (Col::Ip, 15),
        (Col::Attempts, 2),
    ];
    let total = |cols: &[(Col, u16)]| cols.iter().map(|c| c.1 + 1).sum::<u16>() - 1;
    for drop in [Col::Node, Col::Ip, Col::Attempts, Col::Vmid] {
        let others = total(&cols) - cols[1].1;
        if others + NAME_MIN <= width {
            break;
        }
        cols.retain(|c| c.0 != drop);
    }
    let others = total(&cols) - cols[1].1;
    cols[1].1 = cols[1].1.min(width.saturating_sub(others)).max(1);
    // Room left over goes to the IP column (IPv6 addresses are long).
    let spare = width.saturating_sub(total(&cols));
    if let Some(ip) = cols.iter_mut().find(|c| c.0 == Col::Ip) {
        ip.1 += spare.min(24);
    }
    cols
}

fn title(m: &Model, start: usize, end: usize) -> String {
    if m.vms.is_empty() {
        " VMs ".into()
    } else if start == 0 && end == m.vms.len() {
        format!(" VMs ({}) ", m.vms.len())
    } else {
        format!(" VMs {}-{} of {} ", start + 1, end, m.vms.len())
    }
}

/// x of `which` inside a grid whose inner area starts at `x0`.
#[cfg(test)]
fn column_x(cols: &[(Col, u16)], x0: u16, which: Col) -> Option<u16> {
    let mut x = x0;
    for (col, w) in cols {
        if *col == which {
            return Some(x);
        }
        x += w + 1;
    }
    None
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let inner = layout::inner(area);
    let rows_area = layout::list_rows_in(area, ViewMode::Grid);
    let start = m.offset.min(m.vms.len());
    let end = (start + usize::from(rows_area.height)).min(m.vms.len());
    frame.render_widget(panel(title(m, start, end), theme), area);
    if inner.height == 0 {
        return;
    }
    let cols = columns(m, inner.width);
    let buf = frame.buffer_mut();
    let mut x = inner.x;
    for (col, w) in &cols {
        let name = match col {
            Col::Glyph => "",
            Col::Name => "name",
            Col::Vmid => " vmid",
            Col::Node => "node",
            Col::State => "state",
            Col::Time => "    time",
            Col::Ip => "IP",
            Col::Attempts => " #",
        };
        buf.set_stringn(x, inner.y, name, usize::from(*w), theme.dim());
        x += w + 1;
    }
    if m.vms.is_empty() {
        buf.set_stringn(
            rows_area.x,
            rows_area.y,
            "waiting for the plan…",
            rows_area.width.into(),
            theme.dim(),
        );
        return;
    }
    for (i, vm) in m.vms[start..end].iter().enumerate() {
        let y = rows_area.y + i as u16;
        let index = start + i;
        if index == m.selected {
            buf.set_style(
                Rect::new(rows_area.x, y, rows_area.width, 1),
                theme.selected(),
            );
        }
        draw_row(buf, rows_area.x, y, &cols, vm, m.now, theme);
    }
}

fn draw_row(
    buf: &mut Buffer,
    x0: u16,
    y: u16,
    cols: &[(Col, u16)],
    vm: &VmRow,
    now: SystemTime,
    theme: &Theme,
) {
    let state_style = theme.state(vm.kind);
    let mut x = x0;
    for (col, w) in cols {
        let w = *w;
        let width = usize::from(w);
        match col {
            Col::Glyph => {
                buf.set_stringn(x, y, state_glyph(vm.kind), 1, state_style);
            }
            Col::Name => {
                buf.set_stringn(x, y, fit_name(&vm.name, width), width, Style::new());
            }
            Col::Vmid => {
                buf.set_stringn(
                    x,
                    y,
                    format!("{:>width$}", vm.vmid_text),
                    width,
                    Style::new(),
                );
            }
            Col::Node => {
                buf.set_stringn(x, y, &vm.node, width, theme.dim());
            }
            Col::State => {
                let label = match &vm.copy {
                    Some(copy) => format!("{} {}", vm.kind.label(), copy.percent_text()),
                    None => vm.kind.label().to_string(),
                };
                buf.set_stringn(x, y, label, width, state_style);
            }
            Col::Time => draw_time(buf, x, y, w, vm, now, theme),
            Col::Ip => {
                if let Some(ip) = &vm.ip {
                    buf.set_stringn(x, y, ip, width, Style::new());
                }
            }
            Col::Attempts => {
                let style = if vm.attempts > 1 {
                    theme.state(StateKind::AwaitingAgent)
                } else {
                    theme.dim()
                };
                buf.set_stringn(x, y, format!("{:>width$}", vm.attempts_text), width, style);
            }
        }
        x += w + 1;
    }
}

/// Busy: spinner and time in the phase. Paused: time held. Verified: time it took. Else blank.
fn draw_time(buf: &mut Buffer, x: u16, y: u16, w: u16, vm: &VmRow, now: SystemTime, theme: &Theme) {
    let width = usize::from(w - 2);
    let (lead, value, style) = match vm.kind {
        // A copy with a known rate: the time it has still to go.
        k if k.is_busy()
            && let Some(left) = vm.copy.and_then(|c| c.left(now)) =>
        {
            let value = format!("~{}", text::short(left));
            buf.set_stringn(x, y, spinner_frame(now), 1, theme.state(vm.kind));
            buf.set_stringn(x + 2, y, format!("{value:>width$}"), width, Style::new());
            return;
        }
        k if k.is_busy() => (spinner_frame(now), text::since(vm.since, now), Style::new()),
        StateKind::Paused => (
            "‖",
            text::since(vm.since, now),
            theme.state(StateKind::Paused),
        ),
        StateKind::Verified => {
            let start = vm
                .history
                .iter()
                .find(|(_, k)| *k != StateKind::Queued)
                .map_or(vm.since, |h| h.0);
            (" ", text::since(start, vm.since), theme.dim())
        }
        _ => return,
    };
    buf.set_stringn(x, y, lead, 1, theme.state(vm.kind));
    buf.set_stringn(
        x + 2,
        y,
        format!("{:>width$}", text::short(value)),
        width,
        style,
    );
}

/// The spinner frame for this instant (10 per second), so a test clock gives a fixed frame.
pub fn spinner_frame(now: SystemTime) -> &'static str {
    let tenths = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        / 100;
    SPINNER[(tenths % SPINNER.len() as u128) as usize]
}

#[cfg(test)]
mod tests {
    use ratatui::style::{Color, Modifier};

    use super::*;
    use crate::ui::testkit::{self, mid_rollout, render_panel};

    fn draw_grid(
        m: &Model,
        theme: &Theme,
        w: u16,
        h: u16,
    ) -> ratatui::Terminal<ratatui::backend::TestBackend> {
        render_panel(w, h, |f, area| draw(f, area, m, theme))
    }

    #[test]
    fn grid_84x16() {
        insta::assert_snapshot!(draw_grid(&mid_rollout(), &Theme::new(false), 84, 16).backend());
    }

    #[test]
    fn grid_48x12_drops_columns() {
        let terminal = draw_grid(&mid_rollout(), &Theme::new(false), 48, 12);
        insta::assert_snapshot!(terminal.backend());
        assert!(!testkit::row_text(&terminal, 1).contains("node"));
    }

    #[test]
    fn each_state_has_its_colour_and_glyph_in_its_row() {
        let m = mid_rollout();
        let theme = Theme::new(false);
        let terminal = draw_grid(&m, &theme, 84, 16);
        let buf = terminal.backend().buffer();
        for (i, vm) in m.vms.iter().enumerate() {
            let y = 2 + i as u16;
            let glyph = &buf[(1, y)];
            assert_eq!(glyph.symbol(), state_glyph(vm.kind), "row {i}");
            assert_eq!(
                glyph.fg,
                theme.state(vm.kind).fg.unwrap(),
                "row {i} glyph colour"
            );
            let x = column_x(&columns(&m, 82), 1, Col::State).unwrap();
            let word: String = (0..vm.kind.label().len() as u16)
                .map(|d| buf[(x + d, y)].symbol())
                .collect();
            assert_eq!(word, vm.kind.label(), "row {i}");
            assert_eq!(
                buf[(x, y)].fg,
                theme.state(vm.kind).fg.unwrap(),
                "row {i} state colour"
            );
        }
    }

    #[test]
    fn the_selected_row_is_highlighted_and_only_busy_rows_spin() {
        let m = mid_rollout();
        let theme = Theme::new(false);
        let terminal = draw_grid(&m, &theme, 84, 16);
        let buf = terminal.backend().buffer();
        let selected_y = 2 + m.selected as u16;
        assert_eq!(buf[(10, selected_y)].bg, Color::DarkGray);
        assert!(buf[(10, selected_y)].modifier.contains(Modifier::BOLD));
        assert_eq!(buf[(10, selected_y + 1)].bg, Color::Reset);
        let spinner = spinner_frame(m.now);
        for (i, vm) in m.vms.iter().enumerate() {
            let row = testkit::row_text(&terminal, 2 + i as u16);
            assert_eq!(row.contains(spinner), vm.kind.is_busy(), "row {i}: {row}");
        }
    }

    #[test]
    fn only_the_visible_window_is_drawn_and_the_title_says_where() {
        let mut m = testkit::model(1000);
        m.offset = 500;
        let terminal = draw_grid(&m, &Theme::new(false), 84, 12);
        let title = testkit::row_text(&terminal, 0);
        assert!(title.contains("VMs 501-509 of 1000"), "{title}");
        assert!(testkit::row_text(&terminal, 2).contains("ubuntu-opentofu-501 "));
        assert!(testkit::row_text(&terminal, 10).contains("ubuntu-opentofu-509 "));
    }

    #[test]
    fn no_color_grid_still_reads() {
        let m = mid_rollout();
        let terminal = draw_grid(&m, &Theme::new(true), 84, 16);
        let buf = terminal.backend().buffer();
        assert!(
            buf.content()
                .iter()
                .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
        );
        assert!(
            buf[(10, 2 + m.selected as u16)]
                .modifier
                .contains(Modifier::REVERSED)
        );
        assert!(testkit::find(&terminal, "✗ ubuntu-opentofu-8").is_some());
    }
}
