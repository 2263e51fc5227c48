//! Everything the dashboard shows, and nothing about the terminal. `update` changes it, the views
//! read it. Time comes from `now`, which the run loop (or a test) sets: views never read a clock.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::engine::event::{Phase, PlannedVm, VmIndex, VmState};

use super::layout::{self, ViewMode};
use super::logs::{LogLine, LogStore, VM_LOG_CAPACITY};
use super::state::{StateKind, phase_of};
use super::text;

/// Task log lines kept per VM (the detail pane shows the tail).
pub const TASK_LOG_CAPACITY: usize = 50;

/// One grid row: what the engine told us about a VM, plus display strings cached when it changes.
#[derive(Debug, Clone)]
pub struct VmRow {
    pub name: String,
    pub vmid: u32,
    pub node: String,
    /// `vmid` as text, cached.
    pub vmid_text: String,
    pub state: VmState,
    pub kind: StateKind,
    /// When the current state began.
    pub since: SystemTime,
    /// When each phase was last entered (indexed by `Phase as usize`).
    pub entered: [Option<SystemTime>; Phase::ALL.len()],
    /// Every state change, oldest first: the timeline and the phase durations come from it.
    pub history: Vec<(SystemTime, StateKind)>,
    pub ip: Option<String>,
    pub candidates: Vec<String>,
    pub attempts: u32,
    /// `attempts` as text (empty while 0), cached.
    pub attempts_text: String,
    pub uname: Option<String>,
    pub os: Option<String>,
    pub last_error: Option<String>,
    pub task_log: VecDeque<String>,
    pub log: VecDeque<Arc<LogLine>>,
    /// While cloning: how far the copy got, from the task log the engine reads.
    pub copy: Option<CopyShown>,
    /// While the IP is awaited: the addresses the agent reports (none of them usable).
    pub reported: Option<String>,
    /// Once the IP is found, every NIC besides net0: its name (`net1`) and the rest of its
    /// description (bridge, VLAN, MAC, addresses reported and expected).
    pub nics: Vec<(String, String)>,
}

/// A clone's copy as last reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyShown {
    pub percent: f64,
    /// Wall seconds predicted to go when reported.
    pub eta_s: Option<f64>,
    /// When it was reported (the ETA counts down from there).
    pub at: SystemTime,
}

impl CopyShown {
    /// Whole percents copied ("42%"; a copy at 99.6 % is not called done).
    pub fn percent_text(&self) -> String {
        format!("{:.0}%", self.percent.floor())
    }

    /// The ETA counted down to `now`, once a rate is known.
    pub fn left(&self, now: SystemTime) -> Option<std::time::Duration> {
        let passed = text::since(self.at, now).as_secs_f64();
        self.eta_s
            .map(|eta| std::time::Duration::from_secs_f64((eta - passed).max(0.0).round()))
    }
}

impl VmRow {
    pub fn new(vm: &PlannedVm, at: SystemTime) -> Self {
        VmRow {
            name: text::clean(&vm.name),
            vmid: vm.vmid,
            node: text::clean(&vm.node),
            vmid_text: vm.vmid.to_string(),
            state: VmState::Active {
                phase: Phase::Queued,
            },
            kind: StateKind::Queued,
            since: at,
            entered: [None; Phase::ALL.len()],
            history: vec![(at, StateKind::Queued)],
            ip: None,
            candidates: Vec::new(),
            attempts: 0,
            attempts_text: String::new(),
            uname: None,
            os: None,
            last_error: None,
            task_log: VecDeque::new(),
            log: VecDeque::new(),
            copy: None,
            reported: None,
            nics: Vec::new(),
        }
    }

    pub fn set_state(&mut self, state: VmState, at: SystemTime) {
        let kind = StateKind::of(&state);
        if let VmState::Active { phase } = &state {
            self.entered[*phase as usize] = Some(at);
            if *phase != Phase::Queued && self.attempts == 0 {
                self.set_attempts(1);
            }
        }
        if let VmState::Failed { reason, .. } | VmState::HookFailed { reason } = &state {
            self.last_error = Some(text::clean(reason));
        }
        if state.phase() != Phase::Cloning {
            self.copy = None;
        }
        if state.phase() != Phase::AwaitingIp {
            self.reported = None;
        }
        if kind != self.kind || state != self.state {
            self.since = at;
            self.history.push((at, kind));
        }
        self.kind = kind;
        self.state = state;
    }

