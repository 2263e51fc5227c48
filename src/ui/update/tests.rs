//! `update()` without a terminal: every key, every engine event, the quit flow.

use std::time::Duration;

use crossterm::event::{KeyCode, MouseEventKind};

use super::*;
use crate::engine::event::{Level, Phase, Progress, VmState};
use crate::ui::layout::ViewMode;
use crate::ui::model::Overlay;
use crate::ui::state::StateKind;
use crate::ui::testkit::{
    active, click, code, ctrl, ev, key, log, mid_rollout, model, mouse, paths, state, summary, t,
};

fn commands(r: &UpdateResult) -> &[Command] {
    &r.commands
}

fn press(m: &mut Model, keys: &str) -> Vec<UpdateResult> {
    keys.chars().map(|c| update(m, key(c))).collect()
}

// ---- selection -------------------------------------------------------------------------------

#[test]
fn j_k_and_arrows_move_the_selection_within_bounds() {
    let mut m = model(3);
    assert_eq!(m.selected, 0);
    assert!(update(&mut m, key('k')).dirty);
    assert_eq!(m.selected, 0, "stops at the top");
    update(&mut m, key('j'));
    update(&mut m, code(KeyCode::Down));
    assert_eq!(m.selected, 2);
    update(&mut m, key('j'));
    assert_eq!(m.selected, 2, "stops at the bottom");
    update(&mut m, code(KeyCode::Up));
    assert_eq!(m.selected, 1);
    update(&mut m, key('g'));
    assert_eq!(m.selected, 0);
    update(&mut m, key('G'));
    assert_eq!(m.selected, 2);
    update(&mut m, code(KeyCode::Home));
    assert_eq!(m.selected, 0);
    update(&mut m, code(KeyCode::End));
    assert_eq!(m.selected, 2);
}

#[test]
fn the_grid_scrolls_to_keep_the_selection_visible() {
    let mut m = model(100);
    let rows = m.visible_rows();
    assert!(rows > 5 && rows < 100);
    update(&mut m, key('G'));
    assert_eq!(m.offset, 100 - rows);
    assert!(m.visible_range().contains(&99));
    update(&mut m, key('g'));
    assert_eq!(m.offset, 0);
    for _ in 0..rows {
        update(&mut m, key('j'));
    }
    assert_eq!(m.offset, 1, "one row past the bottom scrolls by one");
}

#[test]
fn keys_without_vms_do_nothing_harmful() {
    let mut m = Model::new("pve-rollout", t(0));
    for c in "jkgGprst".chars() {
        let r = update(&mut m, key(c));
        assert!(r.commands.is_empty(), "{c}");
    }
    assert_eq!(m.selected, 0);
}

#[test]
fn an_unbound_key_is_not_a_redraw() {
    let mut m = model(2);
    assert!(!update(&mut m, key('z')).dirty);
    m.flash = Some("note".into());
    assert!(update(&mut m, key('z')).dirty, "clearing the flash redraws");
    assert_eq!(m.flash, None);
}

/// No dead entries in the keymap: each key of each binding, pressed where it applies, changes
/// what is on screen (or sends a command, or quits).
#[test]
fn every_binding_does_something_where_it_applies() {
    use crate::ui::keymap::{Context, KEYMAP, action_for};
    for binding in KEYMAP {
        for k in binding.keys {
            let mut m = mid_rollout();
            m.select(2); // busy: pause, retry and skip apply
            m.size = (140, 45);
            match binding.context {
                Context::Dashboard => {
                    // a search with several matches, a paged log: n, N and Esc have work to do
                    press(&mut m, "/clone");
                    update(&mut m, code(KeyCode::Enter));
                    if binding.action == crate::ui::keymap::Action::Back {
                        update(&mut m, code(KeyCode::PageUp));
                    }
                    if matches!(
                        binding.action,
                        crate::ui::keymap::Action::Up | crate::ui::keymap::Action::Top
                    ) {
                        m.select(5);
                    }
                }
                Context::Help => {
                    update(&mut m, key('?'));
                    update(&mut m, key('j'));
                }
                Context::Confirm => {
                    update(&mut m, key('q'));
                }
                Context::ConfirmVm => {
                    m.overlay = Overlay::ConfirmVm {
                        action: crate::ui::model::VmAction::Reboot,
                        vm: 2,
                    };
                }
                Context::SearchInput => {
                    press(&mut m, "/ab");
                }
                Context::Diagnostics => {
                    update(&mut m, key('d'));
                }
            }
            m.flash = None;
            let event = crossterm::event::KeyEvent::new(
                k.code,
                if k.ctrl {
                    crossterm::event::KeyModifiers::CONTROL
                } else {
                    crossterm::event::KeyModifiers::NONE
                },
            );
            assert_eq!(action_for(binding.context, &event), Some(binding.action));
            let before = (
                m.selected,
                m.offset,
                m.view,
                m.overlay,
                m.search.clone().query,
                m.search.current,
                m.search.scroll,
                m.search.input.clone(),
                m.help_scroll,
                m.log_page,
            );
            let r = update(&mut m, Msg::Key(event));
            let after = (
                m.selected,
                m.offset,
                m.view,
                m.overlay,
                m.search.clone().query,
                m.search.current,
                m.search.scroll,
                m.search.input.clone(),
                m.help_scroll,
                m.log_page,
            );
            let effect = before != after
                || !r.commands.is_empty()
                || r.quit.is_some()
                || m.flash.is_some()
                || !r.diagnostics.is_empty();
            assert!(
                effect && r.dirty,
                "{:?} {:?} in {:?} did nothing",
                k.code,
                binding.action,
                binding.context
            );
        }
    }
}

