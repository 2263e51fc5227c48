//! Where the engine's log lines go: our own ring buffer (for search and the selected-VM pane) and
//! tui-logger (for the all-VMs pane), laid out by one function so every pane reads the same.
//!
//! tui-logger is a process-global buffer with no SUCCESS level and no search (see
//! `reference/tui.md`). Each `Event::Log` becomes a `log::Record` pushed straight into it through
//! `tui_logger::Drain` (no global `log` logger needed) with the target `pvr<N>:vm-<name>`, or
//! `pvr<N>:vm-<name>:ok` for SUCCESS, which is logged at INFO and styled green by
//! [`PaneFormatter`]. `<N>` is unique per [`LogStore`], so tests running in parallel in one
//! process never see each other's lines: each pane's `TuiWidgetState` shows its own targets only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use log::LevelFilter;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use tui_logger::{ExtLogRecord, LogFormatter, TuiWidgetState};

use crate::engine::event::{Level, VmIndex};

use super::text;
use super::theme::{Theme, level_label};

/// Lines kept for search (and tui-logger's main buffer depth).
pub const LOG_CAPACITY: usize = 10_000;
/// Lines kept per VM for its own pane.
pub const VM_LOG_CAPACITY: usize = 200;
/// A single message never takes more than this many screen lines (long messages break paging,
/// tui-logger #85).
pub const MAX_LINES_PER_MESSAGE: usize = 4;

/// Shown in the VM column for lines about the rollout as a whole.
const ROLLOUT_WHO: &str = "—";

static NEXT_NAMESPACE: AtomicU64 = AtomicU64::new(1);
static INIT: Once = Once::new();

/// tui-logger's buffer depth must be set before the first line: setting it clears the buffer.
fn init_tui_logger_once() {
    INIT.call_once(|| tui_logger::set_buffer_depth(LOG_CAPACITY));
}

/// One engine log line, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Position in the stream; never reused.
    pub seq: u64,
    pub vm: Option<VmIndex>,
    pub level: Level,
    /// Since the rollout started (by the model's clock).
    pub elapsed: Duration,
    /// Sanitised text.
    pub text: String,
}

pub struct LogStore {
    /// `pvr<N>:`, the target prefix of this store's tui-logger records.
    prefix: String,
    lines: VecDeque<Arc<LogLine>>,
    /// Lines kept (the oldest go first).
    capacity: usize,
    next_seq: u64,
    /// Per VM: (plain target, success target).
    vm_targets: Vec<(String, String)>,
    rollout_targets: (String, String),
    /// The all-VMs pane's tui-logger state (shows this store's targets; paging lives here).
    pub widget_state: TuiWidgetState,
}

impl Default for LogStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStore {
    pub fn new() -> Self {
        Self::with_capacity(LOG_CAPACITY)
    }

    /// Keep at most `capacity` lines for search (tui-logger keeps its own [`LOG_CAPACITY`]).
    pub fn with_capacity(capacity: usize) -> Self {
        init_tui_logger_once();
        let prefix = format!("pvr{}:", NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed));
        let rollout_targets = (format!("{prefix}rollout"), format!("{prefix}rollout:ok"));
        let widget_state = TuiWidgetState::new()
            .set_default_display_level(LevelFilter::Off)
            .set_level_for_target(&rollout_targets.0, LevelFilter::Trace)
            .set_level_for_target(&rollout_targets.1, LevelFilter::Trace);
        LogStore {
            prefix,
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            vm_targets: Vec::new(),
            rollout_targets,
            widget_state,
        }
    }

    /// Give VM `index` (plan order) its targets; called once per planned VM.
    pub fn register_vm(&mut self, index: VmIndex, name: &str) {
        let targets = (
            format!("{}vm-{name}", self.prefix),
            format!("{}vm-{name}:ok", self.prefix),
        );
        let state = std::mem::take(&mut self.widget_state)
            .set_level_for_target(&targets.0, LevelFilter::Trace)
            .set_level_for_target(&targets.1, LevelFilter::Trace);
        self.widget_state = state;
        if index >= self.vm_targets.len() {
            self.vm_targets
                .resize(index + 1, (String::new(), String::new()));
        }
        self.vm_targets[index] = targets;
    }

    /// Record a line (text already sanitised). Returns it, and the seq of the line that fell off
    /// the end of the buffer, if one did.
    pub fn push(
        &mut self,
        vm: Option<VmIndex>,
        level: Level,
        elapsed: Duration,
        text: String,
    ) -> (Arc<LogLine>, Option<u64>) {
        let targets = vm
            .and_then(|i| self.vm_targets.get(i))
            .filter(|t| !t.0.is_empty())
            .unwrap_or(&self.rollout_targets);
        let (target, log_level) = match level {
            Level::Info => (&targets.0, log::Level::Info),
            Level::Success => (&targets.1, log::Level::Info),
            Level::Warning => (&targets.0, log::Level::Warn),
            Level::Error => (&targets.0, log::Level::Error),
        };
        tui_logger::Drain::new().log(
            &log::Record::builder()
                .args(format_args!("{} {}", text::elapsed_stamp(elapsed), text))
                .level(log_level)
                .target(target)
                .build(),
        );
        let line = Arc::new(LogLine {
            seq: self.next_seq,
            vm,
            level,
            elapsed,
            text,
        });
        self.next_seq += 1;
        self.lines.push_back(line.clone());
        let evicted = if self.lines.len() > self.capacity {
            self.lines.pop_front().map(|l| l.seq)
        } else {
            None
        };
        (line, evicted)
    }

    pub fn lines(&self) -> &VecDeque<Arc<LogLine>> {
        &self.lines
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Position in [`Self::lines`] of line `seq`, if still kept. O(1): seqs are contiguous.
    pub fn position(&self, seq: u64) -> Option<usize> {
        let first = self.lines.front()?.seq;
        let pos = usize::try_from(seq.checked_sub(first)?).ok()?;
        (pos < self.lines.len()).then_some(pos)
    }

    /// Seqs of every kept line containing `query` (ASCII case ignored), oldest first.
    pub fn find(&self, query: &str) -> VecDeque<u64> {
        self.lines
            .iter()
            .filter(|l| text::contains_ignore_case(&l.text, query))
            .map(|l| l.seq)
            .collect()
    }

    /// The all-VMs pane's formatter; `name_width` is the VM column's width.
    pub fn formatter(&self, theme: Theme, name_width: usize) -> Box<dyn LogFormatter> {
        Box::new(PaneFormatter {
            theme,
            prefix: self.prefix.clone(),
            name_width,
        })
    }
}

