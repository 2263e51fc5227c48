//! `update(&mut Model, Msg) -> UpdateResult`: every key, mouse action and engine event, with no
//! terminal and no channel inside. Commands for the engine and the wish to quit come back in the
//! result; the run loop sends and exits. Keys for the diagnostics pane come back in the result too:
//! the loop owns that pane's tui-logger state and hands them on.

use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use tui_logger::TuiWidgetEvent;

use crate::engine::event::{Command, Event};

use super::keymap::{self, Action, Context, can_pause, can_restart, can_retry, can_skip};
use super::layout::{self, ViewMode};
use super::logs::PaneShape;
use super::model::{Model, Overlay, VmAction};
use super::state::StateKind;

/// Longest VM name column; longer names are cut with `…`.
const MAX_NAME_WIDTH: usize = 24;
/// Longest node column.
const MAX_NODE_WIDTH: usize = 10;
/// Rows one mouse-wheel notch scrolls.
const WHEEL_ROWS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Engine(Event),
    /// The engine's event channel closed.
    EngineGone,
    /// Time passed (only scheduled while something animates).
    Tick(SystemTime),
    /// SIGTERM or SIGHUP (or the terminal's input ended): the first acts like a confirmed
    /// Ctrl-C (abort, write the outputs, then leave), a second forces the exit.
    Terminate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quit {
    /// The rollout finished (or was aborted and the engine confirmed).
    Normal,
    /// Double Ctrl-C or a second signal: out without waiting for the engine.
    Forced,
}

#[derive(Debug, Default, PartialEq)]
pub struct UpdateResult {
    /// The screen must be redrawn.
    pub dirty: bool,
    /// To send to the engine, in order.
    pub commands: Vec<Command>,
    pub quit: Option<Quit>,
    /// For the diagnostics pane's tui-logger state, in order.
    pub diagnostics: Vec<TuiWidgetEvent>,
}

pub fn update(m: &mut Model, msg: Msg) -> UpdateResult {
    let mut r = UpdateResult::default();
    match msg {
        Msg::Key(key) => on_key(m, key, &mut r),
        Msg::Mouse(mouse) => on_mouse(m, mouse, &mut r),
        Msg::Resize(w, h) => {
            m.size = (w, h);
            m.keep_selection_visible();
            r.dirty = true;
        }
        Msg::Engine(event) => engine::on_engine(m, event, &mut r),
        Msg::EngineGone => {
            m.engine_gone = true;
            if m.aborting {
                r.quit = Some(Quit::Normal);
            } else if !m.finished {
                m.flash = Some("the engine stopped without a summary; q quits".into());
            }
            r.dirty = true;
        }
        Msg::Tick(now) => {
            m.now = now;
            r.dirty = m.tick_interval().is_some();
        }
        Msg::Terminate => on_signal(m, &mut r),
    }
    r
}

/// Nobody may be at the keyboard (a systemd stop, a closed SSH session): no confirmation, the
/// rollout is aborted and its outputs written; the quit follows the engine's `Finished`.
fn on_signal(m: &mut Model, r: &mut UpdateResult) {
    r.dirty = true;
    if m.interrupts > 0 {
        force_quit(m, r);
        return;
    }
    m.interrupts = 1;
    if m.is_over() {
        r.quit = Some(Quit::Normal);
        return;
    }
    if !m.aborting {
        start_abort(m, r);
    }
    m.flash = Some(
        "signal received: aborting; calls in flight finish, then the summary is written · a \
         second signal or Ctrl-C forces the exit"
            .into(),
    );
}

