//! The log panes: all VMs (tui-logger; or the search view over our own buffer while a search is
//! open) and the selected VM (its own tail). All three lay lines out with `logs::layout_line`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tui_logger::TuiLoggerWidget;

use crate::ui::layout;
use crate::ui::logs::{LineParts, layout_line};
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
    let title = if m.log_paged {
        " Log · all VMs · paged: PgUp/PgDn, Esc follows "
    } else {
        " Log · all VMs "
    };
    // Records reach tui-logger's buffer through its hot buffer; move them now so this frame
    // shows every line received so far (and tests see theirs without a background thread).
    tui_logger::move_events();
    frame.render_widget(
        TuiLoggerWidget::default()
            .block(panel(title, theme))
            .formatter(m.logs.formatter(*theme, m.name_width))
            .state(&m.logs.widget_state),
        area,
    );
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
    let height = usize::from(inner.height);
    if height == 0 {
        return;
    }
    // Newest at the bottom: lay out lines from the end until the pane is full.
    let mut screen: Vec<Line<'static>> = Vec::with_capacity(height);
    for line in vm.log.iter().rev() {
        let stamp = text::elapsed_stamp(line.elapsed);
        let laid = layout_line(
            theme,
            &LineParts::of(line, &stamp, None),
            inner.width.into(),
            None,
        );
        for l in laid.into_iter().rev() {
            screen.push(l);
        }
        if screen.len() >= height {
            break;
        }
    }
    screen.truncate(height);
    screen.reverse();
    if screen.is_empty() {
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

    #[test]
    fn parallel_models_never_see_each_others_lines() {
        let mut a = testkit::model(1);
        let mut b = testkit::model(1);
        testkit::ev(&mut a, 1, log(Some(0), Level::Info, "only-in-a"));
        testkit::ev(&mut b, 1, log(None, Level::Info, "only-in-b"));
        let theme = Theme::new(false);
        let ta = draw_pane(&a, &theme, 84, 8, draw_all);
        let tb = draw_pane(&b, &theme, 84, 8, draw_all);
        assert!(
            testkit::find(&ta, "only-in-a").is_some() && testkit::find(&ta, "only-in-b").is_none()
        );
        assert!(
            testkit::find(&tb, "only-in-b").is_some() && testkit::find(&tb, "only-in-a").is_none()
        );
    }
}