/// Lays out tui-logger records exactly like our own panes (see [`layout_line`]).
struct PaneFormatter {
    theme: Theme,
    prefix: String,
    name_width: usize,
}

impl PaneFormatter {
    /// (who, success) from `pvr<N>:vm-<name>[:ok]` / `pvr<N>:rollout[:ok]`.
    fn who<'t>(&self, target: &'t str) -> (&'t str, bool) {
        let rest = target.strip_prefix(&self.prefix).unwrap_or(target);
        let (rest, success) = match rest.strip_suffix(":ok") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let who = match rest.strip_prefix("vm-") {
            Some(name) => name,
            None => ROLLOUT_WHO,
        };
        (who, success)
    }
}

impl LogFormatter for PaneFormatter {
    fn min_width(&self) -> u16 {
        20
    }

    /// Never returns zero lines (tui-logger panics on that).
    fn format(&self, width: usize, evt: &ExtLogRecord) -> Vec<Line<'_>> {
        let (who, success) = self.who(evt.target());
        let level = match evt.level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            _ if success => Level::Success,
            _ => Level::Info,
        };
        let (stamp, message) = evt.msg().split_once(' ').unwrap_or(("", evt.msg()));
        layout_line(
            &self.theme,
            &LineParts {
                stamp,
                level,
                who: Some((who, self.name_width)),
                text: message,
            },
            width,
            None,
        )
    }
}

/// What one log line shows.
pub struct LineParts<'a> {
    pub stamp: &'a str,
    pub level: Level,
    /// The VM column (name, width); `None` in the selected VM's own pane.
    pub who: Option<(&'a str, usize)>,
    pub text: &'a str,
}