fn on_key(m: &mut Model, key: KeyEvent, r: &mut UpdateResult) {
    r.dirty = m.flash.take().is_some();
    let context = Context::of(m);
    let Some(action) = keymap::action_for(context, &key) else {
        if context == Context::SearchInput
            && let KeyCode::Char(c) = key.code
            && !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            m.search.input.push(c);
            r.dirty = true;
        }
        return;
    };
    r.dirty = true;
    match action {
        Action::Up => m.select(m.selected.saturating_sub(1)),
        Action::Down => m.select(m.selected + 1),
        Action::Top => m.select(0),
        Action::Bottom => m.select(m.vms.len().saturating_sub(1)),
        Action::TogglePause => toggle_pause(m, r),
        Action::TogglePauseAll => toggle_pause_all(m, r),
        Action::Retry => on_selected(
            m,
            r,
            can_retry,
            Command::Retry,
            "retry",
            "a failed or stuck VM",
        ),
        Action::RebootAndWait => ask_vm_action(m, VmAction::Reboot),
        Action::Recreate => ask_vm_action(m, VmAction::Recreate),
        Action::ConfirmVmYes => {
            if let Overlay::ConfirmVm { action, vm } = m.overlay {
                m.overlay = Overlay::None;
                let name = m.vms.get(vm).map(|v| v.name.clone()).unwrap_or_default();
                let (command, verb) = match action {
                    VmAction::Reboot => (Command::RebootAndWait(vm), "reboot-and-wait"),
                    VmAction::Recreate => (Command::Recreate(vm), "recreate"),
                };
                r.commands.push(command);
                m.flash = Some(format!("{verb} requested: {name}"));
            }
        }
        Action::Skip => on_selected(
            m,
            r,
            can_skip,
            Command::Skip,
            "skip",
            "a VM not verified or skipped",
        ),
        Action::ToggleTimeline => {
            m.view = match m.view {
                ViewMode::Grid => ViewMode::Timeline,
                ViewMode::Timeline => ViewMode::Grid,
            };
            m.keep_selection_visible();
        }
        Action::Search => {
            m.search.input.clear();
            m.overlay = Overlay::SearchInput;
        }
        Action::NextMatch | Action::PrevMatch => step_match(m, action == Action::NextMatch),
        Action::Back => {
            if m.search.query.is_some() {
                m.search = Default::default();
            } else {
                m.log_page = None;
            }
        }
        Action::LogPageUp => page_logs(m, true),
        Action::LogPageDown => page_logs(m, false),
        Action::Export => {
            if running(m) {
                r.commands.push(Command::Export);
                m.flash = Some("export requested".into());
            } else {
                m.flash = Some(exported_note(m));
            }
        }
        Action::Diagnostics => m.overlay = Overlay::Diagnostics,
        Action::DiagnosticsClose => m.overlay = Overlay::None,
        Action::DiagnosticsBack if m.diagnostics.paged => {
            m.diagnostics.paged = false;
            r.diagnostics.push(TuiWidgetEvent::EscapeKey);
        }
        Action::DiagnosticsBack => m.overlay = Overlay::None,
        Action::DiagnosticsKey(event) => diagnostics_key(m, r, event),
        Action::Help => {
            m.help_scroll = 0;
            m.overlay = Overlay::Help;
        }
        Action::Quit => request_quit(m, r),
        Action::Interrupt => {
            if m.interrupts > 0 {
                force_quit(m, r);
                return;
            }
            m.interrupts = 1;
            m.overlay = Overlay::None;
            request_quit(m, r);
            if r.quit.is_none() {
                let note = m
                    .flash
                    .take()
                    .map(|f| format!("{f} · "))
                    .unwrap_or_default();
                m.flash = Some(format!("{note}Ctrl-C again forces the exit"));
            }
        }
        Action::HelpClose => m.overlay = Overlay::None,
        Action::HelpUp => m.help_scroll = m.help_scroll.saturating_sub(1),
        Action::HelpDown => m.help_scroll = m.help_scroll.saturating_add(1),
        Action::ConfirmYes => start_abort(m, r),
        Action::ConfirmNo => cancel_quit(m),
        Action::ConfirmSwitch => {
            if let Overlay::ConfirmQuit { abort_focused } = m.overlay {
                m.overlay = Overlay::ConfirmQuit {
                    abort_focused: !abort_focused,
                };
            }
        }
        Action::ConfirmEnter => match m.overlay {
            Overlay::ConfirmQuit {
                abort_focused: true,
            } => start_abort(m, r),
            _ => cancel_quit(m),
        },
        Action::SearchSubmit => submit_search(m),
        Action::SearchCancel => m.overlay = Overlay::None,
        Action::SearchBackspace => {
            m.search.input.pop();
        }
        Action::SearchClearInput => m.search.input.clear(),
    }
}