// ---- pause, retry, skip ----------------------------------------------------------------------

#[test]
fn p_pauses_a_busy_vm_and_resumes_a_paused_one() {
    let mut m = model(2);
    ev(&mut m, 1, state(0, active(Phase::Booting), 1));
    let r = update(&mut m, key('p'));
    assert_eq!(commands(&r), [Command::Pause(0)]);
    assert!(m.flash.as_deref().unwrap().contains("pause requested"));
    // the model waits for the engine to say so
    assert_eq!(m.vms[0].kind, StateKind::Booting);
    ev(
        &mut m,
        2,
        state(
            0,
            VmState::Paused {
                phase: Phase::Booting,
            },
            2,
        ),
    );
    assert_eq!(commands(&update(&mut m, key('p'))), [Command::Resume(0)]);
}

#[test]
fn p_on_a_queued_vm_holds_it_and_on_a_settled_vm_explains() {
    let mut m = model(2);
    assert_eq!(commands(&update(&mut m, key('p'))), [Command::Pause(0)]);
    ev(&mut m, 1, state(0, active(Phase::Verified), 1));
    let r = update(&mut m, key('p'));
    assert!(r.commands.is_empty());
    assert_eq!(
        m.flash.as_deref(),
        Some("ubuntu-opentofu-1 is verified: nothing to pause")
    );
}

#[test]
fn shift_p_toggles_pause_all() {
    let mut m = model(2);
    assert_eq!(commands(&update(&mut m, key('P'))), [Command::PauseAll]);
    assert!(m.paused_all);
    assert_eq!(commands(&update(&mut m, key('P'))), [Command::ResumeAll]);
    assert!(!m.paused_all);
}

#[test]
fn pause_keys_do_nothing_once_the_rollout_is_over() {
    let mut m = model(1);
    ev(
        &mut m,
        1,
        Event::Finished {
            summary: summary(&["verified"]),
        },
    );
    for c in "pPrs".chars() {
        let r = update(&mut m, key(c));
        assert!(r.commands.is_empty(), "{c}");
        assert_eq!(m.flash.as_deref(), Some("the rollout is over"), "{c}");
    }
    assert!(!m.paused_all);
}

#[test]
fn r_retries_failed_or_stuck_vms_only() {
    let mut m = model(3);
    ev(
        &mut m,
        1,
        state(
            0,
            VmState::Failed {
                phase: Phase::Cloning,
                reason: "x".into(),
            },
            1,
        ),
    );
    ev(&mut m, 1, state(1, active(Phase::AwaitingAgent), 1));
    ev(&mut m, 1, state(2, active(Phase::Verified), 1));
    assert_eq!(commands(&update(&mut m, key('r'))), [Command::Retry(0)]);
    m.select(1);
    assert_eq!(commands(&update(&mut m, key('r'))), [Command::Retry(1)]);
    m.select(2);
    assert!(update(&mut m, key('r')).commands.is_empty());
    assert!(
        m.flash
            .as_deref()
            .unwrap()
            .starts_with("retry applies to a failed or stuck VM")
    );
}

#[test]
fn s_skips_anything_not_verified_or_skipped() {
    let mut m = model(3);
    ev(&mut m, 1, state(1, active(Phase::Verified), 1));
    ev(
        &mut m,
        1,
        state(
            2,
            VmState::Skipped {
                phase: Phase::Queued,
            },
            1,
        ),
    );
    assert_eq!(commands(&update(&mut m, key('s'))), [Command::Skip(0)]);
    for vm in [1, 2] {
        m.select(vm);
        assert!(update(&mut m, key('s')).commands.is_empty(), "vm {vm}");
    }
}

// ---- views, search, export, help --------------------------------------------------------------