    pub fn set_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
        self.attempts_text = if attempts == 0 {
            String::new()
        } else {
            attempts.to_string()
        };
    }

    pub fn push_log(&mut self, line: Arc<LogLine>) {
        if self.log.len() == VM_LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Time spent in each phase the VM has been in (pauses count toward the phase they hold),
    /// in phase order; the current phase runs to `now`.
    pub fn phase_durations(&self, now: SystemTime) -> Vec<(Phase, Duration, bool)> {
        let mut spent: [Option<Duration>; Phase::ALL.len()] = [None; Phase::ALL.len()];
        let mut current = None;
        for (i, (at, kind)) in self.history.iter().enumerate() {
            let phase = match kind {
                StateKind::Paused => self.paused_phase_at(i),
                StateKind::Failed
                | StateKind::HookFailed
                | StateKind::Skipped
                | StateKind::Aborted
                | StateKind::Verified => None,
                StateKind::Queued => None,
                busy => Some(phase_of(*busy)),
            };
            let Some(phase) = phase else { continue };
            let end = match self.history.get(i + 1) {
                Some((next, _)) => *next,
                None => {
                    current = Some(phase);
                    now
                }
            };
            let slot = &mut spent[phase as usize];
            *slot = Some(slot.unwrap_or_default() + text::since(*at, end));
        }
        Phase::ALL
            .iter()
            .filter_map(|p| spent[*p as usize].map(|d| (*p, d, current == Some(*p))))
            .collect()
    }

    /// The phase a pause in `history[i]` holds: the last busy phase before it, or the state's own.
    fn paused_phase_at(&self, i: usize) -> Option<Phase> {
        if i + 1 == self.history.len()
            && let VmState::Paused { phase } = &self.state
        {
            return Some(*phase).filter(|p| *p != Phase::Queued);
        }
        self.history[..i]
            .iter()
            .rev()
            .find(|(_, k)| k.is_busy())
            .map(|(_, k)| phase_of(*k))
    }

    /// The state at time `t` (for the timeline): `None` before the VM was planned.
    pub fn kind_at(&self, t: SystemTime) -> Option<StateKind> {
        let idx = self.history.partition_point(|(at, _)| *at <= t);
        idx.checked_sub(1).map(|i| self.history[i].1)
    }
}

/// What sits on top of the dashboard and takes the keys.
/// What the operator may do to one VM beyond retry and skip; each asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// Stop it, start it, and check it again.
    Reboot,
    /// Destroy it and clone it again with the same name and id.
    Recreate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// "Abort and quit?"; Cancel has the focus unless `abort_focused`.
    ConfirmQuit {
        abort_focused: bool,
    },
    /// "Reboot (or recreate) this VM?"
    ConfirmVm {
        action: VmAction,
        vm: usize,
    },
    /// Typing a search query.
    SearchInput,
    /// The diagnostics pane (the process's `tracing` records) over the grid and the logs.
    Diagnostics,
}

/// What the model knows of the diagnostics pane. Its records and level filters live with
/// tui-logger, in a widget state the run loop owns; `update` only asks for changes to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiagnosticsView {
    /// The target list (with its level filters) is hidden.
    pub targets_hidden: bool,
    /// Paged back (not following the newest record).
    pub paged: bool,
}

/// Search over our own log buffer.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// The query being typed (while `Overlay::SearchInput`).
    pub input: String,
    /// The committed query; while set, the all-VMs pane shows the search view.
    pub query: Option<String>,
    /// Seqs of matching lines, oldest first.
    pub matches: VecDeque<u64>,
    /// Index into `matches` of the current one.
    pub current: usize,
    /// Extra lines scrolled away from the current match (PgUp/PgDn, wheel).
    pub scroll: isize,
}

impl Search {
    pub fn current_seq(&self) -> Option<u64> {
        self.matches.get(self.current).copied()
    }
}

