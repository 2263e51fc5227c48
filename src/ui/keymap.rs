//! The one keymap table: which keys do what, where, and when it applies. `update` dispatches from
//! it, the footer shows the entries that apply now, and the help overlay lists them all.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_logger::TuiWidgetEvent;

use super::model::{Model, Overlay};
use super::state::StateKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    TogglePause,
    TogglePauseAll,
    Retry,
    Skip,
    RebootAndWait,
    Recreate,
    ConfirmVmYes,
    ToggleTimeline,
    Search,
    NextMatch,
    PrevMatch,
    /// Esc on the dashboard: close the search view, else follow the log tail again.
    Back,
    LogPageUp,
    LogPageDown,
    Export,
    /// Open the diagnostics pane.
    Diagnostics,
    Help,
    Quit,
    /// Ctrl-C: like quit; a second one forces the exit.
    Interrupt,
    HelpClose,
    HelpUp,
    HelpDown,
    ConfirmYes,
    ConfirmNo,
    ConfirmSwitch,
    ConfirmEnter,
    SearchSubmit,
    SearchCancel,
    SearchBackspace,
    SearchClearInput,
    /// Close the diagnostics pane.
    DiagnosticsClose,
    /// Esc in the diagnostics pane: follow the newest records again, else close.
    DiagnosticsBack,
    /// Handed to tui-logger's widget state (target selection, level filters, paging).
    DiagnosticsKey(TuiWidgetEvent),
}

/// Which part of the screen has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Dashboard,
    Help,
    Confirm,
    ConfirmVm,
    SearchInput,
    Diagnostics,
}

impl Context {
    pub fn of(model: &Model) -> Self {
        match model.overlay {
            Overlay::None => Context::Dashboard,
            Overlay::Help => Context::Help,
            Overlay::ConfirmQuit { .. } => Context::Confirm,
            Overlay::ConfirmVm { .. } => Context::ConfirmVm,
            Overlay::SearchInput => Context::SearchInput,
            Overlay::Diagnostics => Context::Diagnostics,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Context::Dashboard => "Dashboard",
            Context::Help => "Help",
            Context::Confirm => "Quit confirmation",
            Context::ConfirmVm => "Reboot or recreate confirmation",
            Context::SearchInput => "Typing a search",
            Context::Diagnostics => "Diagnostics pane",
        }
    }
}

/// When an entry applies (the footer shows only those that do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    HasVms,
    /// The rollout still runs.
    Running,
    /// The selected VM can be paused or resumed.
    CanPause,
    CanRetry,
    CanSkip,
    /// The selected VM was cloned (it can be rebooted or recreated).
    CanRestart,
    SearchActive,
    /// The search view or a paged log is open.
    CanGoBack,
    /// The diagnostics pane shows its target list.
    TargetsShown,
}

impl When {
    pub fn holds(self, m: &Model) -> bool {
        let selected = m.selected_vm().map(|vm| vm.kind);
        let running = !m.is_over() && !m.aborting;
        match self {
            When::Always => true,
            When::HasVms => !m.vms.is_empty(),
            When::Running => running,
            When::CanPause => running && selected.is_some_and(can_pause),
            When::CanRetry => running && selected.is_some_and(can_retry),
            When::CanSkip => running && selected.is_some_and(can_skip),
            When::CanRestart => running && selected.is_some_and(can_restart),
            When::SearchActive => m.search.query.is_some(),
            When::CanGoBack => m.search.query.is_some() || m.log_page.is_some(),
            When::TargetsShown => !m.diagnostics.targets_hidden,
        }
    }

    /// For the help overlay.
    pub fn describe(self) -> &'static str {
        match self {
            // Reboot and recreate say why not when pressed on a VM they do not apply to.
            When::Always | When::HasVms | When::TargetsShown | When::CanRestart => "",
            When::Running => "while the rollout runs",
            When::CanPause => "a VM not yet settled",
            When::CanRetry => "a failed or stuck VM",
            When::CanSkip => "a VM not verified or skipped",
            When::SearchActive => "after a search",
            When::CanGoBack => "search view or paged log",
        }
    }
}

/// Pausable (or resumable): anything not settled.
pub fn can_pause(kind: StateKind) -> bool {
    !kind.is_settled()
}

/// Retry re-runs a failed VM, or one stuck in a phase (a hook-failed one: its hook).
pub fn can_retry(kind: StateKind) -> bool {
    matches!(kind, StateKind::Failed | StateKind::HookFailed) || kind.is_busy()
}