#[test]
fn t_toggles_the_timeline() {
    let mut m = model(2);
    update(&mut m, key('t'));
    assert_eq!(m.view, ViewMode::Timeline);
    update(&mut m, key('t'));
    assert_eq!(m.view, ViewMode::Grid);
}

#[test]
fn slash_types_a_query_and_enter_finds_the_matches_newest_first() {
    let mut m = mid_rollout();
    update(&mut m, key('/'));
    assert_eq!(m.overlay, Overlay::SearchInput);
    press(&mut m, "CLONEx");
    update(&mut m, code(KeyCode::Backspace));
    assert_eq!(m.search.input, "CLONE");
    // typed letters are text, not commands
    assert!(!m.paused_all && m.view == ViewMode::Grid);
    update(&mut m, code(KeyCode::Enter));
    assert_eq!(m.overlay, Overlay::None);
    assert_eq!(m.search.query.as_deref(), Some("CLONE"));
    let expected: Vec<u64> = m
        .logs
        .lines()
        .iter()
        .filter(|l| l.text.to_lowercase().contains("clone"))
        .map(|l| l.seq)
        .collect();
    assert_eq!(
        m.search.matches.iter().copied().collect::<Vec<_>>(),
        expected
    );
    assert!(expected.len() >= 3);
    assert_eq!(m.search.current, expected.len() - 1, "starts at the newest");
    update(&mut m, key('n'));
    assert_eq!(m.search.current, 0, "n wraps to the oldest");
    update(&mut m, key('N'));
    assert_eq!(m.search.current, expected.len() - 1, "N wraps back");
    update(&mut m, key('N'));
    assert_eq!(m.search.current, expected.len() - 2);
    update(&mut m, code(KeyCode::Esc));
    assert_eq!(m.search.query, None, "Esc closes the search view");
}

#[test]
fn new_lines_that_match_join_the_search() {
    let mut m = model(1);
    ev(&mut m, 1, log(Some(0), Level::Info, "agent ping 1"));
    press(&mut m, "/ping");
    update(&mut m, code(KeyCode::Enter));
    assert_eq!(m.search.matches.len(), 1);
    ev(&mut m, 2, log(Some(0), Level::Info, "no match here"));
    ev(&mut m, 3, log(None, Level::Warning, "PING lost"));
    assert_eq!(m.search.matches.len(), 2);
}

#[test]
fn search_input_can_be_cleared_or_cancelled() {
    let mut m = model(1);
    press(&mut m, "/abc");
    update(&mut m, ctrl('u'));
    assert_eq!(m.search.input, "");
    press(&mut m, "x");
    update(&mut m, code(KeyCode::Esc));
    assert_eq!((m.overlay, m.search.query.clone()), (Overlay::None, None));
    press(&mut m, "/");
    update(&mut m, code(KeyCode::Enter));
    assert_eq!(m.search.query, None, "an empty query is no search");
}

#[test]
fn n_without_a_search_says_how() {
    let mut m = model(1);
    update(&mut m, key('n'));
    assert_eq!(m.flash.as_deref(), Some("no search yet: press / first"));
    press(&mut m, "/nothing");
    update(&mut m, code(KeyCode::Enter));
    assert_eq!(m.flash.as_deref(), Some("no match for 'nothing' (yet)"));
    update(&mut m, key('N'));
    assert_eq!(m.flash.as_deref(), Some("no match"));
}

#[test]
fn page_keys_scroll_the_search_view_or_page_the_log() {
    let mut m = mid_rollout();
    update(&mut m, code(KeyCode::PageUp));
    assert!(m.log_page.is_some());
    update(&mut m, code(KeyCode::PageDown));
    update(&mut m, code(KeyCode::Esc));
    assert!(m.log_page.is_none(), "Esc follows the tail again");
    press(&mut m, "/clone");
    update(&mut m, code(KeyCode::Enter));
    update(&mut m, code(KeyCode::PageUp));
    assert!(m.search.scroll < 0);
    update(&mut m, key('n'));
    assert_eq!(m.search.scroll, 0, "a new match recentres");
}

#[test]
fn e_asks_the_engine_to_export_then_shows_the_paths() {
    let mut m = model(1);
    assert_eq!(commands(&update(&mut m, key('e'))), [Command::Export]);
    ev(&mut m, 1, Event::Exported { paths: paths() });
    assert_eq!(m.exported, paths());
    assert_eq!(
        m.flash.as_deref(),
        Some("summary written: /tmp/out/summary.json")
    );
    ev(
        &mut m,
        2,
        Event::Finished {
            summary: summary(&["verified"]),
        },
    );
    let r = update(&mut m, key('e'));
    assert!(
        r.commands.is_empty(),
        "the engine is done: it wrote the summary already"
    );
    assert_eq!(
        m.flash.as_deref(),
        Some("summary written: /tmp/out/summary.json")
    );
}

