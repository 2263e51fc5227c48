//! Entering and leaving the full-screen terminal: raw mode, alternate screen, mouse capture.
//! Restored on every exit path: normal return and `?` (the guard's `Drop`), and panics of the
//! UI's own thread (a hook that restores first, then calls the hook installed before it, e.g.
//! color-eyre's, so the report prints on a sane terminal). A panic on another thread (a VM's
//! task: the engine fails that VM and logs the message) leaves the dashboard running; its report
//! is kept and printed once the terminal is given back. Install color-eyre before calling
//! [`init`].

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread::ThreadId;

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
/// The thread that draws (the one that called [`init`]).
static UI_THREAD: OnceLock<Mutex<Option<ThreadId>>> = OnceLock::new();
/// Panics of other threads while the screen was ours, printed after [`restore`].
static HELD_REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ui_thread() -> &'static Mutex<Option<ThreadId>> {
    UI_THREAD.get_or_init(|| Mutex::new(None))
}

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
    *ui_thread().lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
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
    let held = std::mem::take(&mut *HELD_REPORTS.lock().unwrap_or_else(|e| e.into_inner()));
    let mut stderr = io::stderr();
    for report in held {
        // A blank line first: a terminal may lose the first line after the alternate screen.
        let _ = writeln!(stderr, "\n{report}");
    }
    mouse.and(screen).and(raw)
}

/// Once per process: restore, then whatever hook was there before (color-eyre's in `main`).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ui = *ui_thread().lock().unwrap_or_else(|e| e.into_inner());
            if ACTIVE.load(Ordering::SeqCst) && ui != Some(std::thread::current().id()) {
                // Printing now would scribble over the dashboard, which goes on.
                HELD_REPORTS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("a background task panicked: {info}"));
                return;
            }
            let _ = restore();
            previous(info);
        }));
    });
}
