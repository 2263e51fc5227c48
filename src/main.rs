//! pve-rollout: the command line. Errors are reported with color-eyre; logs go to stderr.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "pve-rollout",
    version,
    about = "Roll out fleets of VMs on Proxmox VE and prove each one healthy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in Proxmox VE simulator as an HTTPS server.
    Sim(pve_rollout::sim::SimArgs),
}

fn main() -> color_eyre::Result<()> {
    color_eyre::install()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Sim(args) => pve_rollout::sim::run_cli(args).await?,
        }
        Ok(())
    })
}