#[test]
fn question_mark_opens_help_and_esc_or_q_closes_it() {
    let mut m = model(1);
    update(&mut m, key('?'));
    assert_eq!(m.overlay, Overlay::Help);
    update(&mut m, key('j'));
    update(&mut m, key('j'));
    update(&mut m, key('k'));
    assert_eq!(m.help_scroll, 1);
    assert_eq!(m.selected, 0, "keys scroll the help, not the grid");
    update(&mut m, code(KeyCode::Esc));
    assert_eq!(m.overlay, Overlay::None);
    update(&mut m, key('?'));
    let r = update(&mut m, key('q'));
    assert_eq!(
        (m.overlay, r.quit),
        (Overlay::None, None),
        "q closes the help, does not quit"
    );
    update(&mut m, key('?'));
    update(&mut m, key('?'));
    assert_eq!(m.overlay, Overlay::None);
}

// ---- quitting -----------------------------------------------------------------------------------

#[test]
fn q_with_vms_in_flight_asks_and_cancel_is_the_default() {
    let mut m = mid_rollout();
    let r = update(&mut m, key('q'));
    assert_eq!((r.quit, r.commands.len()), (None, 0));
    assert_eq!(
        m.overlay,
        Overlay::ConfirmQuit {
            abort_focused: false
        }
    );
    let r = update(&mut m, code(KeyCode::Enter));
    assert_eq!(
        (r.quit, r.commands.len(), m.overlay),
        (None, 0, Overlay::None),
        "Enter = Cancel"
    );
    for cancel in [key('n'), code(KeyCode::Esc), key('q')] {
        update(&mut m, key('q'));
        let r = update(&mut m, cancel.clone());
        assert_eq!(
            (r.quit, r.commands.len(), m.overlay),
            (None, 0, Overlay::None),
            "{cancel:?}"
        );
    }
    assert!(!m.aborting);
}

#[test]
fn y_aborts_then_the_ui_waits_for_finished() {
    let mut m = mid_rollout();
    update(&mut m, key('q'));
    let r = update(&mut m, key('y'));
    assert_eq!((commands(&r), r.quit), (&[Command::Abort][..], None));
    assert!(m.aborting);
    // events still arrive and show while the engine winds down
    let r = ev(&mut m, 200, state(2, active(Phase::Verified), 200));
    assert_eq!(r.quit, None);
    let r = update(&mut m, key('q'));
    assert_eq!((r.quit, r.commands.len()), (None, 0), "no second Abort");
    let r = ev(
        &mut m,
        201,
        Event::Finished {
            summary: summary(&["verified"]),
        },
    );
    assert_eq!(r.quit, Some(Quit::Normal));
}

#[test]
fn tab_then_enter_also_aborts() {
    let mut m = mid_rollout();
    update(&mut m, key('q'));
    update(&mut m, code(KeyCode::Tab));
    assert_eq!(
        m.overlay,
        Overlay::ConfirmQuit {
            abort_focused: true
        }
    );
    update(&mut m, code(KeyCode::Left));
    update(&mut m, code(KeyCode::Right));
    assert_eq!(
        commands(&update(&mut m, code(KeyCode::Enter))),
        [Command::Abort]
    );
}

#[test]
fn q_once_finished_quits_at_once_and_the_screen_stays_until_then() {
    let mut m = model(1);
    ev(&mut m, 5, state(0, active(Phase::Verified), 5));
    let r = ev(
        &mut m,
        6,
        Event::Finished {
            summary: summary(&["verified"]),
        },
    );
    assert_eq!(r.quit, None, "a finished rollout stays on screen");
    assert_eq!(m.outcome.as_deref(), Some("1 verified"));
    let r = update(&mut m, key('q'));
    assert_eq!((r.quit, r.commands.len()), (Some(Quit::Normal), 0));
}

#[test]
fn q_with_everything_settled_but_no_finish_yet_aborts_without_asking() {
    let mut m = model(1);
    ev(&mut m, 5, state(0, active(Phase::Verified), 5));
    let r = update(&mut m, key('q'));
    assert_eq!(
        (commands(&r), m.overlay),
        (&[Command::Abort][..], Overlay::None)
    );
    assert_eq!(r.quit, None);
    let r = update(&mut m, Msg::EngineGone);
    assert_eq!(
        r.quit,
        Some(Quit::Normal),
        "the engine ended: nothing more to wait for"
    );
}

