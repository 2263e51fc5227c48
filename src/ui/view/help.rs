//! The help overlay: every keymap entry by context, with when it applies, and the state glyphs.
//! Two columns when wide (the dashboard's keys left, the rest right), one column otherwise;
//! scrolls when it does not fit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::ui::keymap::{Context, KEYMAP};
use crate::ui::layout;
use crate::ui::model::Model;
use crate::ui::state::StateKind;
use crate::ui::text;
use crate::ui::theme::{Theme, state_glyph};

use super::panel;

const KEY_W: usize = 12;
/// From this inner width on, two columns.
const TWO_COLUMNS: usize = 108;
const GUTTER: usize = 3;

/// One context's entries, each description wrapped under itself, within `width`.
fn section(context: Context, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let room = width.saturating_sub(2 + KEY_W).max(10);
    let mut out = vec![Line::from(Span::styled(context.title(), theme.heading()))];
    let mut entries: Vec<(&str, &str, &str)> = KEYMAP
        .iter()
        .filter(|b| b.context == context)
        .map(|b| (b.label, b.description, b.when.describe()))
        .collect();
    if context == Context::SearchInput {
        entries.push(("any text", "the query (case is ignored)", ""));
    }
    for (key, description, when) in entries {
        let mut wrapped = text::wrap_words(description, room, 3);
        let when = (!when.is_empty()).then(|| format!("({when})"));
        let mut trailing_when = None;
        if let Some(when) = when {
            let last = wrapped.len() - 1;
            if wrapped[last].chars().count() + 2 + when.chars().count() <= room {
                trailing_when = Some(when);
            } else {
                wrapped.push(String::new());
                trailing_when = Some(when);
            }
        }
        let count = wrapped.len();
        for (i, chunk) in wrapped.into_iter().enumerate() {
            let lead = if i == 0 {
                format!("  {key:<KEY_W$}")
            } else {
                " ".repeat(2 + KEY_W)
            };
            let lead_style = if i == 0 { theme.key() } else { theme.dim() };
            let mut spans = vec![Span::styled(lead, lead_style), Span::raw(chunk.clone())];
            if i + 1 == count
                && let Some(when) = trailing_when.take()
            {
                let gap = if chunk.is_empty() { "" } else { "  " };
                spans.push(Span::styled(format!("{gap}{when}"), theme.dim()));
            }
            out.push(Line::from(spans));
        }
    }
    out
}

/// State glyphs, wrapped to `width`.
fn legend(theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let mut out = vec![Line::from(Span::styled("States", theme.heading()))];
    let mut line: Vec<Span<'static>> = vec![Span::raw("  ")];
    let mut used = 2;
    for kind in StateKind::ALL {
        let item = 1 + 1 + kind.label().chars().count() + 2;
        if used + item > width && used > 2 {
            out.push(Line::from(std::mem::replace(
                &mut line,
                vec![Span::raw("  ")],
            )));
            used = 2;
        }
        line.push(Span::styled(state_glyph(kind), theme.state(kind)));
        line.push(Span::styled(
            format!(" {}  ", kind.label()),
            theme.state(kind),
        ));
        used += item;
    }
    out.push(Line::from(line));
    out.push(Line::from(vec![
        Span::raw("  "),
        Span::styled(
            "mouse: click selects a VM, the wheel scrolls the grid or the log",
            theme.dim(),
        ),
    ]));
    out
}

/// Everything the overlay shows, laid out for an inner width of `width`.
pub fn lines(theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let others = [
        Context::SearchInput,
        Context::Confirm,
        Context::ConfirmVm,
        Context::Help,
        Context::Diagnostics,
    ];
    let mut out = Vec::new();
    if width >= TWO_COLUMNS {
        let col = (width - GUTTER) / 2;
        // the two columns about even: the help's own keys under the dashboard's
        let mut left = section(Context::Dashboard, theme, col);
        left.push(Line::default());
        left.extend(section(Context::Help, theme, col));
        let mut right = Vec::new();
        for context in others.into_iter().filter(|c| *c != Context::Help) {
            if !right.is_empty() {
                right.push(Line::default());
            }
            right.extend(section(context, theme, col));
        }
        let rows = left.len().max(right.len());
        let mut left = left.into_iter();
        let mut right = right.into_iter();
        for _ in 0..rows {
            let mut l = left.next().unwrap_or_default();
            let pad = (col + GUTTER).saturating_sub(l.width());
            l.spans.push(Span::raw(" ".repeat(pad)));
            l.spans.extend(right.next().unwrap_or_default().spans);
            out.push(l);
        }
    } else {
        for context in std::iter::once(Context::Dashboard).chain(others) {
            if !out.is_empty() {
                out.push(Line::default());
            }
            out.extend(section(context, theme, width));
        }
    }
    out.push(Line::default());
    out.extend(legend(theme, width));
    out
}

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let width = area.width.saturating_sub(4).min(140);
    let content = lines(theme, usize::from(width.saturating_sub(2)));
    let height = (content.len() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = layout::centered(area, width, height);
    let inner_h = height.saturating_sub(2);
    let max_scroll = (content.len() as u16).saturating_sub(inner_h);
    let scroll = m.help_scroll.min(max_scroll);
    let more = if max_scroll > 0 {
        " · ↑↓ scroll"
    } else {
        ""
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(content)
            .block(panel(format!(" Help · keys (Esc closes{more}) "), theme))
            .scroll((scroll, 0)),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::testkit::{self, key, mid_rollout, render};
    use crate::ui::update::update;

    #[test]
    fn help_overlay_140x45() {
        let mut m = mid_rollout();
        update(&mut m, key('?'));
        let terminal = render(&m, &Theme::new(false), 140, 45);
        insta::assert_snapshot!(terminal.backend());
        assert!(
            testkit::find(&terminal, "↑↓ scroll").is_none(),
            "fits without scrolling"
        );
    }

    #[test]
    fn every_binding_is_in_the_help() {
        let text = |width: usize| -> Vec<String> {
            lines(&Theme::new(false), width)
                .iter()
                .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
                .collect()
        };
        let wide = text(220);
        for b in KEYMAP {
            let entry = format!("{:<KEY_W$}{}", b.label, b.description);
            assert!(wide.iter().any(|l| l.contains(&entry)), "{entry}");
        }
        for width in [130, 70] {
            let narrow = text(width);
            for b in KEYMAP {
                let start = format!(
                    "{:<KEY_W$}{}",
                    b.label,
                    b.description.split(' ').next().unwrap_or("")
                );
                assert!(
                    narrow.iter().any(|l| l.contains(&start)),
                    "{start} at {width}"
                );
            }
            assert!(
                narrow.iter().all(|l| l.chars().count() <= width),
                "fits {width}"
            );
        }
    }

    #[test]
    fn a_small_screen_scrolls_the_help() {
        let mut m = mid_rollout();
        m.size = (80, 24);
        update(&mut m, key('?'));
        let first = render(&m, &Theme::new(false), 80, 24);
        assert!(testkit::find(&first, "↑↓ scroll").is_some());
        for _ in 0..100 {
            update(&mut m, key('j'));
        }
        let last = render(&m, &Theme::new(false), 80, 24);
        insta::assert_snapshot!(last.backend());
        assert!(
            testkit::find(&last, "mouse: click selects").is_some(),
            "scrolled to the end"
        );
    }
}