/// Reboot and recreate act on a VM that exists: one past cloning, not skipped.
pub fn can_restart(kind: StateKind) -> bool {
    !matches!(
        kind,
        StateKind::Queued | StateKind::Cloning | StateKind::Skipped | StateKind::Aborted
    )
}

pub fn can_skip(kind: StateKind) -> bool {
    !matches!(kind, StateKind::Verified | StateKind::Skipped)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn k(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}

const fn code(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

impl Key {
    /// Letters match case-sensitively (`p` is not `P`) whatever the terminal says about Shift.
    pub fn matches(&self, event: &KeyEvent) -> bool {
        let has_ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let has_alt = event.modifiers.contains(KeyModifiers::ALT);
        if has_ctrl != self.ctrl || has_alt {
            return false;
        }
        match (self.code, event.code) {
            (KeyCode::Char(a), KeyCode::Char(b)) if self.ctrl => a.eq_ignore_ascii_case(&b),
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub context: Context,
    pub keys: &'static [Key],
    /// How the keys are written in the footer and help.
    pub label: &'static str,
    pub action: Action,
    /// Footer word; empty = help only.
    pub footer: &'static str,
    pub description: &'static str,
    pub when: When,
}

impl Binding {
    /// The footer word, which for the toggles says what the key would do now.
    pub fn footer_word(&self, m: &Model) -> &'static str {
        match self.action {
            Action::TogglePause if m.selected_vm().is_some_and(|v| v.kind == StateKind::Paused) => {
                "resume"
            }
            Action::TogglePauseAll if m.paused_all => "resume all",
            _ => self.footer,
        }
    }
}

use Action as A;
use Context::{Confirm, ConfirmVm, Dashboard, Diagnostics, Help, SearchInput};
use TuiWidgetEvent as Tw;

macro_rules! bind {
    ($ctx:expr, [$($key:expr),+], $label:literal, $action:expr, $footer:literal, $desc:literal, $when:expr) => {
        Binding {
            context: $ctx,
            keys: &[$($key),+],
            label: $label,
            action: $action,
            footer: $footer,
            description: $desc,
            when: $when,
        }
    };
}

/// Order matters: the footer shows entries in this order, as many as fit.
#[rustfmt::skip]
pub const KEYMAP: &[Binding] = &[
    bind!(Dashboard, [code(KeyCode::Up), k('k')], "↑/k", A::Up, "", "select the VM above", When::HasVms),
    bind!(Dashboard, [code(KeyCode::Down), k('j')], "↓/j", A::Down, "", "select the VM below", When::HasVms),
    bind!(Dashboard, [code(KeyCode::Home), k('g')], "g/Home", A::Top, "", "select the first VM", When::HasVms),
    bind!(Dashboard, [code(KeyCode::End), k('G')], "G/End", A::Bottom, "", "select the last VM", When::HasVms),
    bind!(Dashboard, [k('p')], "p", A::TogglePause, "pause", "pause or resume the selected VM", When::CanPause),
    bind!(Dashboard, [k('P')], "P", A::TogglePauseAll, "pause all", "pause or resume the whole rollout", When::Running),
    bind!(Dashboard, [k('r')], "r", A::Retry, "retry", "retry the selected VM from the phase it failed in", When::CanRetry),
    bind!(Dashboard, [k('b')], "b", A::RebootAndWait, "", "reboot the VM, wait for it again (asks)", When::CanRestart),
    bind!(Dashboard, [k('R')], "R", A::Recreate, "", "destroy and re-clone, same name and id (asks)", When::CanRestart),
    bind!(Dashboard, [k('s')], "s", A::Skip, "skip", "skip the selected VM (reported as skipped)", When::CanSkip),
    bind!(Dashboard, [k('t')], "t", A::ToggleTimeline, "timeline", "switch between the grid and the phase timeline", When::Always),
    bind!(Dashboard, [k('/')], "/", A::Search, "search", "search the logs", When::Always),
    bind!(Dashboard, [k('n')], "n", A::NextMatch, "next", "next search match (newer)", When::SearchActive),
    bind!(Dashboard, [k('N')], "N", A::PrevMatch, "prev", "previous search match (older)", When::SearchActive),
    bind!(Dashboard, [code(KeyCode::Esc)], "Esc", A::Back, "back", "close the search view, or follow the log again", When::CanGoBack),
    bind!(Dashboard, [code(KeyCode::PageUp)], "PgUp", A::LogPageUp, "", "scroll the log back", When::Always),
    bind!(Dashboard, [code(KeyCode::PageDown)], "PgDn", A::LogPageDown, "", "scroll the log forward", When::Always),
    bind!(Dashboard, [k('e')], "e", A::Export, "export", "write the summary files now", When::Running),
    bind!(Dashboard, [k('d')], "d", A::Diagnostics, "diagnostics", "show the diagnostics pane: the tool's own tracing records (retries, HTTP calls)", When::Always),
    bind!(Dashboard, [k('?')], "?", A::Help, "help", "show all keys", When::Always),
    bind!(Dashboard, [k('q')], "q", A::Quit, "quit", "quit (asks first while VMs are in flight)", When::Always),
    bind!(Dashboard, [ctrl('c')], "Ctrl-C", A::Interrupt, "", "quit; press twice to force", When::Always),
    bind!(Help, [code(KeyCode::Esc), k('?'), k('q')], "Esc/?/q", A::HelpClose, "close", "close the help", When::Always),
    bind!(Help, [code(KeyCode::Up), k('k')], "↑/k", A::HelpUp, "", "scroll up", When::Always),
    bind!(Help, [code(KeyCode::Down), k('j')], "↓/j", A::HelpDown, "", "scroll down", When::Always),
    bind!(Help, [ctrl('c')], "Ctrl-C", A::Interrupt, "", "quit; press twice to force", When::Always),
    bind!(Confirm, [k('y')], "y", A::ConfirmYes, "abort and quit", "abort the rollout, write the summary, quit", When::Always),
    bind!(Confirm, [k('n'), code(KeyCode::Esc), k('q')], "n/Esc", A::ConfirmNo, "cancel", "keep going", When::Always),
    bind!(Confirm, [code(KeyCode::Tab), code(KeyCode::Left), code(KeyCode::Right)], "Tab/←/→", A::ConfirmSwitch, "", "move between the buttons", When::Always),
    bind!(Confirm, [code(KeyCode::Enter)], "Enter", A::ConfirmEnter, "", "press the focused button (Cancel by default)", When::Always),
    bind!(Confirm, [ctrl('c')], "Ctrl-C", A::Interrupt, "", "again: force the exit", When::Always),
    bind!(ConfirmVm, [k('y')], "y", A::ConfirmVmYes, "yes", "reboot (or recreate) the VM", When::Always),
    bind!(ConfirmVm, [k('n'), code(KeyCode::Esc), k('q')], "n/Esc", A::ConfirmNo, "cancel", "leave it as it is", When::Always),
    bind!(ConfirmVm, [ctrl('c')], "Ctrl-C", A::Interrupt, "", "quit; press twice to force", When::Always),
    bind!(SearchInput, [code(KeyCode::Enter)], "Enter", A::SearchSubmit, "search", "search for what you typed", When::Always),
    bind!(SearchInput, [code(KeyCode::Esc)], "Esc", A::SearchCancel, "cancel", "stop typing", When::Always),
    bind!(SearchInput, [code(KeyCode::Backspace)], "Backspace", A::SearchBackspace, "", "delete a character", When::Always),
    bind!(SearchInput, [ctrl('u')], "Ctrl-U", A::SearchClearInput, "", "clear what you typed", When::Always),
    bind!(SearchInput, [ctrl('c')], "Ctrl-C", A::Interrupt, "", "quit; press twice to force", When::Always),
    bind!(Diagnostics, [k('d'), k('q')], "d/q", A::DiagnosticsClose, "close", "close the diagnostics pane", When::Always),
    bind!(Diagnostics, [code(KeyCode::Up), k('k')], "↑/k", A::DiagnosticsKey(Tw::UpKey), "", "select the target above", When::TargetsShown),
    bind!(Diagnostics, [code(KeyCode::Down), k('j')], "↓/j", A::DiagnosticsKey(Tw::DownKey), "", "select the target below", When::TargetsShown),
    bind!(Diagnostics, [code(KeyCode::Right)], "→", A::DiagnosticsKey(Tw::RightKey), "show more", "show one level more of the selected target", When::TargetsShown),
    bind!(Diagnostics, [code(KeyCode::Left)], "←", A::DiagnosticsKey(Tw::LeftKey), "show less", "show one level less of the selected target", When::TargetsShown),
    bind!(Diagnostics, [k('+')], "+", A::DiagnosticsKey(Tw::PlusKey), "record more", "record one level more of the selected target", When::TargetsShown),
    bind!(Diagnostics, [k('-')], "-", A::DiagnosticsKey(Tw::MinusKey), "record less", "record one level less of the selected target", When::TargetsShown),
    bind!(Diagnostics, [k('f')], "f", A::DiagnosticsKey(Tw::FocusKey), "focus", "show only the selected target's records, or all again", When::TargetsShown),
    bind!(Diagnostics, [k(' ')], "Space", A::DiagnosticsKey(Tw::SpaceKey), "", "hide or show the targets switched off", When::TargetsShown),
    bind!(Diagnostics, [k('h')], "h", A::DiagnosticsKey(Tw::HideKey), "targets", "hide or show the target list", When::Always),
    bind!(Diagnostics, [code(KeyCode::PageUp)], "PgUp", A::DiagnosticsKey(Tw::PrevPageKey), "", "scroll the records back", When::Always),
    bind!(Diagnostics, [code(KeyCode::PageDown)], "PgDn", A::DiagnosticsKey(Tw::NextPageKey), "", "scroll the records forward", When::Always),
    bind!(Diagnostics, [code(KeyCode::Esc)], "Esc", A::DiagnosticsBack, "", "follow the newest records again, or close", When::Always),
    bind!(Diagnostics, [ctrl('c')], "Ctrl-C", A::Interrupt, "", "quit; press twice to force", When::Always),
];

/// The action bound to `key` in `context`, if any.
pub fn action_for(context: Context, key: &KeyEvent) -> Option<Action> {
    KEYMAP
        .iter()
        .filter(|b| b.context == context)
        .find(|b| b.keys.iter().any(|k| k.matches(key)))
        .map(|b| b.action)
}

/// The entries of `context` that apply now and have a footer word.
pub fn footer_entries(model: &Model) -> impl Iterator<Item = &'static Binding> + '_ {
    let context = Context::of(model);
    KEYMAP
        .iter()
        .filter(move |b| b.context == context && !b.footer.is_empty() && b.when.holds(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(c, m)
    }

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        for (i, a) in KEYMAP.iter().enumerate() {
            for b in &KEYMAP[i + 1..] {
                if a.context == b.context {
                    for ka in a.keys {
                        assert!(!b.keys.contains(ka), "{ka:?} twice in {:?}", a.context);
                    }
                }
            }
        }
    }

    #[test]
    fn shifted_letters_are_their_own_keys() {
        let p = key(KeyCode::Char('p'), KeyModifiers::NONE);
        let big_p = key(KeyCode::Char('P'), KeyModifiers::SHIFT);
        assert_eq!(action_for(Dashboard, &p), Some(A::TogglePause));
        assert_eq!(action_for(Dashboard, &big_p), Some(A::TogglePauseAll));
        let ctrl_c = key(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Dashboard, &ctrl_c), Some(A::Interrupt));
        assert_eq!(
            action_for(Dashboard, &key(KeyCode::Char('c'), KeyModifiers::NONE)),
            None
        );
        let alt_p = key(KeyCode::Char('p'), KeyModifiers::ALT);
        assert_eq!(action_for(Dashboard, &alt_p), None);
    }

    #[test]
    fn the_same_key_means_different_things_per_context() {
        let esc = key(KeyCode::Esc, KeyModifiers::NONE);
        assert_eq!(action_for(Dashboard, &esc), Some(A::Back));
        assert_eq!(action_for(Help, &esc), Some(A::HelpClose));
        assert_eq!(action_for(Confirm, &esc), Some(A::ConfirmNo));
        assert_eq!(action_for(SearchInput, &esc), Some(A::SearchCancel));
        let q = key(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(
            action_for(Confirm, &q),
            Some(A::ConfirmNo),
            "q twice never quits"
        );
    }

    #[test]
    fn every_context_can_interrupt_and_has_a_description() {
        for ctx in [Dashboard, Help, Confirm, SearchInput, Diagnostics] {
            let ctrl_c = key(KeyCode::Char('c'), KeyModifiers::CONTROL);
            assert_eq!(action_for(ctx, &ctrl_c), Some(A::Interrupt), "{ctx:?}");
        }
        assert!(
            KEYMAP
                .iter()
                .all(|b| !b.description.is_empty() && !b.label.is_empty())
        );
    }
}