#[test]
fn double_ctrl_c_forces_the_exit_and_aborts_once() {
    let mut m = mid_rollout();
    let r = update(&mut m, ctrl('c'));
    assert_eq!((r.quit, r.commands.len()), (None, 0));
    assert_eq!(
        m.overlay,
        Overlay::ConfirmQuit {
            abort_focused: false
        }
    );
    assert!(
        m.flash
            .as_deref()
            .unwrap()
            .contains("Ctrl-C again forces the exit")
    );
    let r = update(&mut m, ctrl('c'));
    assert_eq!(
        (commands(&r), r.quit),
        (&[Command::Abort][..], Some(Quit::Forced))
    );
}

#[test]
fn ctrl_c_while_aborting_forces_without_a_second_abort() {
    let mut m = mid_rollout();
    update(&mut m, key('q'));
    update(&mut m, key('y'));
    update(&mut m, ctrl('c'));
    let r = update(&mut m, ctrl('c'));
    assert_eq!((r.commands.len(), r.quit), (0, Some(Quit::Forced)));
}

#[test]
fn cancelling_re_arms_ctrl_c() {
    let mut m = mid_rollout();
    update(&mut m, ctrl('c'));
    update(&mut m, key('n'));
    let r = update(&mut m, ctrl('c'));
    assert_eq!(r.quit, None, "one press after a cancel only asks again");
    assert!(matches!(m.overlay, Overlay::ConfirmQuit { .. }));
}

#[test]
fn ctrl_c_closes_help_and_search_input_first() {
    for opener in [key('?'), key('/')] {
        let mut m = mid_rollout();
        update(&mut m, opener);
        update(&mut m, ctrl('c'));
        assert!(matches!(m.overlay, Overlay::ConfirmQuit { .. }));
    }
    let mut m = model(1);
    ev(
        &mut m,
        1,
        Event::Finished {
            summary: summary(&["queued"]),
        },
    );
    update(&mut m, key('?'));
    assert_eq!(update(&mut m, ctrl('c')).quit, Some(Quit::Normal));
}

#[test]
fn a_signal_aborts_gracefully_and_a_second_forces() {
    let mut m = mid_rollout();
    let r = update(&mut m, Msg::Terminate);
    assert_eq!((commands(&r), r.quit), (&[Command::Abort][..], None));
    assert!(m.aborting && m.overlay == Overlay::None, "no confirmation");
    // A second signal before the engine's summary forces the exit, without a second Abort.
    let r = update(&mut m, Msg::Terminate);
    assert_eq!((r.commands.len(), r.quit), (0, Some(Quit::Forced)));
}

#[test]
fn after_a_signal_the_engines_summary_ends_the_ui_normally() {
    let mut m = mid_rollout();
    update(&mut m, Msg::Terminate);
    let r = update(
        &mut m,
        Msg::Engine(Event::Finished {
            summary: summary(&["aborted", "verified"]),
        }),
    );
    assert_eq!(r.quit, Some(Quit::Normal));
}

#[test]
fn a_signal_after_a_ctrl_c_forces() {
    let mut m = mid_rollout();
    update(&mut m, ctrl('c'));
    let r = update(&mut m, Msg::Terminate);
    assert_eq!(r.quit, Some(Quit::Forced));
}

#[test]
fn an_engine_that_vanishes_lets_q_quit_at_once() {
    let mut m = mid_rollout();
    update(&mut m, Msg::EngineGone);
    assert!(m.engine_gone);
    assert_eq!(update(&mut m, key('q')).quit, Some(Quit::Normal));
}

// ---- engine events ------------------------------------------------------------------------------

#[test]
fn planned_lays_out_the_grid() {
    let m = model(12);
    assert_eq!(m.vms.len(), 12);
    assert_eq!(
        (m.rollout.as_str(), m.cluster.as_str()),
        ("ubuntu-opentofu", "pve-lab")
    );
    assert_eq!(m.count(StateKind::Queued), 12);
    assert_eq!(m.name_width, "ubuntu-opentofu-12".len());
    assert_eq!(m.node_width, 4, "pve1..pve3, at least the header's width");
    assert_eq!(m.started, Some(t(0)));
    assert_eq!(m.vms[11].vmid_text, "112");
}

#[test]
fn vm_state_moves_the_counts_and_records_when() {
    let mut m = model(3);
    let r = ev(&mut m, 4, state(1, active(Phase::Cloning), 3));
    assert!(r.dirty);
    assert_eq!(
        (m.count(StateKind::Queued), m.count(StateKind::Cloning)),
        (2, 1)
    );
    assert_eq!(m.vms[1].since, t(3));
    assert_eq!(m.vms[1].entered[Phase::Cloning as usize], Some(t(3)));
    ev(
        &mut m,
        5,
        state(
            1,
            VmState::Failed {
                phase: Phase::Cloning,
                reason: "no\x1b[2Jspace".into(),
            },
            5,
        ),
    );
    assert_eq!(
        (m.count(StateKind::Cloning), m.count(StateKind::Failed)),
        (0, 1)
    );
    assert_eq!(
        m.vms[1].last_error.as_deref(),
        Some("no [2Jspace"),
        "escapes never reach the screen"
    );
    assert_eq!(m.unsettled(), 2);
    assert_eq!(m.in_flight(), 0);
}

