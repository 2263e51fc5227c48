//! pve-rollout: the command line. Parses, sets up error reports and tracing, and hands over to
//! the dashboard or the headless printer; everything else lives in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use color_eyre::eyre::{Result, WrapErr};
use tokio::sync::mpsc;

use pve_rollout::config::Config;
use pve_rollout::demo::{self, DemoSettings};
use pve_rollout::engine::{self, Clock, Rollout, plan};
use pve_rollout::pve::Client;
use pve_rollout::{headless, sim, ui};

#[derive(Parser)]
#[command(
    name = "pve-rollout",
    version,
    about = "Roll out fleets of VMs on Proxmox VE and prove each one healthy, live in the terminal",
    long_about = "Clones a cloud-init template N times with a stagger, configures and starts each \
    clone, then proves it healthy through the QEMU guest agent (IP, pings, guest-exec, \
    `uname -a`), all through the Proxmox VE API. Exit codes: 0 every VM verified, 1 some VM \
    failed or was skipped, 2 bad config or usage, 3 cannot reach or authenticate to Proxmox, \
    or preflight failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Roll out the VMs described in deploy.toml and verify each one.
    Deploy(DeployArgs),
    /// Dry run: resolve names, VM ids, nodes and resources, check the cluster, change nothing.
    Plan(ConfigArg),
    /// Connect and authenticate, then show the PVE version, the nodes and the template.
    Check(ConfigArg),
    /// A whole rollout against the built-in Proxmox simulator: no cluster needed.
    Demo(DemoArgs),
    /// Run the Proxmox VE simulator as a standalone HTTPS server.
    Sim(sim::SimArgs),
    /// Stop and delete (purge) exactly the VMs this rollout created, after confirmation.
    Destroy(DestroyArgs),
}

#[derive(Args)]
struct DestroyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(short, long)]
    yes: bool,
    /// The output dir holding the rollout's journal (overrides [output] dir).
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Scale the clock of the task polling (as for deploy).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive_f64)]
    time_scale: f64,
}

#[derive(Args)]
struct ConfigArg {
    /// The rollout description (see deploy.toml.example).
    #[arg(short, long, value_name = "FILE", default_value = "deploy.toml")]
    config: PathBuf,
}

#[derive(Args)]
struct DeployArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Plain coloured lines instead of the dashboard (automatic when stdout is not a terminal).
    #[arg(long)]
    headless: bool,
    /// Where the summary files go (overrides [output] dir).
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Scale the engine's own clock (delays, timeouts, poll intervals), e.g. 0.01 against a
    /// simulator started with the same time scale.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive_f64)]
    time_scale: f64,
}

#[derive(Args)]
struct DemoArgs {
    /// Plain coloured lines instead of the dashboard.
    #[arg(long)]
    headless: bool,
    /// How many VMs to roll out.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    vms: u16,
    /// Simulator scenario: fast, realistic, flaky, stuck, cluster, or a scenario file.
    #[arg(long, default_value = "fast")]
    scenario: String,
    /// Where the summary files go.
    #[arg(short, long, value_name = "DIR", default_value = "demo-out")]
    output: PathBuf,
    /// Simulator seed (the same seed replays the same rollout).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run simulator and engine this many times faster than real time (e.g. 10).
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    speed: f64,
    /// Checks mode: pipelined (default) or sequential (the seed's order).
    #[arg(long, default_value = "pipelined", value_parser = ["pipelined", "sequential"])]
    mode: String,
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{text}' is not a positive number")),
    }
}