pub struct Model {
    /// Shown first in the header (e.g. `pve-rollout`).
    pub title: String,
    pub rollout: String,
    pub cluster: String,
    /// The clock, set by the run loop (or a test) before each update.
    pub now: SystemTime,
    /// When the plan arrived.
    pub started: Option<SystemTime>,
    /// When `Finished` arrived (freezes the elapsed time).
    pub finished_at: Option<SystemTime>,
    pub vms: Vec<VmRow>,
    /// Width of the VM name column (longest name, capped).
    pub name_width: usize,
    /// Width of the node column (longest node name, capped).
    pub node_width: usize,
    /// VMs per [`StateKind`], kept up to date on each change.
    pub counts: [usize; StateKind::COUNT],
    /// API requests so far, from the engine's `Progress`.
    pub requests: u64,
    /// Wall seconds to the rollout's end as the engine last predicted, once it can.
    pub eta_s: Option<u64>,
    pub paused_all: bool,
    pub selected: usize,
    /// First VM row shown in the grid and the timeline.
    pub offset: usize,
    pub view: ViewMode,
    pub overlay: Overlay,
    pub help_scroll: u16,
    pub search: Search,
    pub logs: LogStore,
    /// Seq of the all-VMs pane's bottom line while paged back; `None` follows the tail.
    pub log_page: Option<u64>,
    pub diagnostics: DiagnosticsView,
    pub finished: bool,
    /// "3 verified, 1 failed" from the final summary.
    pub outcome: Option<String>,
    /// The event channel closed without `Finished`.
    pub engine_gone: bool,
    /// Abort sent; waiting for `Finished` to exit.
    pub aborting: bool,
    /// Ctrl-C presses not yet cancelled (the second one forces the exit).
    pub interrupts: u8,
    /// Summary files the engine wrote last.
    pub exported: Vec<PathBuf>,
    /// One-line feedback in the footer until the next key.
    pub flash: Option<String>,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
}

impl Model {
    pub fn new(title: impl Into<String>, now: SystemTime) -> Self {
        Model {
            title: title.into(),
            rollout: String::new(),
            cluster: String::new(),
            now,
            started: None,
            finished_at: None,
            vms: Vec::new(),
            name_width: 8,
            node_width: 4,
            counts: [0; StateKind::COUNT],
            requests: 0,
            eta_s: None,
            paused_all: false,
            selected: 0,
            offset: 0,
            view: ViewMode::Grid,
            overlay: Overlay::None,
            help_scroll: 0,
            search: Search::default(),
            logs: LogStore::new(),
            log_page: None,
            diagnostics: DiagnosticsView::default(),
            finished: false,
            outcome: None,
            engine_gone: false,
            aborting: false,
            interrupts: 0,
            exported: Vec::new(),
            flash: None,
            size: (120, 40),
        }
    }

    pub fn count(&self, kind: StateKind) -> usize {
        self.counts[kind.index()]
    }

    /// VMs not yet verified, failed or skipped.
    pub fn unsettled(&self) -> usize {
        self.vms.len()
            - self.count(StateKind::Verified)
            - self.count(StateKind::Failed)
            - self.count(StateKind::HookFailed)
            - self.count(StateKind::Skipped)
            - self.count(StateKind::Aborted)
    }

    /// VMs started and not settled (busy or paused).
    pub fn in_flight(&self) -> usize {
        self.unsettled() - self.count(StateKind::Queued)
    }

    /// The engine will send nothing more that matters: `q` quits at once.
    pub fn is_over(&self) -> bool {
        self.finished || self.engine_gone
    }

    pub fn selected_vm(&self) -> Option<&VmRow> {
        self.vms.get(self.selected)
    }

    /// Since the plan arrived, frozen at the finish.
    pub fn elapsed(&self) -> Duration {
        match self.started {
            Some(start) => text::since(start, self.finished_at.unwrap_or(self.now)),
            None => Duration::ZERO,
        }
    }

    /// Rows of VMs the grid (or timeline) shows at the current size.
    pub fn visible_rows(&self) -> usize {
        layout::compute(self.size.0, self.size.1, self.view)
            .map(|a| usize::from(layout::list_rows(&a).height))
            .unwrap_or(0)
    }

