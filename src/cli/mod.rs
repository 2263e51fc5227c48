//! The subcommands: their clap definitions and what each does, one module per family. Errors
//! are printed where they happen (they already say everything) and become exit codes.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use color_eyre::eyre::{Result, WrapErr};

use pve_rollout::config::Config;
use pve_rollout::engine::plan;
use pve_rollout::pve::Client;
use pve_rollout::sim;

mod deploy;
mod destroy;
mod inspect;

#[derive(Parser)]
#[command(
    name = "pve-rollout",
    version,
    about = "Roll out fleets of VMs on Proxmox VE and prove each one healthy, live in the terminal",
    long_about = "Clones a cloud-init template N times with a stagger, configures and starts each \
    clone, then proves it healthy through the QEMU guest agent (IP, pings, guest-exec, \
    `uname -a`), all through the Proxmox VE API. Exit codes: 0 every VM verified, 1 some VM \
    failed or was skipped, 2 bad config or usage, 3 cannot reach or authenticate to Proxmox, \
    or preflight failed, 4 every VM verified but the on_finished hook failed, 5 aborted (Ctrl-C, \
    SIGTERM, SIGHUP; outputs written, the same deploy resumes), 130 stopped at once by a second \
    Ctrl-C or signal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Roll out the VMs described in deploy.toml and verify each one.
    Deploy(deploy::DeployArgs),
    /// Dry run: resolve names, VM ids, nodes and resources, check the cluster, change nothing.
    Plan(ConfigArg),
    /// Connect and authenticate, then show the PVE version, the nodes and the template.
    Check(ConfigArg),
    /// A whole rollout against the built-in Proxmox simulator: no cluster needed.
    Demo(deploy::DemoArgs),
    /// Run the Proxmox VE simulator as a standalone HTTPS server.
    Sim(sim::SimArgs),
    /// Stop and delete (purge) exactly the VMs this rollout created, after confirmation.
    Destroy(destroy::DestroyArgs),
}

impl Command {
    /// Whether this run shows the dashboard (a rollout, with stdout a terminal).
    pub fn wants_dashboard(&self) -> bool {
        use std::io::IsTerminal;
        match self {
            Command::Deploy(a) => !a.headless && std::io::stdout().is_terminal(),
            Command::Demo(a) => !a.headless && std::io::stdout().is_terminal(),
            _ => false,
        }
    }
}

#[derive(Args)]
pub struct ConfigArg {
    /// The rollout description (see deploy.toml.example).
    #[arg(short, long, value_name = "FILE", default_value = "deploy.toml")]
    pub config: PathBuf,
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{text}' is not a positive number")),
    }
}

/// An error that already says everything, with the exit code it calls for.
pub struct Exit(pub u8);

pub async fn dispatch(command: Command, dashboard: bool) -> Result<u8> {
    let result = match command {
        Command::Sim(args) => {
            sim::run_cli(args).await.wrap_err("simulator")?;
            Ok(0)
        }
        Command::Check(a) => inspect::check(&a.config).await,
        Command::Plan(a) => inspect::plan_only(&a.config).await,
        Command::Deploy(a) => deploy::deploy(a, dashboard).await,
        Command::Demo(a) => deploy::demo(a, dashboard).await,
        Command::Destroy(a) => destroy::destroy(a).await,
    };
    match result {
        Ok(code) => Ok(code),
        Err(Exit(code)) => Ok(code),
    }
}

fn load_config(path: &Path) -> Result<Config, Exit> {
    let config = Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code() as u8)
    })?;
    for warning in &config.source.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

/// Connects and proves the credentials, or says exactly what is wrong (exit 3).
async fn connect(config: &Config, time_scale: f64) -> Result<Client, Exit> {
    let client_config = config.client_config(time_scale).map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code() as u8)
    })?;
    let client = Client::new(client_config).map_err(|e| {
        eprintln!("error: {e}");
        Exit(3)
    })?;
    client.version().await.map_err(|e| {
        eprintln!("error: cannot use {}: {e}", client.url());
        Exit(3)
    })?;
    Ok(client)
}

async fn make_plan(client: &Client, config: &Config) -> Result<plan::Plan, Exit> {
    plan::build(client, config).await.map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code() as u8)
    })
}
