//! `deploy` and `demo`: a rollout with the dashboard or the headless printer watching it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use tokio::sync::mpsc;

use pve_rollout::config::Config;
use pve_rollout::demo::{self, DemoSettings};
use pve_rollout::engine::{self, Clock, Rollout, plan};
use pve_rollout::pve::Client;
use pve_rollout::{headless, sim, ui};

use super::logfile::LogFile;
use super::watch::{self, EventsFormat};
use super::{ConfigArg, Exit, connect, load_config, make_plan, positive_f64};

#[derive(Args)]
pub struct DeployArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Plain coloured lines instead of the dashboard (automatic when stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Where the summary files go (overrides [output] dir).
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Resume even when the settings differ from the journal's last run (without a terminal to
    /// ask on, a changed config is refused otherwise).
    #[arg(long)]
    accept_changes: bool,
    /// Write the engine's events on stdout in this machine-readable form (implies --headless;
    /// the human lines go to stderr).
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub events: Option<EventsFormat>,
    /// Where the run's log records go (info and above; RUST_LOG sets the filter).
    /// [default: <output dir>/pve-rollout.log]
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Scale the engine's own clock (delays, timeouts, poll intervals), e.g. 0.01 against a
    /// simulator started with the same time scale.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive_f64)]
    time_scale: f64,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Plain coloured lines instead of the dashboard.
    #[arg(long)]
    pub headless: bool,
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
    /// Checks mode: pipelined (default) or sequential (the original wait_for_vm.sh flow's order).
    #[arg(long, default_value = "pipelined", value_parser = ["pipelined", "sequential"])]
    mode: String,
    /// Write the engine's events on stdout in this machine-readable form (as for deploy).
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub events: Option<EventsFormat>,
    /// Where the run's log records go. [default: <output dir>/pve-rollout.log]
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

/// How a rollout is watched.
pub struct Watch {
    pub dashboard: bool,
    pub events: Option<EventsFormat>,
}

/// Opens the log file (`--log-file`, or in the output dir); a failure is said and the run goes on.
pub fn open_log(log: &LogFile, explicit: Option<&Path>, output_dir: &Path) {
    match log.open(explicit, output_dir) {
        Ok(path) => tracing::info!(
            "pve-rollout {} logging to {}",
            env!("CARGO_PKG_VERSION"),
            path.display()
        ),
        Err(e) => eprintln!("warning: no log file: {e}"),
    }
}

pub async fn deploy(args: DeployArgs, dashboard: bool, log: &LogFile) -> Result<u8, Exit> {
    let mut config = load_config(args.config.config.as_deref())?;
    if let Some(dir) = args.output {
        config.output.dir = dir;
    }
    open_log(log, args.log_file.as_deref(), &config.output.dir);
    let client = connect(&config, args.time_scale).await?;
    let plan = make_plan(&client, &config).await?;
    confirm_changes(&plan, &config, args.accept_changes)?;
    if plan.already_done() && !hooks_pending(&config, &plan) {
        // Run again after it finished: everything is verified and still running; touch nothing.
        // stdout carries only JSON lines with --events.
        let say = |text: String| match args.events {
            Some(_) => eprintln!("{text}"),
            None => println!("{text}"),
        };
        say(format!(
            "rollout '{}' is already complete: all {} VM(s) were verified (journal {}) and are running; nothing to do",
            plan.rollout_id,
            plan.vms.len(),
            engine::journal::path_in(&config.output.dir).display()
        ));
        return Ok(0);
    }
    let watch = Watch {
        dashboard,
        events: args.events,
    };
    roll_out(client, config, plan, args.time_scale, watch).await
}

/// A resume whose settings differ from the journal's last run lists what changed, then asks on
/// a terminal (no: exit 1), or refuses without one (exit 2) unless `accept`.
fn confirm_changes(plan: &plan::Plan, config: &Config, accept: bool) -> Result<(), Exit> {
    use std::io::{BufRead, Write};
    let path = engine::journal::path_in(&config.output.dir);
    let history = engine::journal::History::read(&path).map_err(|e| {
        eprintln!("error: {e}");
        Exit(1)
    })?;
    // Only a rollout with VMs still standing is resumed; after `destroy` it starts afresh.
    let standing = history
        .vms
        .values()
        .any(|vm| vm.step != engine::journal::Step::Destroyed);
    let engine::settings::Comparison::Changed(changes) = engine::settings::compare(plan, &history)
    else {
        return Ok(());
    };
    if !standing {
        return Ok(());
    }
    eprintln!(
        "the settings differ from the last run of rollout '{}' (journal {}):",
        plan.rollout_id,
        path.display()
    );
    if changes.is_empty() {
        eprintln!(
            "  (that run's journal holds only a digest of them, so what changed cannot be listed)"
        );
    }
    for change in &changes {
        eprintln!("  {change}");
    }
    eprintln!("VMs that exist already keep what they were created with.");
    if accept {
        eprintln!("going on with the new settings (--accept-changes)");
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: not resuming: stdin is not a terminal to confirm on; pass --accept-changes to go on with the new settings, or restore the old ones"
        );
        return Err(Exit(2));
    }
    eprint!("Go on with the new settings? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        eprintln!("nothing was done");
        Err(Exit(1))
    }
}

