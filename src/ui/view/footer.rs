//! One row: the feedback of the last action, then the keys that apply now (from the keymap),
//! as many as fit; `? help` and `q quit` always stay. While typing a search: the query.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::ui::keymap::{self, Action};
use crate::ui::model::{Model, Overlay};
use crate::ui::theme::Theme;

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let mut spans: Vec<Span<'_>> = Vec::new();
    if m.overlay == Overlay::SearchInput {
        spans.push(Span::styled(" /", theme.key()));
        spans.push(Span::raw(m.search.input.as_str()));
        spans.push(Span::styled(
            "█",
            theme.key().add_modifier(Modifier::SLOW_BLINK),
        ));
        spans.push(Span::raw("  "));
    } else if let Some(flash) = &m.flash {
        spans.push(Span::styled(format!(" ▸ {flash} "), theme.heading()));
        spans.push(Span::styled("│", theme.border()));
    }
    let used: usize = spans.iter().map(Span::width).sum();
    let mut keys: Vec<(&str, &str, Action)> = keymap::footer_entries(m)
        .map(|b| (b.label, b.footer_word(m), b.action))
        .collect();
    let width_of = |keys: &[(&str, &str, Action)]| -> usize {
        keys.iter()
            .map(|(k, w, _)| 1 + k.chars().count() + 1 + w.chars().count() + 1)
            .sum()
    };
    let keep = |a: Action| matches!(a, Action::Help | Action::Quit);
    while used + width_of(&keys) > usize::from(area.width) {
        match keys.iter().rposition(|(_, _, a)| !keep(*a)) {
            Some(i) => {
                keys.remove(i);
            }
            None => break,
        }
    }
    for (key, word, _) in keys {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(" "));
        spans.push(Span::raw(word));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::testkit::{self, key, mid_rollout, render_panel};
    use crate::ui::update::update;

    fn footer(m: &Model, w: u16) -> String {
        let terminal = render_panel(w, 1, |f, area| draw(f, area, m, &Theme::new(false)));
        testkit::row_text(&terminal, 0)
    }

    #[test]
    fn footers_follow_the_context() {
        let mut m = mid_rollout();
        insta::assert_snapshot!("footer_dashboard_140", footer(&m, 140));
        // the selected VM waits for its agent: pause, retry and skip apply
        assert!(footer(&m, 140).contains("p pause") && footer(&m, 140).contains("r retry"));
        m.select(0); // verified: nothing to pause, retry or skip
        let text = footer(&m, 140);
        assert!(
            !text.contains("p pause") && !text.contains("r retry") && !text.contains("s skip"),
            "{text}"
        );
        m.select(6); // paused: p resumes
        assert!(footer(&m, 140).contains("p resume"));
        update(&mut m, key('P'));
        m.flash = None;
        assert!(footer(&m, 140).contains("P resume all"));
        update(&mut m, key('?'));
        insta::assert_snapshot!("footer_help_80", footer(&m, 80));
    }

    #[test]
    fn narrow_footers_keep_help_and_quit() {
        let m = mid_rollout();
        let text = footer(&m, 60);
        assert!(text.contains("? help") && text.contains("q quit"), "{text}");
        assert!(text.contains("p pause"), "the first entries stay: {text}");
    }

    #[test]
    fn flash_and_search_input_come_first() {
        let mut m = mid_rollout();
        update(&mut m, key('e'));
        assert!(footer(&m, 140).starts_with(" ▸ export requested │ "));
        update(&mut m, key('/'));
        for c in "agent".chars() {
            update(&mut m, key(c));
        }
        let text = footer(&m, 140);
        assert!(text.starts_with(" /agent█"), "{text}");
        assert!(
            text.contains("Enter search") && text.contains("Esc cancel"),
            "{text}"
        );
    }
}
