//! pve-rollout: the command line. Parses, sets up error reports and tracing, and hands over to
//! `cli`, whose modules hold one subcommand family each; everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, Command};
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
    init_tracing(dashboard, default_filter);
    match runtime.block_on(cli::dispatch(cli.command, dashboard)) {
        Ok(code) => ExitCode::from(code),
        Err(report) => {
            eprintln!("Error: {report:?}");
            ExitCode::from(1)
        }
    }
}

/// Diagnostics (`RUST_LOG`) go to stderr in headless runs. The dashboard owns the terminal, so
/// there they go to its diagnostics pane (`d`).
fn init_tracing(dashboard: bool, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    if dashboard {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(ui::diagnostics::DEFAULT_FILTER));
        let _ = ui::diagnostics::install_tracing(filter);
        return;
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
