//! The subcommands: their clap definitions and what each does, one module per family. Errors
//! are printed where they happen (they already say everything) and become exit codes.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use color_eyre::eyre::{Result, WrapErr};

use pve_rollout::config::{self, Config};
use pve_rollout::engine::plan;
use pve_rollout::pve::Client;
use pve_rollout::sim;

mod deploy;
mod destroy;
mod docs;
mod inspect;
mod logfile;
mod onboard;
mod watch;

pub use logfile::LogFile;
pub use watch::EVENTS_TARGET;

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
    /// Write a commented deploy.toml from what the cluster has (nodes, cloud-init templates,
    /// bridges, storages, free memory), checked with plan's preflight before it is written.
    Init(onboard::InitArgs),
    /// Write a deploy.toml from the original Terraform/OpenTofu setup (terraform.tfvars,
    /// variable defaults, the proxmox_vm_qemu resource), listing what it could not translate.
    ImportTf(onboard::ImportTfArgs),
    /// Roll out the VMs described in deploy.toml and verify each one.
    Deploy(deploy::DeployArgs),
    /// Dry run: resolve names, VM ids, nodes and resources, check the cluster, change nothing.
    Plan(inspect::PlanArgs),
    /// Connect and authenticate, then show the PVE version, the nodes and the template.
    Check(ConfigArg),
    /// A whole rollout against the built-in Proxmox simulator: no cluster needed.
    Demo(deploy::DemoArgs),
    /// Run the Proxmox VE simulator as a standalone HTTPS server.
    Sim(sim::SimArgs),
    /// Stop and delete (purge) exactly the VMs this rollout created, after confirmation.
    Destroy(destroy::DestroyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff) on stdout, or write every page into a directory.
    Man(docs::ManArgs),
}

impl Command {
    /// Whether this run shows the dashboard (a rollout, with stdout a terminal).
    pub fn wants_dashboard(&self) -> bool {
        use std::io::IsTerminal;
        match self {
            Command::Deploy(a) => {
                !a.headless && a.events.is_none() && std::io::stdout().is_terminal()
            }
            Command::Demo(a) => {
                !a.headless && a.events.is_none() && std::io::stdout().is_terminal()
            }
            _ => false,
        }
    }

    /// Whether this command keeps a log file (the ones with an output dir).
    pub fn keeps_log_file(&self) -> bool {
        matches!(
            self,
            Command::Deploy(_) | Command::Demo(_) | Command::Destroy(_)
        )
    }
}

#[derive(Args)]
pub struct ConfigArg {
    /// The rollout description (see deploy.toml.example). Without it: $PVE_ROLLOUT_CONFIG,
    /// then ./deploy.toml, then $XDG_CONFIG_HOME/pve-rollout/deploy.toml (~/.config when unset).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{text}' is not a positive number")),
    }
}

/// An error that already says everything, with the exit code it calls for.
pub struct Exit(pub u8);

pub async fn dispatch(command: Command, dashboard: bool, log: LogFile) -> Result<u8> {
    let result = match command {
        Command::Sim(args) => {
            sim::run_cli(args).await.wrap_err("simulator")?;
            Ok(0)
        }
        Command::Init(a) => onboard::init(a).await,
        Command::ImportTf(a) => onboard::import_tf(a),
        Command::Check(a) => inspect::check(a.config.as_deref()).await,
        Command::Plan(a) => inspect::plan_only(a).await,
        Command::Deploy(a) => deploy::deploy(a, dashboard, &log).await,
        Command::Demo(a) => deploy::demo(a, dashboard, &log).await,
        Command::Destroy(a) => destroy::destroy(a, &log).await,
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
    };
    match result {
        Ok(code) => Ok(code),
        Err(Exit(code)) => Ok(code),
    }
}

/// Finds the config (`-c`, or the discovery order), loads it and prints its warnings.
fn load_config(explicit: Option<&Path>) -> Result<Config, Exit> {
    let path = config::resolve_config_path(explicit).map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code() as u8)
    })?;
    let config = Config::load(&path).map_err(|e| {
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
