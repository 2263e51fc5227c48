//! "Abort and quit?" while VMs are in flight. Cancel has the focus by default.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::ui::layout;
use crate::ui::model::{Model, VmAction};
use crate::ui::state::StateKind;
use crate::ui::theme::Theme;

use super::panel;

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme, abort_focused: bool) {
    let rect = layout::centered(area, 62, 10);
    let (in_flight, queued) = (m.in_flight(), m.count(StateKind::Queued));
    let button = |label: &'static str, focused: bool| {
        let style = if focused {
            theme.selected()
        } else {
            Style::new()
        };
        Span::styled(
            if focused {
                format!("▸ {label} ◂")
            } else {
                format!("  {label}  ")
            },
            style,
        )
    };
    let text = vec![
        Line::from(format!(
            "{} in flight and {queued} queued.",
            vms_are(in_flight)
        )),
        Line::from("Quitting aborts the rollout: calls in flight finish,"),
        Line::from("then the summary is written."),
        Line::default(),
        Line::from(vec![
            button("Cancel", !abort_focused),
            Span::raw("      "),
            button("Abort and quit", abort_focused),
        ])
        .centered(),
        Line::default(),
        Line::from(Span::styled(
            "y abort and quit · n/Esc cancel · Tab moves · Ctrl-C forces",
            theme.dim(),
        ))
        .centered(),
    ];
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text)
            .block(panel(" Quit pve-rollout? ", theme))
            .wrap(Wrap { trim: false }),
        rect,
    );
}

fn vms_are(n: usize) -> String {
    if n == 1 {
        "1 VM is".into()
    } else {
        format!("{n} VMs are")
    }
}

/// "Reboot (or recreate) this VM?": both undo work, so they ask first.
pub fn draw_vm(
    frame: &mut Frame<'_>,
    area: Rect,
    m: &Model,
    theme: &Theme,
    action: VmAction,
    vm: usize,
) {
    let Some(row) = m.vms.get(vm) else { return };
    let rect = layout::centered(area, 62, 9);
    let (title, what) = match action {
        VmAction::Reboot => (
            " Reboot and wait? ",
            vec![
                format!("Stop {} (VMID {}), start it again,", row.name, row.vmid),
                "then wait for its agent, IP and checks anew.".to_string(),
            ],
        ),
        VmAction::Recreate => (
            " Recreate? ",
            vec![
                format!("Destroy {} (VMID {}) with its disks,", row.name, row.vmid),
                "then clone it again with the same name and id.".to_string(),
            ],
        ),
    };
    let mut text: Vec<Line<'_>> = what.into_iter().map(Line::from).collect();
    text.push(Line::default());
    text.push(Line::from(Span::styled("y yes · n/Esc cancel", theme.dim())).centered());
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text)
            .block(panel(title, theme))
            .wrap(Wrap { trim: false }),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;
    use ratatui::style::Modifier;

    use super::*;
    use crate::ui::testkit::{self, code, key, mid_rollout, render};
    use crate::ui::update::update;

    #[test]
    fn confirm_quit_80x24() {
        let mut m = mid_rollout();
        m.size = (80, 24);
        update(&mut m, key('q'));
        let terminal = render(&m, &Theme::new(false), 80, 24);
        insta::assert_snapshot!(terminal.backend());
        assert!(testkit::find(&terminal, "5 VMs are in flight and 1 queued.").is_some());
    }

    #[test]
    fn cancel_is_focused_until_tab() {
        let mut m = mid_rollout();
        update(&mut m, key('q'));
        let theme = Theme::new(true);
        let before = render(&m, &theme, 140, 45);
        let (x, y) = testkit::find(&before, "▸ Cancel ◂").expect("cancel focused");
        assert!(
            before.backend().buffer()[(x + 2, y)]
                .modifier
                .contains(Modifier::REVERSED)
        );
        update(&mut m, code(KeyCode::Tab));
        let after = render(&m, &theme, 140, 45);
        assert!(testkit::find(&after, "▸ Abort and quit ◂").is_some());
        assert!(testkit::find(&after, "▸ Cancel ◂").is_none());
    }
}
