//! The timeline: a Gantt chart of each VM's phases over wall time, from the plan to now (or the
//! finish). One column is a slice of time; its cell shows the state the VM was in at the slice's
//! end. Settled states show once, where they happened.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;

use crate::ui::layout;
use crate::ui::layout::ViewMode;
use crate::ui::logs::fit_name;
use crate::ui::model::Model;
use crate::ui::state::StateKind;
use crate::ui::text;
use crate::ui::theme::{Theme, state_glyph};

use super::panel;

/// Axis labels at least this many columns apart.
const LABEL_GAP: u32 = 10;
/// Candidate label steps, in seconds.
const STEPS: [u64; 14] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
];

const LEGEND: [StateKind; 14] = [
    StateKind::Cloning,
    StateKind::Configuring,
    StateKind::Booting,
    StateKind::AwaitingAgent,
    StateKind::AwaitingIp,
    StateKind::IpFound,
    StateKind::Verifying,
    StateKind::Provisioning,
    StateKind::Paused,
    StateKind::Verified,
    StateKind::Failed,
    StateKind::HookFailed,
    StateKind::Skipped,
    StateKind::Aborted,
];

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let inner = layout::inner(area);
    let name_w = m.name_width as u16;
    let bar_x = inner.x + 2 + name_w + 1;
    let cols = inner.width.saturating_sub(2 + name_w + 1);
    let Some(start) = m.started else {
        frame.render_widget(panel(" Timeline ", theme), area);
        return;
    };
    let end = m.finished_at.unwrap_or(m.now);
    let span = text::since(start, end).max(Duration::from_secs(1));
    let per_col = span / u32::from(cols.max(1));
    let title = format!(
        " Timeline · {} → {} · one column ≈ {} ",
        "0s",
        text::short(span),
        text::precise(per_col)
    );
    frame.render_widget(panel(title, theme), area);
    if inner.height < 3 || cols < 10 {
        return;
    }
    let buf = frame.buffer_mut();
    draw_axis(buf, bar_x, inner.y, cols, span, theme);
    let rows = layout::list_rows_in(area, ViewMode::Timeline);
    let first = m.offset.min(m.vms.len());
    let last = (first + usize::from(rows.height)).min(m.vms.len());
    for (i, vm) in m.vms[first..last].iter().enumerate() {
        let y = rows.y + i as u16;
        let index = first + i;
        buf.set_stringn(inner.x, y, state_glyph(vm.kind), 1, theme.state(vm.kind));
        let name_style = if index == m.selected {
            theme.selected()
        } else {
            Style::new()
        };
        buf.set_stringn(
            inner.x + 2,
            y,
            fit_name(&vm.name, usize::from(name_w)),
            usize::from(name_w),
            name_style,
        );
        let mut previous: Option<StateKind> = None;
        for c in 0..cols {
            let kind = vm.kind_at(column_end(start, span, cols, c));
            let cell = match kind {
                None => None,
                Some(k) if k.is_settled() && previous == Some(k) => None,
                Some(k) => Some(theme.timeline_cell(k)),
            };
            if let Some((symbol, style)) = cell {
                buf.set_stringn(bar_x + c, y, symbol, 1, style);
            }
            previous = kind;
        }
    }
    // The hook's states only in rollouts that have been through them.
    let shown: Vec<StateKind> = LEGEND
        .into_iter()
        .filter(|k| {
            !matches!(k, StateKind::Provisioning | StateKind::HookFailed)
                || m.vms
                    .iter()
                    .any(|vm| vm.history.iter().any(|(_, h)| h == k))
        })
        .collect();
    draw_legend(
        buf,
        &shown,
        inner.x,
        inner.y + inner.height - 1,
        inner.width,
        theme,
    );
}

/// Labels (`0s`, `30s`, `1m00s`, ...) at a step that keeps them apart.
fn draw_axis(
    buf: &mut ratatui::buffer::Buffer,
    x0: u16,
    y: u16,
    cols: u16,
    span: Duration,
    theme: &Theme,
) {
    let secs_per_col = span.as_secs_f64() / f64::from(cols);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| *s as f64 / secs_per_col >= f64::from(LABEL_GAP))
        .unwrap_or(STEPS[STEPS.len() - 1]);
    let mut next_free = 0u16;
    for k in 0.. {
        let at = step * k;
        if at as f64 > span.as_secs_f64() {
            break;
        }
        let col = (at as f64 / secs_per_col).round() as u16;
        let label = format!("┊{}", text::short(Duration::from_secs(at)));
        let width = label.chars().count() as u16;
        if col < next_free || col + width > cols {
            continue;
        }
        buf.set_stringn(x0 + col, y, &label, usize::from(width), theme.dim());
        next_free = col + width + 1;
    }
}