impl<'a> LineParts<'a> {
    /// Parts of one of our own lines (`stamp` is its formatted elapsed time).
    pub fn of(line: &'a LogLine, stamp: &'a str, who: Option<(&'a str, usize)>) -> Self {
        LineParts {
            stamp,
            level: line.level,
            who,
            text: &line.text,
        }
    }
}

/// `+01:23 WARNING web-03   agent not running yet`, wrapped under the message to `width`, at most
/// [`MAX_LINES_PER_MESSAGE`] lines, never zero. `hits` = (query, is the current match) highlights
/// search matches in the message.
pub fn layout_line(
    theme: &Theme,
    parts: &LineParts<'_>,
    width: usize,
    hits: Option<(&str, bool)>,
) -> Vec<Line<'static>> {
    let mut head: Vec<Span<'static>> = Vec::with_capacity(8);
    head.push(Span::styled(format!("{:>6} ", parts.stamp), theme.dim()));
    head.push(Span::styled(
        level_label(parts.level),
        theme.level(parts.level),
    ));
    head.push(Span::raw(" "));
    if let Some((who, w)) = parts.who {
        // in a narrow pane the name gives way to the message
        let w = w.min((width / 4).max(6));
        head.push(Span::styled(fit_name(who, w), theme.heading()));
        head.push(Span::raw(" "));
    }
    let indent: usize = head.iter().map(|s| s.content.chars().count()).sum();
    let room = if width > indent + 8 {
        width - indent
    } else {
        width.max(1)
    };
    let text_style = theme.log_text(parts.level);
    let chunks = text::wrap_words(parts.text, room, MAX_LINES_PER_MESSAGE);
    let mut lines = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut spans = if i == 0 {
            std::mem::take(&mut head)
        } else {
            vec![Span::raw(" ".repeat(width.saturating_sub(room)))]
        };
        match hits {
            Some((query, current)) => push_highlighted(
                &mut spans,
                chunk,
                query,
                text_style,
                theme.search_hit(current),
            ),
            None => spans.push(Span::styled(chunk, text_style)),
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// Split `chunk` into plain and highlighted spans around each match of `query`.
fn push_highlighted(
    spans: &mut Vec<Span<'static>>,
    chunk: String,
    query: &str,
    style: Style,
    hit: Style,
) {
    let mut at = 0;
    while let Some(start) = text::find_ignore_case(&chunk, query, at) {
        let end = start + query.len();
        if start > at {
            spans.push(Span::styled(chunk[at..start].to_string(), style));
        }
        spans.push(Span::styled(chunk[start..end].to_string(), hit));
        at = end;
    }
    if at < chunk.len() {
        spans.push(Span::styled(chunk[at..].to_string(), style));
    }
}

/// `text` cut or padded to exactly `width` characters (a cut ends with `…`).
pub fn fit(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        format!("{text:<width$}")
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = text.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// A VM name cut or padded to exactly `width` characters, cut in the middle (`ubu…ntofu-12`):
/// names of one rollout share a prefix, so the end is what tells them apart.
pub fn fit_name(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width || width < 5 {
        return fit(name, width);
    }
    let head = (width - 1) / 3;
    let tail = width - 1 - head;
    let mut out: String = name.chars().take(head).collect();
    out.push('…');
    out.extend(name.chars().skip(count - tail));
    out
}

#[cfg(test)]
mod tests {
    use ratatui::style::Color;

    use super::*;

    fn plain(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn a_line_reads_time_level_vm_text_and_wraps_under_the_text() {
        let theme = Theme::new(false);
        let parts = LineParts {
            stamp: "+01:23",
            level: Level::Warning,
            who: Some(("web-03", 8)),
            text: "agent not running yet, will retry",
        };
        let lines = layout_line(&theme, &parts, 45, None);
        let text: Vec<String> = lines.iter().map(plain).collect();
        assert_eq!(
            text,
            [
                "+01:23 WARNING web-03   agent not running",
                "                        yet, will retry",
            ]
        );
        assert_eq!(lines[0].spans[1].style.fg, Some(Color::Yellow));
        assert_eq!(lines[0].spans[5].style.fg, Some(Color::Yellow));
    }

    #[test]
    fn search_hits_are_highlighted_inside_the_text() {
        let theme = Theme::new(false);
        let parts = LineParts {
            stamp: "+00:01",
            level: Level::Info,
            who: None,
            text: "ping ok, PING again",
        };
        let lines = layout_line(&theme, &parts, 80, Some(("ping", true)));
        let hits: Vec<&str> = lines[0]
            .spans
            .iter()
            .filter(|s| s.style == theme.search_hit(true))
            .map(|s| s.content.as_ref())
            .collect();
        assert_eq!(hits, ["ping", "PING"]);
        assert_eq!(plain(&lines[0]), "+00:01 INFO    ping ok, PING again");
    }

    #[test]
    fn the_buffer_is_bounded_and_finds_lines_by_seq() {
        // a small store: thousands of lines here would flood tui-logger's buffer, which the
        // other tests of this process share
        let mut store = LogStore::with_capacity(10);
        store.register_vm(0, "web-1");
        let mut evicted = Vec::new();
        for i in 0..13 {
            let (_, gone) = store.push(Some(0), Level::Info, Duration::ZERO, format!("line {i}"));
            evicted.extend(gone);
        }
        assert_eq!(store.len(), 10);
        assert_eq!(evicted, [0, 1, 2]);
        assert_eq!(store.position(2), None);
        assert_eq!(store.position(3), Some(0));
        assert_eq!(store.position(12), Some(9));
        assert_eq!(store.position(13), None);
        assert_eq!(store.lines()[0].text, "line 3");
        // "line 1", "line 10", "line 11", "line 12" minus the evicted "line 1"
        assert_eq!(store.find("LINE 1").len(), 3);
        assert_eq!(LogStore::new().capacity, LOG_CAPACITY);
    }

    #[test]
    fn fit_pads_and_cuts_to_the_column() {
        assert_eq!(fit("web", 5), "web  ");
        assert_eq!(fit("web-server-1", 6), "web-s…");
        assert_eq!(fit("x", 0), "");
    }

    #[test]
    fn names_are_cut_in_the_middle_to_keep_what_tells_them_apart() {
        assert_eq!(fit_name("ubuntu-opentofu-12", 12), "ubu…ntofu-12");
        assert_eq!(fit_name("ubuntu-opentofu-12", 11), "ubu…tofu-12");
        assert_eq!(fit_name("web-1", 8), "web-1   ");
        assert_eq!(fit_name("abcdefgh", 4), "abc…");
    }
}
