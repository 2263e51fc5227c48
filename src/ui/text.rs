//! Small text helpers shared by every panel: durations, clean-up of engine text, fitting.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// `b - a`, or zero when the clocks disagree (engine timestamps can be a hair ahead of ours).
pub fn since(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

/// Wall-clock style: `03:12`, `1:03:12`. Used for the header's elapsed time.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// Offset of a log line from the rollout start: `+03:12`, `+1:03:12`.
pub fn elapsed_stamp(d: Duration) -> String {
    format!("+{}", clock(d))
}

/// Compact: `8s`, `3m04s`, `1h02m`. At most 6 characters below 100 hours.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

/// With tenths under a minute, for phase durations: `0.4s`, `12.3s`, `3m04s`.
pub fn precise(d: Duration) -> String {
    if d < Duration::from_millis(100) {
        // Sub-tenth durations (a timeline column of a short demo) would read "0.0s".
        format!("{}ms", d.as_millis())
    } else if d.as_secs() < 60 {
        format!("{}.{}s", d.as_secs(), d.subsec_millis() / 100)
    } else {
        short(d)
    }
}

/// Engine text comes from guests and Proxmox task logs: control characters (escape sequences,
/// newlines, tabs) would corrupt the screen, so each becomes a space. Borrowed when already clean.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// Owned, sanitised copy of engine text.
pub fn clean(text: &str) -> String {
    sanitize(text).into_owned()
}

/// Does `haystack` contain `needle`, ignoring ASCII case? No allocation: search runs over the
/// whole log buffer.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    find_ignore_case(haystack, needle, 0).is_some()
}

/// Byte offset of the first match of `needle` at or after `from`, ignoring ASCII case.
pub fn find_ignore_case(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || from > h.len() || n.len() > h.len() - from {
        return None;
    }
    (from..=h.len() - n.len())
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n) && haystack.is_char_boundary(i))
}

/// Wrap `text` into lines of at most `width` characters, breaking after a space when one is near
/// (else mid-word). At least one line, at most `max`; the last ends with `…` when text was cut.
pub fn wrap_words(text: &str, width: usize, max: usize) -> Vec<String> {
    let (width, max) = (width.max(1), max.max(1));
    let mut rest: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    while rest.len() > width && out.len() < max {
        let cut = rest[1..=width]
            .iter()
            .rposition(|c| *c == ' ')
            .map(|i| i + 1);
        let (line, skip) = match cut {
            Some(at) => (rest[..at].iter().collect::<String>(), at + 1),
            None => (rest[..width].iter().collect(), width),
        };
        out.push(line.trim_end().to_string());
        rest.drain(..skip);
    }
    if out.is_empty() || (out.len() < max && !rest.is_empty()) {
        out.push(rest.iter().collect());
    } else if !rest.is_empty()
        && let Some(last) = out.last_mut()
    {
        if last.chars().count() >= width {
            last.pop();
        }
        last.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(clock(Duration::from_secs(192)), "03:12");
        assert_eq!(clock(Duration::from_secs(3792)), "1:03:12");
        assert_eq!(elapsed_stamp(Duration::from_secs(5)), "+00:05");
        assert_eq!(short(Duration::from_secs(8)), "8s");
        assert_eq!(short(Duration::from_secs(184)), "3m04s");
        assert_eq!(short(Duration::from_secs(3720)), "1h02m");
        assert_eq!(precise(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(precise(Duration::from_millis(400)), "0.4s");
        assert_eq!(precise(Duration::from_millis(77)), "77ms");
        assert_eq!(precise(Duration::from_secs(184)), "3m04s");
    }

    #[test]
    fn since_saturates_when_the_engine_clock_is_ahead() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(since(t + Duration::from_secs(1), t), Duration::ZERO);
        assert_eq!(since(t, t + Duration::from_secs(7)), Duration::from_secs(7));
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert!(matches!(sanitize("plain text"), Cow::Borrowed(_)));
        assert_eq!(sanitize("a\x1b[31mred\nb\tc"), "a [31mred b c");
    }

    #[test]
    fn case_insensitive_search_finds_every_position() {
        assert!(contains_ignore_case("Agent PING ok", "ping"));
        assert!(!contains_ignore_case("agent", "agents"));
        assert!(!contains_ignore_case("x", ""));
        assert_eq!(find_ignore_case("ab AB ab", "ab", 1), Some(3));
        assert_eq!(find_ignore_case("ab", "ab", 3), None);
        assert_eq!(find_ignore_case("é ping", "PING", 0), Some(3));
    }

    #[test]
    fn wrapping_prefers_spaces_is_bounded_and_marks_the_cut() {
        assert_eq!(wrap_words("abcdef", 4, 3), ["abcd", "ef"]);
        assert_eq!(wrap_words("", 4, 3), [""]);
        assert_eq!(wrap_words("ab cd ef", 5, 3), ["ab cd", "ef"]);
        assert_eq!(wrap_words("abcdefghij", 3, 2), ["abc", "de…"]);
        assert_eq!(wrap_words("ab cd ef gh", 5, 1), ["ab c…"]);
        assert_eq!(wrap_words("abcd efgh", 4, 3), ["abcd", "efgh"]);
    }
}
