//! The rollout's own log: a bounded ring of the engine's lines, owned by the model. The all-VMs
//! pane, the selected VM's pane and the search view all read it, and lay lines out with one
//! function ([`layout_line`]), so every pane reads the same. Nothing here is process-global: two
//! models never see each other's lines.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::engine::event::{Level, VmIndex};

use super::text;
use super::theme::{Theme, level_label};

/// Lines kept for the all-VMs pane and search.
pub const LOG_CAPACITY: usize = 10_000;
/// Lines kept per VM for its own pane.
pub const VM_LOG_CAPACITY: usize = 200;
/// A single message never takes more than this many screen lines, so one huge message cannot
/// push everything else off a page.
pub const MAX_LINES_PER_MESSAGE: usize = 4;

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
    lines: VecDeque<Arc<LogLine>>,
    /// Lines kept (the oldest go first).
    capacity: usize,
    next_seq: u64,
}

impl Default for LogStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The shape of a log pane's text area, for paging: what one line takes depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaneShape {
    pub width: usize,
    pub height: usize,
    /// The VM column's width; `None` in the selected VM's own pane.
    pub name_width: Option<usize>,
}

impl LogStore {
    pub fn new() -> Self {
        Self::with_capacity(LOG_CAPACITY)
    }

    /// Keep at most `capacity` lines.
    pub fn with_capacity(capacity: usize) -> Self {
        LogStore {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
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

    /// One past the position of the pane's bottom line: the tail when `bottom` is `None`, the
    /// oldest kept line when `bottom` has fallen off the buffer.
    pub fn end_for(&self, bottom: Option<u64>) -> usize {
        match bottom {
            None => self.lines.len(),
            Some(seq) => self
                .position(seq)
                .map_or(self.lines.len().min(1), |pos| pos + 1),
        }
    }

    /// The bottom line one page back from `bottom` (`None`: the tail): the line at the top of
    /// the current page. `None` when there is nothing to page.
    pub fn page_up(&self, bottom: Option<u64>, pane: PaneShape) -> Option<u64> {
        let end = self.end_for(bottom);
        let last = end.checked_sub(1)?;
        let mut rows = 0;
        let mut top = last;
        for pos in (0..end).rev() {
            top = pos;
            rows += line_rows(&self.lines[pos], pane);
            if rows >= pane.height {
                break;
            }
        }
        // a single line taller than the pane still moves the page
        let top = if top == last {
            last.saturating_sub(1)
        } else {
            top
        };
        Some(self.lines[top].seq)
    }

    /// The bottom line one page forward from `bottom`; `None` once that reaches the tail (the
    /// pane follows it again).
    pub fn page_down(&self, bottom: u64, pane: PaneShape) -> Option<u64> {
        let start = self.end_for(Some(bottom));
        let mut rows = 0;
        for pos in start..self.lines.len() {
            rows += line_rows(&self.lines[pos], pane);
            if rows >= pane.height {
                return (pos + 1 < self.lines.len()).then(|| self.lines[pos].seq);
            }
        }
        None
    }
}

/// Screen lines that `line` takes in `pane` (what [`layout_line`] gives, without styling it).
fn line_rows(line: &LogLine, pane: PaneShape) -> usize {
    let stamp = text::elapsed_stamp(line.elapsed);
    let parts = LineParts {
        stamp: &stamp,
        level: line.level,
        who: pane.name_width.map(|w| ("", w)),
        text: &line.text,
    };
    let room = text_room(head_width(&parts, pane.width), pane.width);
    text::wrap_words(&line.text, room, MAX_LINES_PER_MESSAGE).len()
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
        head.push(Span::styled(
            fit_name(who, name_column(w, width)),
            theme.heading(),
        ));
        head.push(Span::raw(" "));
    }
    let room = text_room(head_width(parts, width), width);
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

/// In a narrow pane the VM name gives way to the message.
fn name_column(name_width: usize, width: usize) -> usize {
    name_width.min((width / 4).max(6))
}

/// Characters before the message: `+01:23 WARNING web-03   `.
fn head_width(parts: &LineParts<'_>, width: usize) -> usize {
    let stamp = parts.stamp.chars().count().max(6) + 1;
    let level = level_label(parts.level).chars().count() + 1;
    let who = parts.who.map_or(0, |(_, w)| name_column(w, width) + 1);
    stamp + level + who
}

/// Width left for the message (wrapped under itself), or the whole width when the head leaves
/// too little.
fn text_room(indent: usize, width: usize) -> usize {
    if width > indent + 8 {
        width - indent
    } else {
        width.max(1)
    }
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
        let mut store = LogStore::with_capacity(10);
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
    fn pages_step_by_what_fits_and_page_down_returns_to_the_tail() {
        let mut store = LogStore::new();
        for i in 0..10 {
            store.push(None, Level::Info, Duration::ZERO, format!("line {i}"));
        }
        // one screen line each: 4 fit
        let pane = PaneShape {
            width: 60,
            height: 4,
            name_width: Some(6),
        };
        assert_eq!(
            store.page_up(None, pane),
            Some(6),
            "the top line of the tail's page"
        );
        assert_eq!(store.page_up(Some(6), pane), Some(3));
        assert_eq!(store.page_up(Some(3), pane), Some(0));
        assert_eq!(
            store.page_up(Some(0), pane),
            Some(0),
            "the oldest line stays"
        );
        assert_eq!(store.page_down(0, pane), Some(4));
        assert_eq!(store.page_down(4, pane), Some(8));
        assert_eq!(
            store.page_down(8, pane),
            None,
            "reaching the tail follows it again"
        );
        assert_eq!(store.end_for(Some(4)), 5);
        assert_eq!(store.end_for(None), 10);
        // a line that wraps takes its screen lines: 2 of them fill the page
        let long = "word ".repeat(20);
        store.push(None, Level::Warning, Duration::ZERO, long.clone());
        store.push(None, Level::Warning, Duration::ZERO, long);
        let narrow = PaneShape { width: 40, ..pane };
        assert_eq!(store.page_up(None, narrow), Some(10));
        assert!(
            LogStore::new().page_up(None, pane).is_none(),
            "nothing to page"
        );
    }

    #[test]
    fn the_line_count_for_paging_is_the_laid_out_one() {
        let theme = Theme::new(false);
        let text = "agent not running yet, will retry in a moment or two".to_string();
        for (width, name_width) in [(30, Some(8)), (45, Some(24)), (80, None), (12, Some(6))] {
            let line = LogLine {
                seq: 0,
                vm: None,
                level: Level::Warning,
                elapsed: Duration::from_secs(83),
                text: text.clone(),
            };
            let stamp = text::elapsed_stamp(line.elapsed);
            let parts = LineParts::of(&line, &stamp, name_width.map(|w| ("web-03", w)));
            let pane = PaneShape {
                width,
                height: 10,
                name_width,
            };
            assert_eq!(
                line_rows(&line, pane),
                layout_line(&theme, &parts, width, None).len(),
                "{width} {name_width:?}"
            );
        }
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