/// Legend words when the full ones do not fit.
fn short_label(kind: StateKind) -> &'static str {
    match kind {
        StateKind::Cloning => "clone",
        StateKind::Configuring => "config",
        StateKind::Booting => "boot",
        StateKind::AwaitingAgent => "agent",
        StateKind::AwaitingIp => "lease",
        StateKind::IpFound => "IP",
        StateKind::Verifying => "verify",
        StateKind::Provisioning => "hook",
        StateKind::HookFailed => "hook!",
        StateKind::Verified => "ok",
        StateKind::Failed => "fail",
        StateKind::Skipped => "skip",
        StateKind::Aborted => "abort",
        other => other.label(),
    }
}

fn draw_legend(
    buf: &mut ratatui::buffer::Buffer,
    kinds: &[StateKind],
    x0: u16,
    y: u16,
    width: u16,
    theme: &Theme,
) {
    let full: u16 = kinds
        .iter()
        .map(|k| 2 + k.label().chars().count() as u16 + 2)
        .sum();
    let label_of = if full <= width + 2 {
        StateKind::label
    } else {
        short_label
    };
    let mut x = x0;
    let end = x0 + width;
    for &kind in kinds {
        let (symbol, style) = theme.timeline_cell(kind);
        let label = label_of(kind);
        let need = 2 + label.chars().count() as u16 + 1;
        if x + need > end {
            break;
        }
        buf.set_stringn(x, y, symbol, 1, style);
        buf.set_stringn(x + 2, y, label, label.len(), theme.dim());
        x += need + 1;
    }
}

/// When column `c` of `cols` ends.
fn column_end(
    start: std::time::SystemTime,
    span: Duration,
    cols: u16,
    c: u16,
) -> std::time::SystemTime {
    start + span.mul_f64(f64::from(c + 1) / f64::from(cols))
}

#[cfg(test)]
mod tests {
    use ratatui::style::Color;

    use super::*;
    use crate::ui::testkit::{self, mid_rollout, render_panel};

    fn draw_timeline(
        m: &Model,
        theme: &Theme,
        w: u16,
        h: u16,
    ) -> ratatui::Terminal<ratatui::backend::TestBackend> {
        render_panel(w, h, |f, area| draw(f, area, m, theme))
    }

    fn timeline_model() -> Model {
        let mut m = mid_rollout();
        m.view = ViewMode::Timeline;
        m
    }

    #[test]
    fn timeline_140x16() {
        insta::assert_snapshot!(
            draw_timeline(&timeline_model(), &Theme::new(false), 140, 16).backend()
        );
    }

    #[test]
    fn timeline_no_color_80x16_uses_letters() {
        let terminal = draw_timeline(&timeline_model(), &Theme::new(true), 80, 16);
        insta::assert_snapshot!(terminal.backend());
        assert!(testkit::find(&terminal, "cccc").is_some());
        assert!(
            testkit::find(&terminal, "c clone").is_some(),
            "legend explains the letters"
        );
        assert!(
            testkit::find(&terminal, "v verify").is_some(),
            "every busy letter"
        );
    }

    #[test]
    fn bars_are_coloured_by_phase_at_the_right_time() {
        let m = timeline_model();
        let theme = Theme::new(false);
        let (w, h) = (140u16, 16u16);
        let terminal = draw_timeline(&m, &theme, w, h);
        let buf = terminal.backend().buffer();
        let cols = w - 2 - (2 + m.name_width as u16 + 1);
        let bar_x = 1 + 2 + m.name_width as u16 + 1;
        let span = Duration::from_secs(192);
        let start = testkit::t(0);
        for (i, vm) in m.vms.iter().enumerate() {
            let y = 2 + i as u16;
            let mut previous = None;
            for c in 0..cols {
                let kind = vm.kind_at(column_end(start, span, cols, c));
                let cell = &buf[(bar_x + c, y)];
                match kind {
                    Some(k) if !(k.is_settled() && previous == Some(k)) => {
                        let (symbol, style) = theme.timeline_cell(k);
                        assert_eq!(
                            (cell.symbol(), cell.fg),
                            (symbol, style.fg.unwrap_or(Color::Reset)),
                            "vm {i} col {c}"
                        );
                    }
                    _ => assert_eq!(cell.symbol(), " ", "vm {i} col {c}"),
                }
                previous = kind;
            }
        }
        // VM 1 verified at 120 s: exactly one ✓, in green
        let row = testkit::row_text(&terminal, 2);
        assert_eq!(row.matches('✓').count(), 2, "glyph column + the bar: {row}");
    }
}