#[test]
fn events_for_unknown_vms_are_ignored() {
    let mut m = model(1);
    for event in [
        state(5, active(Phase::Booting), 1),
        Event::VmIp {
            vm: 5,
            ip: "10.0.0.1".into(),
            candidates: vec![],
        },
        Event::VmGuest {
            vm: 5,
            uname: Some("x".into()),
            os: None,
        },
        Event::TaskLog {
            vm: 5,
            lines: vec!["x".into()],
        },
        Event::Attempt { vm: 5, attempt: 2 },
        log(Some(5), Level::Error, "about a VM we never planned"),
    ] {
        update(&mut m, Msg::Engine(event));
    }
    assert_eq!(m.count(StateKind::Queued), 1);
    assert_eq!(m.logs.lines()[0].vm, None, "logged as a rollout line");
}

#[test]
fn log_lines_feed_the_buffer_the_vm_tail_and_the_last_error() {
    let mut m = model(2);
    ev(&mut m, 65, log(Some(1), Level::Warning, "agent\nnot ready"));
    ev(&mut m, 66, log(Some(1), Level::Error, "agent timeout"));
    ev(&mut m, 67, log(None, Level::Success, "all good"));
    assert_eq!(m.logs.len(), 3);
    let tail: Vec<&str> = m.vms[1].log.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(tail, ["agent not ready", "agent timeout"]);
    assert_eq!(m.vms[1].log[0].elapsed, Duration::from_secs(65));
    assert_eq!(m.vms[1].last_error.as_deref(), Some("agent timeout"));
    assert!(m.vms[0].log.is_empty());
}

#[test]
fn the_nics_besides_net0_are_kept_for_the_detail() {
    let mut m = model(1);
    let nic = |name: &str, vlan| crate::report::NicSummary {
        name: name.into(),
        bridge: "vmbr2".into(),
        vlan,
        reported: vec!["10.0.20.20".into()],
        ..Default::default()
    };
    ev(
        &mut m,
        1,
        Event::VmNics {
            vm: 0,
            nics: vec![nic("net0", None), nic("net1", Some(20))],
        },
    );
    assert_eq!(
        m.vms[0].nics,
        [(
            "net1".to_string(),
            "on vmbr2 VLAN 20: 10.0.20.20".to_string()
        )]
    );
}

#[test]
fn ip_guest_task_log_attempts_and_progress_are_kept() {
    let mut m = model(1);
    ev(
        &mut m,
        1,
        Event::VmIp {
            vm: 0,
            ip: "10.0.0.5".into(),
            candidates: vec!["10.0.0.5".into(), "172.17.0.1".into()],
        },
    );
    ev(
        &mut m,
        1,
        Event::VmGuest {
            vm: 0,
            uname: Some("Linux a".into()),
            os: None,
        },
    );
    ev(
        &mut m,
        1,
        Event::VmGuest {
            vm: 0,
            uname: None,
            os: Some("Ubuntu".into()),
        },
    );
    let many: Vec<String> = (0..80).map(|i| format!("line {i}")).collect();
    ev(&mut m, 1, Event::TaskLog { vm: 0, lines: many });
    ev(&mut m, 1, Event::Attempt { vm: 0, attempt: 3 });
    let vm = &m.vms[0];
    assert_eq!(
        (vm.ip.as_deref(), vm.candidates.len()),
        (Some("10.0.0.5"), 2)
    );
    assert_eq!(
        (vm.uname.as_deref(), vm.os.as_deref()),
        (Some("Linux a"), Some("Ubuntu"))
    );
    assert_eq!(vm.task_log.len(), crate::ui::model::TASK_LOG_CAPACITY);
    assert_eq!(vm.task_log.back().map(String::as_str), Some("line 79"));
    assert_eq!(vm.attempts_text, "3");
    let p = Progress {
        total: 1,
        requests: 7,
        ..Progress::default()
    };
    assert!(ev(&mut m, 1, Event::Progress(p)).dirty);
    assert!(
        !ev(&mut m, 2, Event::Progress(p)).dirty,
        "same numbers, no redraw"
    );
    assert_eq!(m.requests, 7);
}