    /// Range of VM indices on screen.
    pub fn visible_range(&self) -> std::ops::Range<usize> {
        let start = self.offset.min(self.vms.len());
        start..(start + self.visible_rows()).min(self.vms.len())
    }

    /// How often to wake up with nothing else happening: 100 ms while a spinner is on screen,
    /// 1 s while VMs are in flight (timers), never once the rollout is over or idle.
    pub fn tick_interval(&self) -> Option<Duration> {
        if self.is_over() || self.unsettled() == 0 {
            return None;
        }
        let spinner_visible = self.view == ViewMode::Grid
            && self.overlay != Overlay::Diagnostics
            && self.vms[self.visible_range()]
                .iter()
                .any(|vm| vm.kind.is_busy());
        Some(if spinner_visible {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        })
    }

    /// Select VM `index` (clamped) and scroll it into view.
    pub fn select(&mut self, index: usize) {
        if self.vms.is_empty() {
            return;
        }
        self.selected = index.min(self.vms.len() - 1);
        self.keep_selection_visible();
    }

    pub fn keep_selection_visible(&mut self) {
        let rows = self.visible_rows().max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + rows {
            self.offset = self.selected + 1 - rows;
        }
        self.clamp_offset();
    }

    /// Never scroll past the last row.
    pub fn clamp_offset(&mut self) {
        let rows = self.visible_rows().max(1);
        self.offset = self.offset.min(self.vms.len().saturating_sub(rows));
    }

    /// Move VM `vm` to `state`, keeping the counts right.
    pub fn set_vm_state(&mut self, vm: VmIndex, state: VmState, at: SystemTime) {
        let Some(row) = self.vms.get_mut(vm) else {
            return;
        };
        self.counts[row.kind.index()] -= 1;
        row.set_state(state, at);
        self.counts[row.kind.index()] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn planned() -> PlannedVm {
        PlannedVm {
            index: 0,
            name: "web-1".into(),
            vmid: 101,
            node: "pve1".into(),
            ..Default::default()
        }
    }

    fn active(phase: Phase) -> VmState {
        VmState::Active { phase }
    }

    #[test]
    fn phase_durations_add_up_across_pauses_and_retries() {
        let mut vm = VmRow::new(&planned(), t(0));
        vm.set_state(active(Phase::Cloning), t(10));
        vm.set_state(
            VmState::Paused {
                phase: Phase::Cloning,
            },
            t(15),
        );
        vm.set_state(active(Phase::Cloning), t(20));
        vm.set_state(active(Phase::Booting), t(30));
        vm.set_state(
            VmState::Failed {
                phase: Phase::Booting,
                reason: "boot\ntimeout".into(),
            },
            t(40),
        );
        vm.set_state(active(Phase::Booting), t(50));
        let d = vm.phase_durations(t(53));
        assert_eq!(
            d,
            [
                (Phase::Cloning, Duration::from_secs(20), false),
                (Phase::Booting, Duration::from_secs(13), true),
            ]
        );
        assert_eq!(vm.last_error.as_deref(), Some("boot timeout"));
        assert_eq!(vm.entered[Phase::Booting as usize], Some(t(50)));
        assert_eq!(vm.attempts_text, "1");
    }

    #[test]
    fn the_state_at_a_time_comes_from_the_history() {
        let mut vm = VmRow::new(&planned(), t(0));
        vm.set_state(active(Phase::Cloning), t(10));
        vm.set_state(active(Phase::Verified), t(20));
        assert_eq!(vm.kind_at(t(0) - Duration::from_secs(1)), None);
        assert_eq!(vm.kind_at(t(5)), Some(StateKind::Queued));
        assert_eq!(vm.kind_at(t(10)), Some(StateKind::Cloning));
        assert_eq!(vm.kind_at(t(25)), Some(StateKind::Verified));
    }

    #[test]
    fn a_repeated_state_is_not_a_new_transition() {
        let mut vm = VmRow::new(&planned(), t(0));
        vm.set_state(active(Phase::Booting), t(10));
        vm.set_state(active(Phase::Booting), t(12));
        assert_eq!(vm.history.len(), 2);
        assert_eq!(vm.since, t(10));
    }
}