/// An error that already says everything, with the exit code it calls for.
struct Exit(u8);

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
    let dashboard = match &cli.command {
        Command::Deploy(a) => !a.headless && std::io::stdout().is_terminal(),
        Command::Demo(a) => !a.headless && std::io::stdout().is_terminal(),
        _ => false,
    };
    // The simulator reports what it serves at info; a rollout prints its own lines.
    let default_filter = match &cli.command {
        Command::Sim(_) => "info",
        _ => "warn",
    };
    init_tracing(dashboard, default_filter);
    match runtime.block_on(dispatch(cli.command, dashboard)) {
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

async fn dispatch(command: Command, dashboard: bool) -> Result<u8> {
    let result = match command {
        Command::Sim(args) => {
            sim::run_cli(args).await.wrap_err("simulator")?;
            Ok(0)
        }
        Command::Check(a) => check(&a.config).await,
        Command::Plan(a) => plan_only(&a.config).await,
        Command::Deploy(a) => deploy(a, dashboard).await,
        Command::Demo(a) => demo(a, dashboard).await,
        Command::Destroy(a) => destroy(a).await,
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

async fn check(path: &Path) -> Result<u8, Exit> {
    let config = load_config(path)?;
    let client = connect(&config, 1.0).await?;
    let report = client.check().await.map_err(|e| {
        eprintln!("error: {e}");
        Exit(3)
    })?;
    println!(
        "connected to {} ({}, {})",
        report.url, report.auth, report.tls
    );
    println!(
        "Proxmox VE {} (release {}, repoid {})",
        report.version.version, report.version.release, report.version.repoid
    );
    for node in &report.nodes {
        let memory = match (node.mem, node.maxmem) {
            (Some(used), Some(max)) => format!(", memory {} of {} GiB used", used >> 30, max >> 30),
            _ => String::new(),
        };
        println!("node {}: {}{memory}", node.node, node.status);
    }
    let plan = make_plan(&client, &config).await?;
    println!(
        "template '{}' found; {} VM(s) can be placed",
        plan.template_name,
        plan.vms.len()
    );
    Ok(0)
}

async fn make_plan(client: &Client, config: &Config) -> Result<plan::Plan, Exit> {
    plan::build(client, config).await.map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code() as u8)
    })
}

async fn plan_only(path: &Path) -> Result<u8, Exit> {
    let config = load_config(path)?;
    let client = connect(&config, 1.0).await?;
    let plan = make_plan(&client, &config).await?;
    print!("{}", plan.table());
    println!(
        "{} VM(s) from template '{}'; nothing was changed.",
        plan.vms.len(),
        plan.template_name
    );
    Ok(0)
}

async fn deploy(args: DeployArgs, dashboard: bool) -> Result<u8, Exit> {
    let mut config = load_config(&args.config.config)?;
    if let Some(dir) = args.output {
        config.output.dir = dir;
    }
    let client = connect(&config, args.time_scale).await?;
    let plan = make_plan(&client, &config).await?;
    if plan.already_done() {
        // Run again after it finished: everything is verified and still running; touch nothing.
        println!(
            "rollout '{}' is already complete: all {} VM(s) were verified (journal {}) and are running; nothing to do",
            plan.rollout_id,
            plan.vms.len(),
            engine::journal::path_in(&config.output.dir).display()
        );
        return Ok(0);
    }
    roll_out(client, config, plan, args.time_scale, dashboard).await
}

/// Runs the engine with the dashboard or the headless printer watching it.
async fn roll_out(
    client: Client,
    config: Config,
    plan: plan::Plan,
    time_scale: f64,
    dashboard: bool,
) -> Result<u8, Exit> {
    let title = format!("pve-rollout · {}", plan.rollout_id);
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let rollout = Rollout {
        client,
        config,
        plan,
        clock: Clock::new(time_scale),
        linger: dashboard,
    };
    let engine = tokio::spawn(engine::run(rollout, event_tx, command_rx));
    if dashboard {
        let outcome = ui::run(event_rx, command_tx, ui::UiOptions::new(title))
            .await
            .map_err(|e| {
                eprintln!("error: the dashboard failed: {e}");
                Exit(1)
            })?;
        if outcome.forced {
            eprintln!("stopped at once (second Ctrl-C); outputs may be incomplete");
            return Ok(1);
        }
        print_outputs(&outcome.exported);
        let summary = engine.await.map_err(|_| Exit(1))?;
        Ok(u8::try_from(headless::exit_code(&summary)).unwrap_or(1))
    } else {
        let color = headless::color_enabled(std::io::stdout().is_terminal());
        let outcome = headless::run(event_rx, command_tx, std::io::stdout(), color).await;
        if !outcome.forced {
            // Let the engine finish its last writes.
            let _ = engine.await;
        }
        Ok(u8::try_from(outcome.exit_code).unwrap_or(1))
    }
}