#[test]
fn the_outcome_counts_the_grid_when_the_summary_lists_no_vms() {
    let mut m = model(3);
    ev(&mut m, 1, state(0, active(Phase::Verified), 1));
    ev(
        &mut m,
        1,
        state(
            1,
            VmState::Skipped {
                phase: Phase::Queued,
            },
            1,
        ),
    );
    ev(
        &mut m,
        2,
        Event::Finished {
            summary: summary(&[]),
        },
    );
    assert_eq!(
        m.outcome.as_deref(),
        Some("1 verified, 1 skipped, 1 unfinished")
    );
}

#[test]
fn finished_freezes_the_clock_and_stops_the_ticks() {
    let mut m = model(2);
    ev(&mut m, 10, state(0, active(Phase::Booting), 10));
    assert!(m.tick_interval().is_some());
    ev(
        &mut m,
        30,
        Event::Finished {
            summary: summary(&["verified", "failed"]),
        },
    );
    assert_eq!(m.outcome.as_deref(), Some("1 verified, 1 failed"));
    m.now = t(500);
    assert_eq!(m.elapsed(), Duration::from_secs(30));
    assert_eq!(m.tick_interval(), None);
    assert!(!update(&mut m, Msg::Tick(t(501))).dirty, "idle once over");
}

// ---- time ---------------------------------------------------------------------------------------

#[test]
fn ticks_only_while_something_moves_fast_only_for_visible_spinners() {
    let mut m = model(100);
    assert_eq!(
        m.tick_interval(),
        Some(Duration::from_secs(1)),
        "queued VMs: the elapsed timer"
    );
    ev(&mut m, 1, state(0, active(Phase::Cloning), 1));
    assert_eq!(
        m.tick_interval(),
        Some(Duration::from_millis(100)),
        "a spinner on screen"
    );
    update(&mut m, key('G'));
    assert_eq!(
        m.tick_interval(),
        Some(Duration::from_secs(1)),
        "the busy VM is scrolled away"
    );
    update(&mut m, key('g'));
    update(&mut m, key('t'));
    assert_eq!(
        m.tick_interval(),
        Some(Duration::from_secs(1)),
        "the timeline has no spinner"
    );
    let r = update(&mut m, Msg::Tick(t(9)));
    assert!(r.dirty);
    assert_eq!(m.now, t(9));
    let mut idle = Model::new("pve-rollout", t(0));
    assert_eq!(
        idle.tick_interval(),
        None,
        "nothing planned, nothing to animate"
    );
    assert!(!update(&mut idle, Msg::Tick(t(1))).dirty);
}

// ---- mouse and resize ---------------------------------------------------------------------------

#[test]
fn a_click_on_a_row_selects_that_vm() {
    let mut m = model(10);
    let areas = crate::ui::layout::compute(140, 45, ViewMode::Grid).unwrap();
    let rows = crate::ui::layout::list_rows(&areas);
    assert!(update(&mut m, click(rows.x + 5, rows.y + 4)).dirty);
    assert_eq!(m.selected, 4);
    assert!(
        !update(&mut m, click(rows.x + 5, rows.y + 20)).dirty,
        "below the last VM"
    );
    assert!(
        !update(&mut m, click(areas.detail.x + 2, rows.y + 1)).dirty,
        "not a row"
    );
    assert_eq!(m.selected, 4);
    update(&mut m, key('t'));
    let timeline = crate::ui::layout::list_rows(
        &crate::ui::layout::compute(140, 45, ViewMode::Timeline).unwrap(),
    );
    update(&mut m, click(timeline.x + 50, timeline.y + 7));
    assert_eq!(m.selected, 7, "rows are clickable in the timeline too");
}

#[test]
fn the_wheel_scrolls_the_grid_or_the_log() {
    let mut m = model(100);
    let areas = crate::ui::layout::compute(140, 45, ViewMode::Grid).unwrap();
    update(
        &mut m,
        mouse(
            MouseEventKind::ScrollDown,
            areas.list.x + 3,
            areas.list.y + 3,
        ),
    );
    update(
        &mut m,
        mouse(
            MouseEventKind::ScrollDown,
            areas.list.x + 3,
            areas.list.y + 3,
        ),
    );
    assert_eq!(
        (m.offset, m.selected),
        (6, 0),
        "scrolls without moving the selection"
    );
    update(
        &mut m,
        mouse(MouseEventKind::ScrollUp, areas.list.x + 3, areas.list.y + 3),
    );
    assert_eq!(m.offset, 3);
    for _ in 0..100 {
        update(
            &mut m,
            mouse(
                MouseEventKind::ScrollDown,
                areas.list.x + 3,
                areas.list.y + 3,
            ),
        );
    }
    assert_eq!(m.offset, 100 - m.visible_rows(), "never past the end");
    for i in 0..40 {
        ev(
            &mut m,
            1,
            log(
                None,
                crate::engine::event::Level::Info,
                &format!("line {i}"),
            ),
        );
    }
    update(
        &mut m,
        mouse(
            MouseEventKind::ScrollUp,
            areas.logs_all.x + 3,
            areas.logs_all.y + 3,
        ),
    );
    assert!(m.log_page.is_some());
    let mut s = mid_rollout();
    press(&mut s, "/clone");
    update(&mut s, code(KeyCode::Enter));
    update(
        &mut s,
        mouse(
            MouseEventKind::ScrollUp,
            areas.logs_all.x + 3,
            areas.logs_all.y + 3,
        ),
    );
    assert_eq!(s.search.scroll, -3);
}