/// Neither finished nor aborting: commands still mean something.
fn running(m: &Model) -> bool {
    !m.is_over() && !m.aborting
}

fn not_running_note(m: &Model) -> String {
    if m.aborting {
        "the rollout is aborting".into()
    } else {
        "the rollout is over".into()
    }
}

fn toggle_pause(m: &mut Model, r: &mut UpdateResult) {
    let Some(vm) = m.selected_vm() else { return };
    let (index, name, kind) = (m.selected, vm.name.clone(), vm.kind);
    if !running(m) {
        m.flash = Some(not_running_note(m));
    } else if kind == StateKind::Paused {
        r.commands.push(Command::Resume(index));
        m.flash = Some(format!("resume requested: {name}"));
    } else if can_pause(kind) {
        r.commands.push(Command::Pause(index));
        m.flash = Some(format!(
            "pause requested: {name} (its call in flight finishes first)"
        ));
    } else {
        m.flash = Some(format!("{name} is {}: nothing to pause", kind.label()));
    }
}

fn toggle_pause_all(m: &mut Model, r: &mut UpdateResult) {
    if !running(m) {
        m.flash = Some(not_running_note(m));
        return;
    }
    m.paused_all = !m.paused_all;
    if m.paused_all {
        r.commands.push(Command::PauseAll);
        m.flash = Some("paused: no new clones or checks start; P resumes".into());
    } else {
        r.commands.push(Command::ResumeAll);
        m.flash = Some("resumed".into());
    }
}

/// Retry or skip the selected VM when `allowed`, else say why not.
fn on_selected(
    m: &mut Model,
    r: &mut UpdateResult,
    allowed: fn(StateKind) -> bool,
    command: fn(usize) -> Command,
    verb: &str,
    applies_to: &str,
) {
    let Some(vm) = m.selected_vm() else { return };
    let (name, kind) = (vm.name.clone(), vm.kind);
    m.flash = Some(if !running(m) {
        not_running_note(m)
    } else if allowed(kind) {
        r.commands.push(command(m.selected));
        format!("{verb} requested: {name}")
    } else {
        format!("{verb} applies to {applies_to}; {name} is {}", kind.label())
    });
}

/// Asks before a reboot or a recreate of the selected VM (both undo work).
fn ask_vm_action(m: &mut Model, action: VmAction) {
    let Some(vm) = m.selected_vm() else { return };
    let (name, kind) = (vm.name.clone(), vm.kind);
    if !running(m) {
        m.flash = Some(not_running_note(m));
    } else if can_restart(kind) {
        m.overlay = Overlay::ConfirmVm {
            action,
            vm: m.selected,
        };
    } else {
        m.flash = Some(format!(
            "reboot and recreate apply to a VM past cloning; {name} is {}",
            kind.label()
        ));
    }
}

fn step_match(m: &mut Model, newer: bool) {
    let len = m.search.matches.len();
    if m.search.query.is_none() {
        m.flash = Some("no search yet: press / first".into());
    } else if len == 0 {
        m.flash = Some("no match".into());
    } else {
        let s = &mut m.search;
        s.current = if newer {
            (s.current + 1) % len
        } else {
            (s.current + len - 1) % len
        };
        s.scroll = 0;
    }
}

fn page_logs(m: &mut Model, back: bool) {
    let Some(areas) = layout::compute(m.size.0, m.size.1, m.view) else {
        return;
    };
    let inner = layout::inner(areas.logs_all);
    if m.search.query.is_some() {
        let half = (areas.logs_all.height / 2).max(1) as isize;
        m.search.scroll += if back { -half } else { half };
        return;
    }
    let pane = PaneShape {
        width: inner.width.into(),
        height: usize::from(inner.height).max(1),
        name_width: Some(m.name_width),
    };
    if back {
        m.log_page = m.logs.page_up(m.log_page, pane).or(m.log_page);
    } else if let Some(bottom) = m.log_page {
        m.log_page = m.logs.page_down(bottom, pane);
    }
}

/// A key for tui-logger's widget state; the model mirrors what the view needs to know.
fn diagnostics_key(m: &mut Model, r: &mut UpdateResult, event: TuiWidgetEvent) {
    match event {
        TuiWidgetEvent::HideKey => m.diagnostics.targets_hidden ^= true,
        TuiWidgetEvent::PrevPageKey => m.diagnostics.paged = true,
        _ => {}
    }
    r.diagnostics.push(event);
}

