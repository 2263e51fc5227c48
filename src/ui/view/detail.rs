//! The selected VM: where it is and for how long, each phase's duration, IP candidates, OS,
//! last error, the tail of its Proxmox task log.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::engine::event::VmState;
use crate::ui::model::{Model, VmRow};
use crate::ui::state::StateKind;
use crate::ui::text;
use crate::ui::theme::{Theme, state_glyph};

use super::grid::spinner_frame;
use super::panel;

const LABEL_W: usize = 11;

pub fn draw(frame: &mut Frame<'_>, area: Rect, m: &Model, theme: &Theme) {
    let Some(vm) = m.selected_vm() else {
        frame.render_widget(
            Paragraph::new(Span::styled("no VM selected", theme.dim()))
                .block(panel(" Detail ", theme)),
            area,
        );
        return;
    };
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled(state_glyph(vm.kind), theme.state(vm.kind)),
        Span::raw(" "),
        Span::raw(vm.name.as_str()),
        Span::raw(" "),
    ]);
    frame.render_widget(
        Paragraph::new(lines(vm, m, theme))
            .block(panel(title, theme))
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn field<'a>(label: &'static str, value: impl Into<Span<'a>>, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{label:<LABEL_W$}"), theme.dim()),
        value.into(),
    ])
}

