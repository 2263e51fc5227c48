//! The log panes: all VMs (or the search view while a search is open) and the selected VM, both
//! read from the model's own log and laid out with `logs::layout_line`.

use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::ui::layout;
use crate::ui::logs::{LineParts, LogLine, layout_line};
use crate::ui::model::Model;
use crate::ui::text;
use crate::ui::theme::Theme;

use super::panel;

/// Used where a line is not wrapped (the search view shows one screen line per log line).
const NO_WRAP: usize = 4096;

pub fn draw_all(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    if let Some(query) = &m.search.query {
        draw_search(frame, area, m, theme, query);
        return;
    }
    let title = if m.log_page.is_some() {
        " Log · all VMs · paged: PgUp/PgDn, Esc follows "
    } else {
        " Log · all VMs "
    };
    let inner = layout::inner(area);
    frame.render_widget(panel(title, theme), area);
    let end = m.logs.end_for(m.log_page);
    let newest_first = m.logs.lines().range(..end).rev();
    let screen = tail_screen(newest_first, inner, theme, |line| {
        Some((who(m, line.vm), m.name_width))
    });
    frame.render_widget(Paragraph::new(screen), inner);
}

/// The lines that end with the first of `newest_first`, laid out into `area`: newest at the
/// bottom, the oldest shown cut at the top when it does not fit.
fn tail_screen<'a, 'm>(
    newest_first: impl Iterator<Item = &'a Arc<LogLine>>,
    area: Rect,
    theme: &Theme,
    who: impl Fn(&LogLine) -> Option<(&'m str, usize)>,
) -> Vec<Line<'static>> {
    let height = usize::from(area.height);
    let mut screen: Vec<Line<'static>> = Vec::with_capacity(height);
    if height == 0 {
        return screen;
    }
    for line in newest_first {
        let stamp = text::elapsed_stamp(line.elapsed);
        let parts = LineParts::of(line, &stamp, who(line));
        let laid = layout_line(theme, &parts, area.width.into(), None);
        screen.extend(laid.into_iter().rev());
        if screen.len() >= height {
            break;
        }
    }
    screen.truncate(height);
    screen.reverse();
    screen
}

