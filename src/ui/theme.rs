//! Colours and glyphs, in one place. Every state and level has a glyph or a word as well as a
//! colour, so the screen still reads with `NO_COLOR` (then no colour at all; bold, dim and reverse
//! stay, since they are not colour).

use ratatui::style::{Color, Modifier, Style};

use crate::engine::event::Level;

use super::state::StateKind;

/// Braille spinner, one frame per 100 ms; shown only next to VMs that are busy.
pub const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    colour: bool,
}

impl Theme {
    pub fn new(no_color: bool) -> Self {
        Theme { colour: !no_color }
    }

    pub fn has_colour(&self) -> bool {
        self.colour
    }

    fn fg(&self, colour: Color) -> Style {
        if self.colour {
            Style::new().fg(colour)
        } else {
            Style::new()
        }
    }

    /// Colour of a VM state: the glyph, the state word and the timeline bar use it.
    pub fn state(&self, kind: StateKind) -> Style {
        use StateKind::*;
        let colour = match kind {
            Queued => Color::DarkGray,
            Cloning => Color::Cyan,
            Configuring => Color::LightCyan,
            Booting => Color::LightBlue,
            AwaitingAgent => Color::Yellow,
            AwaitingIp => Color::LightYellow,
            IpFound => Color::LightMagenta,
            Verifying => Color::LightGreen,
            Provisioning => Color::Blue,
            Verified => Color::Green,
            Paused => Color::Magenta,
            Failed => Color::Red,
            HookFailed => Color::LightRed,
            Skipped => Color::Gray,
            Aborted => Color::Indexed(208),
        };
        let style = self.fg(colour);
        match kind {
            Verified | Failed | HookFailed => style.add_modifier(Modifier::BOLD),
            Queued | Skipped if !self.colour => style.add_modifier(Modifier::DIM),
            _ => style,
        }
    }

    /// Colour of a log level: INFO blue, SUCCESS green, WARNING yellow, ERROR red.
    pub fn level(&self, level: Level) -> Style {
        match level {
            Level::Info => self.fg(Color::Blue),
            Level::Success => self.fg(Color::Green),
            Level::Warning => self.fg(Color::Yellow),
            Level::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }

    /// The text of a log line: plain for INFO, the level's colour otherwise.
    pub fn log_text(&self, level: Level) -> Style {
        match level {
            Level::Info => Style::new(),
            Level::Error => self.fg(Color::Red),
            other => self.level(other),
        }
    }

    /// The selected grid row.
    pub fn selected(&self) -> Style {
        if self.colour {
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        if self.colour {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn border(&self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn heading(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// A key in the footer or the help overlay.
    pub fn key(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// The header's PAUSED and FINISHED flags.
    pub fn flag(&self, colour: Color) -> Style {
        if self.colour {
            Style::new()
                .fg(Color::Black)
                .bg(colour)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red)
    }

    /// Every search hit, and the current one.
    pub fn search_hit(&self, current: bool) -> Style {
        let style = if self.colour {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        };
        if current {
            style.add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            style
        }
    }

    pub fn gauge_filled(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn gauge_unfilled(&self) -> Style {
        self.dim()
    }

    /// One cell of a timeline bar: a solid block in the state's colour, or the state's letter
    /// when there is no colour.
    pub fn timeline_cell(&self, kind: StateKind) -> (&'static str, Style) {
        let symbol = match kind {
            StateKind::Verified
            | StateKind::Failed
            | StateKind::HookFailed
            | StateKind::Skipped
            | StateKind::Aborted => state_glyph(kind),
            StateKind::Queued => "·",
            _ if self.colour => "█",
            _ => timeline_letter(kind),
        };
        (symbol, self.state(kind))
    }
}

/// One glyph per state, also shown without colour.
pub fn state_glyph(kind: StateKind) -> &'static str {
    use StateKind::*;
    match kind {
        Queued => "·",
        Cloning => "◐",
        Configuring => "◓",
        Booting => "◑",
        AwaitingAgent => "◒",
        AwaitingIp => "◇",
        IpFound => "◆",
        Verifying => "◈",
        Provisioning => "◎",
        Verified => "✓",
        Paused => "‖",
        Failed => "✗",
        HookFailed => "⊗",
        Skipped => "⊘",
        Aborted => "■",
    }
}

/// Letter of a busy state in the colourless timeline (see its legend).
fn timeline_letter(kind: StateKind) -> &'static str {
    use StateKind::*;
    match kind {
        Cloning => "c",
        Configuring => "f",
        Booting => "b",
        AwaitingAgent => "a",
        AwaitingIp => "l",
        IpFound => "i",
        Verifying => "v",
        Provisioning => "p",
        Paused => "‖",
        other => state_glyph(other),
    }
}

/// The level word, padded so messages line up.
pub fn level_label(level: Level) -> &'static str {
    match level {
        Level::Info => "INFO   ",
        Level::Success => "SUCCESS",
        Level::Warning => "WARNING",
        Level::Error => "ERROR  ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_its_own_colour_and_glyph() {
        let theme = Theme::new(false);
        for (i, a) in StateKind::ALL.iter().enumerate() {
            for b in &StateKind::ALL[i + 1..] {
                assert_ne!(theme.state(*a).fg, theme.state(*b).fg, "{a:?} vs {b:?}");
                assert_ne!(state_glyph(*a), state_glyph(*b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn levels_use_the_agreed_colours() {
        let theme = Theme::new(false);
        assert_eq!(theme.level(Level::Info).fg, Some(Color::Blue));
        assert_eq!(theme.level(Level::Success).fg, Some(Color::Green));
        assert_eq!(theme.level(Level::Warning).fg, Some(Color::Yellow));
        assert_eq!(theme.level(Level::Error).fg, Some(Color::Red));
    }

    #[test]
    fn no_color_drops_every_colour_but_keeps_glyphs_and_emphasis() {
        let theme = Theme::new(true);
        for kind in StateKind::ALL {
            let style = theme.state(kind);
            assert_eq!((style.fg, style.bg), (None, None), "{kind:?}");
            let (symbol, style) = theme.timeline_cell(kind);
            assert_ne!(symbol, "█", "{kind:?} needs a letter without colour");
            assert_eq!((style.fg, style.bg), (None, None));
        }
        for level in [Level::Info, Level::Success, Level::Warning, Level::Error] {
            assert_eq!(theme.level(level).fg, None);
            assert_eq!(theme.log_text(level).fg, None);
        }
        for style in [
            theme.selected(),
            theme.flag(Color::Yellow),
            theme.search_hit(true),
            theme.dim(),
            theme.key(),
        ] {
            assert_eq!((style.fg, style.bg), (None, None));
            assert!(!style.add_modifier.is_empty(), "emphasis survives NO_COLOR");
        }
    }
}
