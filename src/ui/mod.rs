//! The live dashboard. It watches the engine's `Event`s, sends `Command`s back, and never calls
//! the API. Shape: `model` (what is shown) + `update` (pure: keys, mouse, engine events) +
//! `view/*` (one draw function per panel) + `keymap` (one table for dispatch, footer and help) +
//! `theme` + `terminal` (enter/restore) + the loop below. The rollout's log lives in the model
//! (`logs`); the diagnostics pane shows the process's `tracing` records through tui-logger
//! (`diagnostics`), whose widget state this loop owns.
//!
//! The loop draws only when something changed, drains bursts of engine events before drawing
//! once, and wakes on a timer only while something on screen moves (a spinner, a timer).

pub mod diagnostics;
pub mod keymap;
pub mod layout;
pub mod logs;
pub mod model;
pub mod state;
pub mod terminal;
pub mod text;
pub mod theme;
pub mod update;
pub mod view;

#[cfg(test)]
mod testkit;

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use crossterm::event::{Event as TermEvent, EventStream, MouseEventKind};
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
use crossterm::{execute, queue};
use futures_util::StreamExt;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use tui_logger::TuiWidgetState;

use crate::engine::event::{Command, Event};

use self::model::Model;
use self::terminal::Tui;
use self::theme::Theme;
use self::update::{Msg, Quit, update};

/// Engine events applied at most between two frames: bounds the time to the next frame in a
/// burst.
const MAX_EVENTS_PER_FRAME: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiOptions {
    /// First word of the header, e.g. `pve-rollout` or `pve-rollout demo`.
    pub title: String,
    /// No colours at all (glyphs and emphasis stay). See [`UiOptions::new`] for `NO_COLOR`.
    pub no_color: bool,
    /// Capture the mouse (click selects, wheel scrolls). Off lets the terminal select text.
    pub mouse: bool,
}