/// Lists this rollout's VMs, asks, then stops and deletes them. Safe to run again: a second run
/// finds nothing and exits 0. Exit 1 when a removal failed or the operator said no, 2 when it
/// cannot ask (no terminal, no --yes), 3 when Proxmox cannot be used.
async fn destroy(args: DestroyArgs) -> Result<u8, Exit> {
    use std::io::{BufRead, Write};
    let mut config = load_config(&args.config.config)?;
    if let Some(dir) = args.output {
        config.output.dir = dir;
    }
    let client = connect(&config, args.time_scale).await?;
    let found = engine::destroy::find(&client, &config).await.map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code() as u8)
    })?;
    let rollout = &config.rollout.name;
    for note in &found.spared {
        println!("leaving alone: {note}");
    }
    if found.targets.is_empty() {
        println!("nothing to remove: no VM of rollout '{rollout}' exists");
        return Ok(0);
    }
    println!(
        "will stop and delete (purge) {} VM(s) of rollout '{rollout}':",
        found.targets.len()
    );
    for t in &found.targets {
        println!(
            "  {:>7}  {:<24} {:<10} {}",
            t.vmid, t.name, t.node, t.status
        );
    }
    // Held until the end: no deploy of this rollout can start meanwhile, nor can this run
    // while one is going on.
    let journal = engine::journal::Journal::open(&config.output.dir).map_err(|e| {
        eprintln!("error: not removing anything: {e}");
        Exit(1)
    })?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: not removing anything: stdin is not a terminal to confirm on; pass --yes to remove these VMs"
            );
            return Ok(2);
        }
        print!("Remove them? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("nothing removed");
            return Ok(1);
        }
    }
    let results = engine::destroy::remove(
        &client,
        &journal,
        Clock::new(args.time_scale),
        found.targets,
    )
    .await;
    let mut failed = 0;
    for r in &results {
        match &r.result {
            Ok(()) => println!("removed VM {} '{}'", r.target.vmid, r.target.name),
            Err(e) => {
                failed += 1;
                println!(
                    "could not remove VM {} '{}': {e}",
                    r.target.vmid, r.target.name
                );
            }
        }
    }
    println!(
        "removed {} of {} VM(s)",
        results.len() - failed,
        results.len()
    );
    Ok(if failed == 0 { 0 } else { 1 })
}

async fn demo(args: DemoArgs, dashboard: bool) -> Result<u8, Exit> {
    let scenario = sim::Scenario::builtin(&args.scenario)
        .or_else(|_| sim::Scenario::load(Path::new(&args.scenario)))
        .map_err(|e| {
            eprintln!(
                "error: --scenario '{}': {e} (built in: {})",
                args.scenario,
                sim::Scenario::names().join(", ")
            );
            Exit(2)
        })?;
    let time_scale = 1.0 / args.speed;
    let simulator = sim::start(sim::SimOptions {
        scenario,
        seed: args.seed,
        time_scale,
        ..sim::SimOptions::default()
    })
    .await
    .map_err(|e| {
        eprintln!("error: the simulator did not start: {e}");
        Exit(1)
    })?;
    let client = Client::new(demo::client_config(&simulator, 2, time_scale)).map_err(|e| {
        eprintln!("error: {e}");
        Exit(3)
    })?;
    let nodes = demo::online_nodes(&client).await.map_err(|e| {
        eprintln!("error: the simulator did not answer: {e}");
        Exit(3)
    })?;
    let settings = DemoSettings {
        vms: usize::from(args.vms),
        mode: args.mode.clone(),
        output: args.output.clone(),
        // Several nodes means cross-node clones, which PVE allows only onto shared storage.
        storage: if nodes.len() > 1 { "shared" } else { "ssd" }.into(),
        nodes,
        ..DemoSettings::default()
    };
    let config = demo::config(&simulator, &settings).map_err(|e| {
        eprintln!("error: demo configuration: {e}");
        Exit(2)
    })?;
    let plan = make_plan(&client, &config).await?;
    let code = roll_out(client, config, plan, time_scale, dashboard).await;
    simulator.shutdown().await;
    code
}

/// The summary files by path, the seed's per-VM files as a count: a 50-VM rollout's 100 per-VM
/// files would push the summary's path off the screen.
fn print_outputs(paths: &[PathBuf]) {
    // Under tmux the first line printed right after leaving the alternate screen was sometimes
    // lost (about 1 run in 3 of the tmux test); a blank line takes that place.
    println!();
    let (per_vm, main): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vm_"))
    });
    for path in main {
        println!("wrote {}", path.display());
    }
    if let Some(dir) = per_vm.first().and_then(|p| p.parent()) {
        println!(
            "wrote {} per-VM files (vm_<VMID>_ip.txt, vm_<VMID>_summary.txt) in {}",
            per_vm.len(),
            dir.display()
        );
    }
}
