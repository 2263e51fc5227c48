//! Where the diagnostics pane's records come from: the process's `tracing` records (client
//! retries, each HTTP call at debug), kept by tui-logger in its process-wide buffer. Only the
//! dashboard routes tracing here (headless runs print it to stderr). The pane's widget state
//! (target selection, level filters, paging) belongs to the run loop, which also moves new records
//! into the buffer between frames; the model and the views never touch the buffer themselves.

use tracing_subscriber::layer::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, Registry};
use tui_logger::{LevelFilter, TuiTracingSubscriberLayer};

/// Records the pane keeps (the oldest go first).
pub const RECORDS_KEPT: usize = 10_000;

/// What is recorded when `RUST_LOG` is not set: this tool's own records down to debug (each HTTP
/// call, each retry), other crates' warnings.
pub const DEFAULT_FILTER: &str = "warn,pve_rollout=debug";

/// Route `tracing` to the diagnostics pane, and to `beside` (the log file), each with its own
/// filter. Call once, before the first record: setting the buffer depth empties it.
pub fn install_tracing<L>(filter: EnvFilter, beside: L) -> Result<(), TryInitError>
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    tui_logger::set_buffer_depth(RECORDS_KEPT);
    // `filter` decides what is recorded; tui-logger then keeps all of it until the operator
    // records less of a target (`-` in the pane).
    tui_logger::set_default_level(LevelFilter::Trace);
    tracing_subscriber::registry()
        .with(beside)
        .with(TuiTracingSubscriberLayer.with_filter(filter))
        .try_init()
}