#[test]
fn the_mouse_leaves_the_confirmation_alone() {
    let mut m = mid_rollout();
    update(&mut m, key('q'));
    let before = m.selected;
    let rows =
        crate::ui::layout::list_rows(&crate::ui::layout::compute(140, 45, ViewMode::Grid).unwrap());
    assert!(!update(&mut m, click(rows.x, rows.y)).dirty);
    assert_eq!(m.selected, before);
}

#[test]
fn resize_keeps_the_selection_on_screen() {
    let mut m = model(100);
    update(&mut m, key('G'));
    update(&mut m, Msg::Resize(80, 24));
    assert_eq!(m.size, (80, 24));
    assert!(m.visible_range().contains(&99));
    assert!(
        update(&mut m, Msg::Resize(40, 10)).dirty,
        "too small still redraws (to say so)"
    );
}

// ---- purity ----------------------------------------------------------------------------------

/// A burst of engine log lines lands in the model that received it and nowhere else: two models
/// fed at once on two threads each hold (and draw) exactly their own lines.
#[test]
fn a_burst_of_log_lines_stays_in_its_own_model() {
    use crate::engine::event::Level;
    const BURST: usize = 3000;
    let feed = |name: &'static str| {
        std::thread::spawn(move || {
            let mut m = model(4);
            for i in 0..BURST {
                let vm = (i % 5 < 4).then_some(i % 5);
                let level = [Level::Info, Level::Success, Level::Warning, Level::Error][i % 4];
                ev(&mut m, 1, log(vm, level, &format!("{name}-{i}")));
            }
            m
        })
    };
    let (a, b) = (feed("alpha"), feed("bravo"));
    let (a, b) = (a.join().expect("alpha"), b.join().expect("bravo"));
    let theme = crate::ui::theme::Theme::new(false);
    for (m, own, other) in [(&a, "alpha-", "bravo-"), (&b, "bravo-", "alpha-")] {
        assert_eq!(m.logs.len(), BURST);
        assert!(m.logs.lines().iter().all(|l| l.text.starts_with(own)));
        let seqs: Vec<u64> = m.logs.lines().iter().map(|l| l.seq).collect();
        assert_eq!(
            seqs,
            (0..BURST as u64).collect::<Vec<_>>(),
            "every line, in order"
        );
        assert_eq!(m.vms[0].log.len(), crate::ui::logs::VM_LOG_CAPACITY);
        let screen = crate::ui::testkit::render(m, &theme, 140, 45);
        let last = format!("{own}{}", BURST - 1);
        assert!(
            crate::ui::testkit::find(&screen, &last).is_some(),
            "{last} on screen"
        );
        assert!(
            crate::ui::testkit::find(&screen, other).is_none(),
            "no {other} line"
        );
    }
}

#[test]
fn reboot_and_recreate_ask_first_then_send_their_command() {
    use crate::ui::model::VmAction;
    let mut m = mid_rollout();
    // The retried VM (selected) waits for its agent: past cloning.
    let vm = m.selected;
    let r = update(&mut m, key('b'));
    assert!(r.commands.is_empty(), "nothing before the answer");
    assert_eq!(
        m.overlay,
        Overlay::ConfirmVm {
            action: VmAction::Reboot,
            vm
        }
    );
    update(&mut m, key('n'));
    assert_eq!(m.overlay, Overlay::None, "cancelled");
    update(&mut m, key('R'));
    let r = update(&mut m, key('y'));
    assert_eq!(commands(&r), &[Command::Recreate(vm)][..]);
    update(&mut m, key('b'));
    let r = update(&mut m, key('y'));
    assert_eq!(commands(&r), &[Command::RebootAndWait(vm)][..]);
    // Not for a VM still queued.
    let queued = m
        .vms
        .iter()
        .position(|v| v.kind == StateKind::Queued)
        .expect("a queued VM");
    m.select(queued);
    let r = update(&mut m, key('R'));
    assert!(r.commands.is_empty() && m.overlay == Overlay::None);
    assert!(
        m.flash
            .as_deref()
            .is_some_and(|f| f.contains("past cloning"))
    );
}