fn submit_search(m: &mut Model) {
    m.overlay = Overlay::None;
    let query = m.search.input.trim().to_string();
    if query.is_empty() {
        m.search = Default::default();
        return;
    }
    let matches = m.logs.find(&query);
    if matches.is_empty() {
        m.flash = Some(format!("no match for '{query}' (yet)"));
    }
    m.search.current = matches.len().saturating_sub(1);
    m.search.matches = matches;
    m.search.scroll = 0;
    m.search.query = Some(query);
}

fn exported_note(m: &Model) -> String {
    match m.exported.first() {
        Some(path) => format!("summary written: {}", path.display()),
        None => not_running_note(m),
    }
}

/// `q`: out at once when nothing runs; ask while VMs are unsettled; otherwise abort (so the
/// engine writes the summary) and leave on `Finished`.
fn request_quit(m: &mut Model, r: &mut UpdateResult) {
    if m.is_over() {
        r.quit = Some(Quit::Normal);
    } else if m.aborting {
        m.flash = Some("aborting: waiting for the engine to write the summary".into());
    } else if m.unsettled() > 0 {
        m.overlay = Overlay::ConfirmQuit {
            abort_focused: false,
        };
    } else {
        start_abort(m, r);
    }
}

fn start_abort(m: &mut Model, r: &mut UpdateResult) {
    m.overlay = Overlay::None;
    m.aborting = true;
    m.paused_all = false;
    r.commands.push(Command::Abort);
    m.flash = Some("aborting: calls in flight finish, then the summary is written".into());
}

fn cancel_quit(m: &mut Model) {
    m.overlay = Overlay::None;
    m.interrupts = 0;
}

fn force_quit(m: &mut Model, r: &mut UpdateResult) {
    if !m.is_over() && !m.aborting {
        r.commands.push(Command::Abort);
    }
    r.quit = Some(Quit::Forced);
}

fn on_mouse(m: &mut Model, mouse: MouseEvent, r: &mut UpdateResult) {
    let Some(areas) = layout::compute(m.size.0, m.size.1, m.view) else {
        return;
    };
    let at = ratatui::layout::Position::new(mouse.column, mouse.row);
    let rows = layout::list_rows(&areas);
    match (m.overlay, mouse.kind) {
        (Overlay::Help, MouseEventKind::ScrollUp) => {
            m.help_scroll = m.help_scroll.saturating_sub(1);
            r.dirty = true;
        }
        (Overlay::Help, MouseEventKind::ScrollDown) => {
            m.help_scroll = m.help_scroll.saturating_add(1);
            r.dirty = true;
        }
        (Overlay::Diagnostics, MouseEventKind::ScrollUp | MouseEventKind::ScrollDown) => {
            let up = mouse.kind == MouseEventKind::ScrollUp;
            let page = if up {
                TuiWidgetEvent::PrevPageKey
            } else {
                TuiWidgetEvent::NextPageKey
            };
            diagnostics_key(m, r, page);
            r.dirty = true;
        }
        (Overlay::None, MouseEventKind::ScrollUp | MouseEventKind::ScrollDown) => {
            let up = mouse.kind == MouseEventKind::ScrollUp;
            if areas.list.contains(at) {
                m.offset = if up {
                    m.offset.saturating_sub(WHEEL_ROWS)
                } else {
                    m.offset + WHEEL_ROWS
                };
                m.clamp_offset();
                r.dirty = true;
            } else if areas.logs_all.contains(at) {
                if m.search.query.is_some() {
                    let step = WHEEL_ROWS as isize;
                    m.search.scroll += if up { -step } else { step };
                } else {
                    page_logs(m, up);
                }
                r.dirty = true;
            }
        }
        (Overlay::None, MouseEventKind::Down(MouseButton::Left)) if rows.contains(at) => {
            let index = m.offset + usize::from(mouse.row - rows.y);
            if index < m.vms.len() {
                m.selected = index;
                r.dirty = true;
            }
        }
        _ => {}
    }
}

mod engine;

#[cfg(test)]
mod tests;