impl UiOptions {
    /// Mouse on; colour unless `NO_COLOR` is set to something non-empty (no-color.org).
    pub fn new(title: impl Into<String>) -> Self {
        UiOptions {
            title: title.into(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            mouse: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiOutcome {
    /// Summary files the engine wrote last: print them once the terminal is restored.
    pub exported: Vec<PathBuf>,
    /// The engine sent `Finished` (completed, or aborted on the operator's word).
    pub finished: bool,
    /// Left without waiting for the engine (double Ctrl-C, SIGTERM/SIGHUP, input closed).
    pub forced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("terminal output failed: {0}")]
    Terminal(#[from] io::Error),
    #[error("reading terminal input failed: {0}")]
    Input(io::Error),
}

/// Run the dashboard until the operator quits. The terminal is restored before this returns,
/// whatever happened (panics included, see [`terminal`]).
pub async fn run(
    mut events: UnboundedReceiver<Event>,
    commands: UnboundedSender<Command>,
    opts: UiOptions,
) -> Result<UiOutcome, UiError> {
    let theme = Theme::new(opts.no_color);
    let mut model = Model::new(opts.title, SystemTime::now());
    let mut signals = Signals::new()?;
    let (mut tui, guard) = terminal::init(opts.mouse)?;
    let size = tui.size()?;
    model.size = (size.width, size.height);
    let result = event_loop(
        &mut tui,
        &mut model,
        &theme,
        &mut events,
        &commands,
        &mut signals,
    )
    .await;
    drop(tui);
    if result.is_err() && !model.finished {
        // nobody will be watching: let the engine stop and write what it has
        let _ = commands.send(Command::Abort);
    }
    guard.restore()?;
    let quit = result?;
    Ok(UiOutcome {
        exported: model.exported,
        finished: model.finished,
        forced: quit == Quit::Forced,
    })
}

async fn event_loop(
    tui: &mut Tui,
    model: &mut Model,
    theme: &Theme,
    events: &mut UnboundedReceiver<Event>,
    commands: &UnboundedSender<Command>,
    signals: &mut Signals,
) -> Result<Quit, UiError> {
    let mut input = EventStream::new();
    let mut input_open = true;
    let mut engine_open = true;
    let mut dirty = true;
    // A deadline that survives loop turns: events that change nothing (mouse motion) must not
    // keep pushing the next tick away.
    let mut next_tick: Option<Instant> = None;
    let diagnostics = TuiWidgetState::new();
    loop {
        // tracing records wait in tui-logger's hot buffer (1000 records) until moved into the
        // pane's buffer: move them on every turn, pane open or not, so none overflow.
        tui_logger::move_events();
        if dirty {
            draw(tui, model, theme, &diagnostics)?;
            dirty = false;
        }
        next_tick = match (model.tick_interval(), next_tick) {
            (None, _) => None,
            (Some(every), Some(at)) => Some(at.min(Instant::now() + every)),
            (Some(every), None) => Some(Instant::now() + every),
        };
        let msg = tokio::select! {
            term = input.next(), if input_open => match term {
                Some(Ok(event)) => match to_msg(event) {
                    Some(msg) => msg,
                    None => continue,
                },
                Some(Err(e)) => return Err(UiError::Input(e)),
                // The terminal is gone (as with SIGHUP): abort, once.
                None => {
                    input_open = false;
                    Msg::Terminate
                }
            },
            engine = events.recv(), if engine_open => match engine {
                Some(event) => Msg::Engine(event),
                None => {
                    engine_open = false;
                    Msg::EngineGone
                }
            },
            () = tokio::time::sleep_until(next_tick.unwrap_or_else(Instant::now)), if next_tick.is_some() => {
                next_tick = None;
                Msg::Tick(SystemTime::now())
            }
            () = signals.recv() => Msg::Terminate,
        };
        model.now = SystemTime::now();
        let mut quit = apply(model, msg, commands, &diagnostics, &mut dirty);
        // Coalesce a burst: take what the engine already queued, then draw once.
        for _ in 0..MAX_EVENTS_PER_FRAME {
            if quit.is_some() || !engine_open {
                break;
            }
            let msg = match events.try_recv() {
                Ok(event) => Msg::Engine(event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    engine_open = false;
                    Msg::EngineGone
                }
            };
            quit = apply(model, msg, commands, &diagnostics, &mut dirty);
        }
        if let Some(quit) = quit {
            return Ok(quit);
        }
    }
}

/// Update the model, send its commands (a closed channel means the engine is gone, which
/// `EngineGone` reports on its own) and hand the diagnostics pane its keys.
fn apply(
    model: &mut Model,
    msg: Msg,
    commands: &UnboundedSender<Command>,
    diagnostics: &TuiWidgetState,
    dirty: &mut bool,
) -> Option<Quit> {
    let result = update(model, msg);
    *dirty |= result.dirty;
    for command in result.commands {
        let _ = commands.send(command);
    }
    for event in result.diagnostics {
        diagnostics.transition(event);
    }
    result.quit
}

/// Terminal events the model cares about; key releases and bare mouse motion are dropped here
/// so they never wake a redraw.
fn to_msg(event: TermEvent) -> Option<Msg> {
    match event {
        TermEvent::Key(_) => event.as_key_press_event().map(Msg::Key),
        TermEvent::Mouse(mouse) => match mouse.kind {
            MouseEventKind::Down(_) | MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                Some(Msg::Mouse(mouse))
            }
            _ => None,
        },
        TermEvent::Resize(w, h) => Some(Msg::Resize(w, h)),
        _ => None,
    }
}

/// One frame through the crossterm backend, as the dashboard draws it (public so the render
/// benchmark times exactly this, into a sink).
pub fn draw<W: io::Write>(
    tui: &mut ratatui::Terminal<ratatui::backend::CrosstermBackend<W>>,
    model: &Model,
    theme: &Theme,
    diagnostics: &TuiWidgetState,
) -> io::Result<()> {
    queue!(tui.backend_mut(), BeginSynchronizedUpdate)?;
    tui.draw(|frame| {
        #[cfg(debug_assertions)]
        test_panic::on_frame();
        view::draw(frame, model, theme, diagnostics)
    })?;
    execute!(tui.backend_mut(), EndSynchronizedUpdate)?;
    Ok(())
}

/// Test hook, debug builds only (compiled out of release builds): `PVE_ROLLOUT_TEST_PANIC=N`
/// panics while drawing frame N, so the tmux test can prove that a panic inside the dashboard
/// gives the terminal back (`tests/tui_tmux.rs`).
#[cfg(debug_assertions)]
mod test_panic {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const ENV: &str = "PVE_ROLLOUT_TEST_PANIC";

    pub fn on_frame() {
        static AT: OnceLock<Option<u64>> = OnceLock::new();
        static FRAMES: AtomicU64 = AtomicU64::new(0);
        let Some(at) = *AT.get_or_init(|| std::env::var(ENV).ok()?.trim().parse().ok()) else {
            return;
        };
        let frame = FRAMES.fetch_add(1, Ordering::Relaxed) + 1;
        if frame >= at {
            panic!("{ENV}: deliberate panic while drawing frame {frame} (test hook)");
        }
    }
}

/// SIGTERM and SIGHUP (the terminal went away) act like a confirmed Ctrl-C: the engine aborts
/// and writes the outputs, then the UI ends; a second one forces the exit.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.hangup.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<()>().await
        }
    }
}