fn draw_search(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme, query: &str) {
    let s = &m.search;
    let position = if s.matches.is_empty() {
        "no match".to_string()
    } else {
        format!("{}/{}", s.current + 1, s.matches.len())
    };
    let title = format!(" Search '{query}' · {position} · n/N, Esc closes ");
    let block = panel(title, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines = m.logs.lines();
    let height = usize::from(inner.height);
    if lines.is_empty() || height == 0 {
        return;
    }
    // The current match sits mid-pane (or the tail, with no match), moved by PgUp/PgDn/wheel.
    let anchor = s
        .current_seq()
        .and_then(|seq| m.logs.position(seq))
        .unwrap_or(lines.len() - 1) as isize;
    let centre = anchor + s.scroll;
    let max_start = lines.len().saturating_sub(height) as isize;
    let start = (centre - height as isize / 2).clamp(0, max_start) as usize;
    let current = s.current_seq();
    let mut out = Vec::with_capacity(height);
    for line in lines.range(start..(start + height).min(lines.len())) {
        let stamp = text::elapsed_stamp(line.elapsed);
        let who = who(m, line.vm);
        let hits = Some((query, Some(line.seq) == current));
        let parts = LineParts::of(line, &stamp, Some((who, m.name_width)));
        let mut laid = layout_line(theme, &parts, NO_WRAP, hits);
        out.push(laid.swap_remove(0));
    }
    frame.render_widget(Paragraph::new(out), inner);
}

fn who(m: &Model, vm: Option<usize>) -> &str {
    vm.and_then(|i| m.vms.get(i))
        .map_or("—", |v| v.name.as_str())
}

pub fn draw_selected(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let Some(vm) = m.selected_vm() else {
        frame.render_widget(panel(" Log · selected VM ", theme), area);
        return;
    };
    let block = panel(
        Line::from(vec![Span::raw(format!(" Log · {} ", vm.name))]),
        theme,
    );
    let inner = layout::inner(area);
    frame.render_widget(block, area);
    let mut screen = tail_screen(vm.log.iter().rev(), inner, theme, |_| None);
    if screen.is_empty() && inner.height > 0 {
        screen.push(Line::from(Span::styled("no log lines yet", theme.dim())));
    }
    frame.render_widget(Paragraph::new(screen), inner);
}

#[cfg(test)]
mod tests {
    use ratatui::style::Color;

    use super::*;
    use crate::engine::event::Level;
    use crate::ui::testkit::{self, code, key, log, mid_rollout, render_panel};
    use crate::ui::update::update;

    fn draw_pane(
        m: &Model,
        theme: &Theme,
        w: u16,
        h: u16,
        pane: fn(&mut Frame<'_>, Rect, &Model, &Theme),
    ) -> ratatui::Terminal<ratatui::backend::TestBackend> {
        render_panel(w, h, |f, area| pane(f, area, m, theme))
    }

    #[test]
    fn all_vms_pane_84x14() {
        let terminal = draw_pane(&mid_rollout(), &Theme::new(false), 84, 14, draw_all);
        insta::assert_snapshot!(terminal.backend());
    }

    #[test]
    fn selected_vm_pane_56x10() {
        let terminal = draw_pane(&mid_rollout(), &Theme::new(false), 56, 10, draw_selected);
        insta::assert_snapshot!(terminal.backend());
    }

    #[test]
    fn search_view_84x10() {
        let mut m = mid_rollout();
        for c in "/clone".chars() {
            update(&mut m, key(c));
        }
        update(&mut m, code(crossterm::event::KeyCode::Enter));
        update(&mut m, key('N'));
        let terminal = draw_pane(&m, &Theme::new(false), 84, 10, draw_all);
        insta::assert_snapshot!(terminal.backend());
        let buf = terminal.backend().buffer();
        let hits = buf
            .content()
            .iter()
            .filter(|c| c.bg == Color::Yellow)
            .count();
        let shown: usize = (1..9)
            .map(|y| {
                testkit::row_text(&terminal, y)
                    .to_lowercase()
                    .matches("clone")
                    .count()
            })
            .sum();
        assert!(shown >= 2, "several matches on screen");
        assert_eq!(
            hits,
            "clone".len() * shown,
            "every 'clone' on screen is highlighted"
        );
    }

    /// INFO blue, SUCCESS green, WARNING yellow, ERROR red, in both panes.
    #[test]
    fn levels_have_their_colours_in_both_panes() {
        let mut m = testkit::model(2);
        update(&mut m, crate::ui::update::Msg::Resize(140, 45));
        for (level, word) in [
            (Level::Info, "info-line"),
            (Level::Success, "success-line"),
            (Level::Warning, "warning-line"),
            (Level::Error, "error-line"),
        ] {
            testkit::ev(&mut m, 1, log(Some(0), level, word));
        }
        let theme = Theme::new(false);
        let expected = [
            ("INFO", "info-line", Color::Blue, Color::Reset),
            ("SUCCESS", "success-line", Color::Green, Color::Green),
            ("WARNING", "warning-line", Color::Yellow, Color::Yellow),
            ("ERROR", "error-line", Color::Red, Color::Red),
        ];
        for pane in [
            draw_all as fn(&mut Frame<'_>, Rect, &Model, &Theme),
            draw_selected,
        ] {
            let terminal = draw_pane(&m, &theme, 84, 8, pane);
            let buf = terminal.backend().buffer();
            for (label, word, label_fg, text_fg) in expected {
                let (x, y) = testkit::find(&terminal, word).unwrap_or_else(|| panic!("{word}"));
                assert_eq!(buf[(x, y)].fg, text_fg, "{word} text");
                let row = testkit::row_text(&terminal, y);
                let lx = row
                    .find(label)
                    .map(|b| row[..b].chars().count() as u16)
                    .expect(label);
                assert_eq!(buf[(lx, y)].fg, label_fg, "{label}");
            }
        }
    }
}
