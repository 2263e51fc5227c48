//! pve-rollout: the command line. Parses, sets up error reports and tracing, and hands over to
//! `cli`, whose modules hold one subcommand family each; everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, Command, EVENTS_TARGET, LogFile};
use pve_rollout::ui;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = color_eyre::install() {
        eprintln!("warning: error reports without colour: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let dashboard = cli.command.wants_dashboard();
    // The simulator reports what it serves at info; a rollout prints its own lines.
    let default_filter = match &cli.command {
        Command::Sim(_) => "info",
        _ => "warn",
    };
    let log_file = cli.command.keeps_log_file().then(LogFile::default);
    init_tracing(dashboard, default_filter, log_file.clone());
    match runtime.block_on(cli::dispatch(
        cli.command,
        dashboard,
        log_file.unwrap_or_default(),
    )) {
        Ok(code) => ExitCode::from(code),
        Err(report) => {
            eprintln!("Error: {report:?}");
            ExitCode::from(1)
        }
    }
}

/// `RUST_LOG` when set, else `default`.
fn env_filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// The log file (when the command keeps one) records info and above, or what `RUST_LOG` asks.
/// Diagnostics (`RUST_LOG`) go to stderr in headless runs, to the dashboard's diagnostics pane
/// otherwise, without the engine's events (the headless lines and the dashboard show those).
fn init_tracing(dashboard: bool, default_filter: &str, log_file: Option<LogFile>) {
    use tracing_subscriber::{Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};
    let file_layer = log_file.map(|log| {
        fmt::layer()
            .with_writer(log)
            .with_ansi(false)
            .with_filter(env_filter("info"))
    });
    let without_events =
        |filter: tracing_subscriber::EnvFilter| match format!("{EVENTS_TARGET}=off").parse() {
            Ok(directive) => filter.add_directive(directive),
            Err(_) => filter,
        };
    if dashboard {
        // The dashboard owns the terminal: diagnostics go to its pane (`d`), without the
        // engine's events (its log pane shows those).
        let filter = without_events(env_filter(ui::diagnostics::DEFAULT_FILTER));
        let _ = ui::diagnostics::install_tracing(filter, file_layer);
        return;
    }
    // Colour codes only for a terminal, and not when NO_COLOR asks for none.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let terminal_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .with_filter(without_events(env_filter(default_filter)));
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(terminal_layer)
        .try_init();
}
