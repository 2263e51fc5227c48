//! The diagnostics pane: the process's `tracing` records through tui-logger's widgets, a target
//! list with tui-logger's per-target level filters on the left (hidden with `h`), the records on
//! the right. It reads tui-logger's buffer through the widget state the run loop owns.

use ratatui::Frame;
use ratatui::layout::Rect;
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerTargetWidget, TuiLoggerWidget, TuiWidgetState};

use crate::engine::event::Level;
use crate::ui::model::Model;
use crate::ui::theme::Theme;

use super::panel;

/// The target list's width: `EWIDT:` and a module path.
const TARGETS_WIDTH: u16 = 40;
/// Below this width the records take the whole pane.
const MIN_WIDTH_WITH_TARGETS: u16 = 90;

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme, state: &TuiWidgetState) {
    let show_targets = !m.diagnostics.targets_hidden && area.width >= MIN_WIDTH_WITH_TARGETS;
    let records = if show_targets {
        let targets = Rect::new(area.x, area.y, TARGETS_WIDTH, area.height);
        frame.render_widget(
            TuiLoggerTargetWidget::default()
                .block(panel(" Targets · E W I D T ", theme))
                .style_show(theme.key())
                .style_hide(theme.dim())
                .highlight_style(theme.selected())
                .state(state),
            targets,
        );
        Rect::new(
            area.x + TARGETS_WIDTH,
            area.y,
            area.width - TARGETS_WIDTH,
            area.height,
        )
    } else {
        area
    };
    let title = if m.diagnostics.paged {
        " Diagnostics · paged: PgUp/PgDn, Esc follows "
    } else {
        " Diagnostics · tracing records · d closes "
    };
    frame.render_widget(
        TuiLoggerWidget::default()
            .block(panel(title, theme))
            .style_error(theme.level(Level::Error))
            .style_warn(theme.level(Level::Warning))
            .style_info(theme.level(Level::Info))
            .style_debug(theme.dim())
            .style_trace(theme.dim())
            .output_separator(' ')
            .output_timestamp(Some("%H:%M:%S".into()))
            .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
            .output_target(true)
            .output_file(false)
            .output_line(false)
            .state(state),
        records,
    );
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;
    use tui_logger::TuiTracingSubscriberLayer;

    use crate::ui::testkit::{self, key, mid_rollout, render};
    use crate::ui::update::update;

    use super::*;

    /// `hh:mm:ss` where the screen shows a wall-clock time (the records' timestamps).
    fn mask_clock(screen: &str) -> String {
        let chars: Vec<char> = screen.chars().collect();
        let mut out = String::with_capacity(screen.len());
        let mut i = 0;
        while i < chars.len() {
            let is_clock = chars.len() - i >= 8
                && (0..8).all(|j| match j {
                    2 | 5 => chars[i + j] == ':',
                    _ => chars[i + j].is_ascii_digit(),
                });
            if is_clock {
                out.push_str("hh:mm:ss");
                i += 8;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }

    /// The only test that writes to tui-logger's process-wide buffer, so the pane shows exactly
    /// this record and its target.
    #[test]
    fn diagnostics_pane_140x45() {
        let subscriber = tracing_subscriber::registry().with(TuiTracingSubscriberLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                target: "pve_rollout::pve::transport",
                "GET /nodes/pve1/qemu/104/agent/ping -> 500 in 12ms"
            );
        });
        tui_logger::move_events();
        let mut m = mid_rollout();
        update(&mut m, key('d'));
        let terminal = render(&m, &Theme::new(false), 140, 45);
        insta::assert_snapshot!(mask_clock(&terminal.backend().to_string()));
        assert!(testkit::find(&terminal, "agent/ping -> 500 in 12ms").is_some());
        assert!(
            testkit::find(&terminal, "Log · all VMs").is_none(),
            "the pane covers the logs"
        );
    }

    #[test]
    fn clocks_are_masked_and_nothing_else() {
        assert_eq!(
            mask_clock("at 12:34:56 W elapsed 03:12"),
            "at hh:mm:ss W elapsed 03:12"
        );
    }
}
