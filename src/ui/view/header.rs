//! Three rows: who and how long (with the PAUSED / FINISHED flags), counts per state, progress.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};

use crate::ui::model::Model;
use crate::ui::state::StateKind;
use crate::ui::text;
use crate::ui::theme::{Theme, state_glyph};

/// Always counted in the header, even at zero (the mission's five states).
const ALWAYS_SHOWN: [StateKind; 5] = [
    StateKind::Cloning,
    StateKind::Booting,
    StateKind::AwaitingAgent,
    StateKind::IpFound,
    StateKind::Verified,
];

const SEPARATOR: &str = " │ ";

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    if area.height < 3 {
        return;
    }
    let row = |i: u16| Rect::new(area.x, area.y + i, area.width, 1);
    frame.render_widget(Paragraph::new(title_line(m, theme, area.width)), row(0));
    frame.render_widget(Paragraph::new(counts_line(m, theme, area.width)), row(1));
    draw_gauge(frame, row(2), m, theme);
}

fn title_line<'a>(m: &'a Model, theme: &Theme, width: u16) -> Line<'a> {
    let sep = || Span::styled(SEPARATOR, theme.border());
    let mut left = vec![Span::styled(format!(" {}", m.title), theme.title())];
    if !m.rollout.is_empty() {
        left.push(sep());
        left.push(Span::styled(m.rollout.as_str(), theme.heading()));
        if !m.cluster.is_empty() {
            left.push(Span::raw(" on "));
            left.push(Span::raw(m.cluster.as_str()));
        }
    }
    left.push(sep());
    left.push(Span::raw(format!("elapsed {}", text::clock(m.elapsed()))));
    if let Some(eta) = m.eta_s.filter(|_| !m.finished) {
        left.push(sep());
        left.push(Span::raw(format!(
            "ETA {}",
            text::short(std::time::Duration::from_secs(eta))
        )));
    }
    if m.requests > 0 {
        left.push(sep());
        left.push(Span::styled(
            format!("{} API requests", m.requests),
            theme.dim(),
        ));
    }
    let mut flags = Vec::new();
    if m.paused_all {
        flags.push(Span::styled(" ‖ PAUSED ", theme.flag(Color::Yellow)));
    }
    if m.aborting && !m.finished {
        flags.push(Span::styled(" ABORTING… ", theme.flag(Color::Red)));
    }
    if m.finished {
        let outcome = m.outcome.as_deref().unwrap_or("");
        flags.push(Span::styled(
            format!(" ✓ FINISHED: {outcome} · q quits "),
            theme.flag(Color::Green),
        ));
    } else if m.engine_gone {
        flags.push(Span::styled(" ENGINE STOPPED ", theme.flag(Color::Red)));
    }
    right_align(left, flags, width)
}

/// `left` then `right` pushed to the right edge; the flags on the right win: trailing parts of
/// the left side go first when both do not fit.
fn right_align<'a>(mut left: Vec<Span<'a>>, right: Vec<Span<'a>>, width: u16) -> Line<'a> {
    let right_w: usize = right.iter().map(Span::width).sum();
    let width = usize::from(width);
    let left_width = |left: &[Span<'_>]| left.iter().map(Span::width).sum::<usize>();
    while right_w > 0 && left.len() > 1 && left_width(&left) + right_w + 1 > width {
        left.pop();
        if left.last().is_some_and(|s| s.content == SEPARATOR) {
            left.pop();
        }
    }
    let left_w = left_width(&left);
    if right_w > 0 {
        left.push(Span::raw(
            " ".repeat(width.saturating_sub(left_w + right_w).max(1)),
        ));
    }
    let mut spans = left;
    spans.extend(right);
    Line::from(spans)
}

fn counts_line(m: &Model, theme: &Theme, width: u16) -> Line<'static> {
    let shown: Vec<StateKind> = StateKind::ALL
        .into_iter()
        .filter(|k| ALWAYS_SHOWN.contains(k) || m.count(*k) > 0)
        .collect();
    let build = |labels: bool| {
        let mut spans = vec![Span::raw(" ")];
        for kind in &shown {
            let style = theme.state(*kind);
            spans.push(Span::styled(state_glyph(*kind), style));
            spans.push(Span::styled(
                format!(" {}", m.count(*kind)),
                theme.heading(),
            ));
            if labels {
                spans.push(Span::styled(format!(" {}", kind.label()), style));
            }
            spans.push(Span::raw("  "));
        }
        spans
    };
    let full = build(true);
    let fits = full.iter().map(Span::width).sum::<usize>() <= usize::from(width);
    Line::from(if fits { full } else { build(false) })
}

fn draw_gauge(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let total = m.vms.len();
    let settled = total - m.unsettled();
    let ratio = if total == 0 {
        0.0
    } else {
        settled as f64 / total as f64
    };
    let label = format!(
        " {settled}/{total} settled · {} verified · {} in flight · {} queued ",
        m.count(StateKind::Verified),
        m.in_flight(),
        m.count(StateKind::Queued),
    );
    frame.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(Span::styled(label, theme.heading()))
            .filled_symbol("━")
            .unfilled_symbol("─")
            .filled_style(theme.gauge_filled())
            .unfilled_style(theme.gauge_unfilled()),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::testkit::{self, key, mid_rollout, render_panel};
    use crate::ui::update::update;

    fn draw_header(
        m: &Model,
        theme: &Theme,
        w: u16,
    ) -> ratatui::Terminal<ratatui::backend::TestBackend> {
        render_panel(w, 3, |f, area| draw(f, area, m, theme))
    }

    #[test]
    fn header_140() {
        let m = mid_rollout();
        insta::assert_snapshot!(draw_header(&m, &Theme::new(false), 140).backend());
    }

    #[test]
    fn header_80_paused_drops_labels() {
        let mut m = mid_rollout();
        update(&mut m, key('P'));
        let terminal = draw_header(&m, &Theme::new(false), 80);
        insta::assert_snapshot!(terminal.backend());
        assert!(
            testkit::row_text(&terminal, 0)
                .trim_end()
                .ends_with("‖ PAUSED")
        );
        assert!(!testkit::row_text(&terminal, 1).contains("cloning"));
    }

    #[test]
    fn counts_are_coloured_per_state() {
        let m = mid_rollout();
        let theme = Theme::new(false);
        let terminal = draw_header(&m, &theme, 140);
        let buf = terminal.backend().buffer();
        for kind in [
            StateKind::Cloning,
            StateKind::AwaitingAgent,
            StateKind::Failed,
        ] {
            let (x, y) = testkit::find(&terminal, kind.label()).expect("label shown");
            assert_eq!(buf[(x, y)].fg, theme.state(kind).fg.unwrap(), "{kind:?}");
            assert_eq!(y, 1);
        }
        let (x, y) = testkit::find(&terminal, "2 verified ·").unwrap();
        assert!(
            buf[(x, y)]
                .modifier
                .contains(ratatui::style::Modifier::BOLD)
        );
    }
}