/// Some VM's `on_verified` hook has not ended ok in any run so far (cut off, failed, never
/// reached): the rollout is not complete even when every VM is verified.
fn hooks_pending(config: &Config, plan: &plan::Plan) -> bool {
    if config.hooks.on_verified.is_none() {
        return false;
    }
    let journal = engine::journal::path_in(&config.output.dir);
    match engine::journal::History::read(&journal) {
        Ok(history) => plan
            .vms
            .iter()
            .any(|vm| !history.hook_done(&vm.name, vm.vmid)),
        // The engine opens it again and says what is wrong.
        Err(_) => true,
    }
}

/// Runs the engine with the dashboard or the headless printer watching it.
async fn roll_out(
    client: Client,
    config: Config,
    plan: plan::Plan,
    time_scale: f64,
    watch: Watch,
) -> Result<u8, Exit> {
    let dashboard = watch.dashboard;
    let title = format!("pve-rollout · {}", plan.rollout_id);
    let (event_tx, engine_events) = mpsc::unbounded_channel();
    let (watcher_tx, event_rx) = mpsc::unbounded_channel();
    tokio::spawn(watch::tee(engine_events, watcher_tx, watch.events));
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
        // After SIGHUP the terminal is gone: writes to it fail, and must not panic (`println!`
        // would) before the engine's outputs are on disk.
        match ui::run(event_rx, command_tx, ui::UiOptions::new(title)).await {
            Ok(outcome) if outcome.forced => {
                say_err("stopped at once (second Ctrl-C or signal); outputs may be incomplete");
                return Ok(headless::EXIT_FORCED as u8);
            }
            Ok(outcome) => print_outputs(&outcome.exported),
            // The UI told the engine to abort on its way out; its outputs still get written.
            Err(e) => say_err(&format!(
                "error: the dashboard failed: {e}; the rollout is aborted and its outputs written"
            )),
        }
        let summary = engine.await.map_err(|_| Exit(1))?;
        Ok(u8::try_from(headless::exit_code(&summary)).unwrap_or(1))
    } else {
        let outcome = if watch.events.is_some() {
            // stdout is the event stream; the human lines go to stderr.
            let color = headless::color_enabled(std::io::stderr().is_terminal());
            headless::run(event_rx, command_tx, std::io::stderr(), color).await
        } else {
            let color = headless::color_enabled(std::io::stdout().is_terminal());
            headless::run(event_rx, command_tx, std::io::stdout(), color).await
        };
        if !outcome.forced {
            // Let the engine finish its last writes.
            let _ = engine.await;
        }
        Ok(u8::try_from(outcome.exit_code).unwrap_or(1))
    }
}

pub async fn demo(args: DemoArgs, dashboard: bool, log: &LogFile) -> Result<u8, Exit> {
    open_log(log, args.log_file.as_deref(), &args.output);
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
    let watch = Watch {
        dashboard,
        events: args.events,
    };
    let code = roll_out(client, config, plan, time_scale, watch).await;
    simulator.shutdown().await;
    code
}

/// A line on stderr, never a panic when the terminal is gone.
fn say_err(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The summary files by path, the original wait_for_vm.sh flow's per-VM files as a count: a
/// 50-VM rollout's 100 per-VM files would push the summary's path off the screen. Write errors
/// (a terminal gone with SIGHUP) are ignored: the files are what matters.
fn print_outputs(paths: &[PathBuf]) {
    use std::io::Write;
    let mut out = std::io::stdout();
    // Under tmux the first line printed right after leaving the alternate screen was sometimes
    // lost (about 1 run in 3 of the tmux test); a blank line takes that place.
    let _ = writeln!(out);
    let (per_vm, main): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vm_"))
    });
    for path in main {
        let _ = writeln!(out, "wrote {}", path.display());
    }
    if let Some(dir) = per_vm.first().and_then(|p| p.parent()) {
        let _ = writeln!(
            out,
            "wrote {} per-VM files (vm_<VMID>_ip.txt, vm_<VMID>_summary.txt) in {}",
            per_vm.len(),
            dir.display()
        );
    }
}
