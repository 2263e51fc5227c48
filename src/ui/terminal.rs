//! Entering and leaving the full-screen terminal: raw mode, alternate screen, mouse capture.
//! Restored on every exit path: normal return and `?` (the guard's `Drop`), and panics (a hook
//! that restores first, then calls the hook installed before it, e.g. color-eyre's, so the report
//! prints on a sane terminal). Install color-eyre before calling [`init`].

use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// The screen is ours (the panic hook restores it only then).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Mouse capture is on.
static MOUSE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Restores the terminal when dropped, unless [`TerminalGuard::restore`] already did.
#[must_use = "dropping the guard restores the terminal"]
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    /// Restore now and report failure (dropping restores too, silently).
    pub fn restore(self) -> io::Result<()> {
        restore()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore();
    }
}

/// Take over the terminal. On error, whatever was already switched on is switched off again.
pub fn init(mouse: bool) -> io::Result<(Tui, TerminalGuard)> {
    install_panic_hook();
    MOUSE.store(mouse, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    let guard = TerminalGuard { _private: () };
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    execute!(stdout, EnterAlternateScreen, Hide)?;
    if mouse {
        execute!(stdout, EnableMouseCapture)?;
    }
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    Ok((terminal, guard))
}

/// Give the terminal back: mouse capture off, main screen, cursor shown, cooked mode. Every step
/// is tried even when one fails; idempotent (only the first call after [`init`] acts).
pub fn restore() -> io::Result<()> {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let mut stdout = io::stdout();
    let mouse = if MOUSE.swap(false, Ordering::SeqCst) {
        execute!(stdout, DisableMouseCapture)
    } else {
        Ok(())
    };
    let screen = execute!(stdout, LeaveAlternateScreen, Show);
    let raw = disable_raw_mode();
    mouse.and(screen).and(raw)
}

/// Once per process: restore, then whatever hook was there before (color-eyre's in `main`).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}