fn lines<'a>(vm: &'a VmRow, m: &Model, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = Vec::with_capacity(24);
    let attempt = if vm.attempts > 0 {
        format!(" · attempt {}", vm.attempts)
    } else {
        String::new()
    };
    out.push(Line::from(vec![Span::styled(
        format!("vmid {} · node {}{attempt}", vm.vmid, vm.node),
        theme.dim(),
    )]));
    let state_text = match &vm.state {
        VmState::Paused { phase } => format!("paused in {phase}"),
        VmState::Failed { phase, .. } => format!("failed in {phase}"),
        VmState::Skipped { phase } => format!("skipped in {phase}"),
        VmState::Aborted { phase } => format!("aborted in {phase}"),
        VmState::HookFailed { .. } => "hook-failed".to_string(),
        VmState::Active { phase } => phase.as_str().to_string(),
    };
    let mut state_line = vec![
        Span::styled(state_glyph(vm.kind), theme.state(vm.kind)),
        Span::raw(" "),
        Span::styled(state_text, theme.state(vm.kind)),
    ];
    if !vm.kind.is_settled() && vm.kind != StateKind::Queued {
        state_line.push(Span::raw(format!(
            " for {}",
            text::short(text::since(vm.since, m.now))
        )));
    }
    if let Some(copy) = &vm.copy {
        let eta = copy.left(m.now).map_or(String::new(), |left| {
            format!(", ~{} to go", text::short(left))
        });
        state_line.push(Span::raw(format!(" · {} copied{eta}", copy.percent_text())));
    }
    out.push(Line::from(state_line));
    if let Some(reported) = &vm.reported {
        out.push(Line::from(vec![
            Span::styled("agent reports ", theme.dim()),
            Span::raw(reported.as_str()),
        ]));
    }
    out.push(Line::default());

    let durations = vm.phase_durations(m.now);
    if !durations.is_empty() {
        out.push(Line::from(Span::styled("Phases", theme.heading())));
        for (phase, spent, current) in durations {
            let kind = StateKind::of_phase(phase);
            let (mark, mark_style) = match (current, vm.kind) {
                (true, k) if k.is_busy() => (state_glyph(kind), theme.state(kind)),
                (true, StateKind::Paused) => (
                    state_glyph(StateKind::Paused),
                    theme.state(StateKind::Paused),
                ),
                _ => ("✓", theme.dim()),
            };
            let failed_here = matches!(&vm.state, VmState::Failed { phase: p, .. } if *p == phase);
            let (mark, mark_style) = if failed_here {
                (
                    state_glyph(StateKind::Failed),
                    theme.state(StateKind::Failed),
                )
            } else {
                (mark, mark_style)
            };
            let mut spans = vec![
                Span::raw("  "),
                Span::styled(mark, mark_style),
                Span::raw(" "),
                Span::styled(format!("{:<15}", phase.as_str()), theme.state(kind)),
                Span::raw(format!("{:>7}", text::precise(spent))),
            ];
            if current && vm.kind.is_busy() {
                spans.push(Span::raw(" "));
                spans.push(Span::styled(spinner_frame(m.now), theme.state(kind)));
            }
            out.push(Line::from(spans));
        }
        if vm.kind == StateKind::Verified
            && let Some((start, _)) = vm.history.iter().find(|(_, k)| *k != StateKind::Queued)
        {
            out.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(format!("{:<17}", "total"), theme.heading()),
                Span::raw(format!(
                    "{:>7}",
                    text::precise(text::since(*start, vm.since))
                )),
            ]));
        }
        out.push(Line::default());
    }

    out.push(match &vm.ip {
        Some(ip) => field("IP", Span::styled(ip.as_str(), theme.heading()), theme),
        None => field("IP", Span::styled("not yet", theme.dim()), theme),
    });
    if vm.candidates.len() > 1 || vm.candidates.first() != vm.ip.as_ref() {
        out.push(field(
            "candidates",
            Span::raw(vm.candidates.join(", ")),
            theme,
        ));
    }
    for (name, described) in &vm.nics {
        out.push(Line::from(vec![
            Span::styled(format!("{name:<LABEL_W$}"), theme.dim()),
            Span::raw(described.as_str()),
        ]));
    }
    if let Some(os) = &vm.os {
        out.push(field("OS", Span::raw(os.as_str()), theme));
    }
    if let Some(uname) = &vm.uname {
        out.push(field("uname", Span::raw(uname.as_str()), theme));
    }
    if let Some(error) = &vm.last_error {
        out.push(field(
            "last error",
            Span::styled(error.as_str(), theme.error()),
            theme,
        ));
    }
    if !vm.task_log.is_empty() {
        out.push(Line::default());
        out.push(Line::from(Span::styled("Task log", theme.heading())));
        let skip = vm.task_log.len().saturating_sub(6);
        for line in vm.task_log.iter().skip(skip) {
            out.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(line.as_str(), Style::new()),
            ]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::testkit::{self, mid_rollout, render_panel};

    fn draw_detail(
        m: &Model,
        theme: &Theme,
        w: u16,
        h: u16,
    ) -> ratatui::Terminal<ratatui::backend::TestBackend> {
        render_panel(w, h, |f, area| draw(f, area, m, theme))
    }

    #[test]
    fn detail_of_a_retried_vm_56x24() {
        let terminal = draw_detail(&mid_rollout(), &Theme::new(false), 56, 24);
        insta::assert_snapshot!(terminal.backend());
    }

    #[test]
    fn detail_of_a_verified_vm_56x24() {
        let mut m = mid_rollout();
        m.select(0);
        let terminal = draw_detail(&m, &Theme::new(false), 56, 24);
        insta::assert_snapshot!(terminal.backend());
        assert!(testkit::find(&terminal, "10.20.0.11, fe80::be24:11ff:fe00:111").is_some());
        assert!(testkit::find(&terminal, "Ubuntu 24.04.1 LTS").is_some());
    }

    #[test]
    fn phase_durations_and_the_last_error_are_shown() {
        let m = mid_rollout();
        let theme = Theme::new(false);
        let terminal = draw_detail(&m, &theme, 56, 24);
        // cloning 92..120 then 125..140: 43 s; configuring 6 s; booting 14 s; awaiting-agent 32 s so far
        for (phase, spent) in [
            ("cloning", "43.0s"),
            ("configuring", "6.0s"),
            ("booting", "14.0s"),
            ("awaiting-agent", "32.0s"),
        ] {
            let text = format!("{phase:<15}{spent:>7}");
            assert!(testkit::find(&terminal, &text).is_some(), "{text}");
        }
        let (x, y) = testkit::find(&terminal, "clone failed after 3 tries").expect("last error");
        assert_eq!(
            terminal.backend().buffer()[(x, y)].fg,
            ratatui::style::Color::Red
        );
    }

    #[test]
    fn the_other_nics_are_listed_under_the_ip() {
        let mut m = mid_rollout();
        m.select(0);
        m.vms[0].nics = vec![("net1".into(), "on vmbr2 VLAN 20: 10.0.20.20".into())];
        let terminal = draw_detail(&m, &Theme::new(false), 56, 24);
        assert!(
            testkit::find(&terminal, "net1       on vmbr2 VLAN 20: 10.0.20.20").is_some(),
            "{:?}",
            terminal.backend()
        );
    }

    #[test]
    fn a_paused_vm_says_where_it_holds() {
        let mut m = mid_rollout();
        m.select(6);
        let terminal = draw_detail(&m, &Theme::new(false), 56, 24);
        assert!(testkit::find(&terminal, "paused in cloning").is_some());
    }
}
