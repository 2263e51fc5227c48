//! `destroy`: remove exactly the VMs this rollout created, after confirmation.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use pve_rollout::engine::{self, Clock};

use super::logfile::LogFile;
use super::{ConfigArg, Exit, connect, load_config, positive_f64};

#[derive(Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(short, long)]
    yes: bool,
    /// The output dir holding the rollout's journal (overrides [output] dir).
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Where the run's log records go. [default: <output dir>/pve-rollout.log]
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Scale the clock of the task polling (as for deploy).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = positive_f64)]
    time_scale: f64,
}

/// Lists this rollout's VMs, asks, then stops and deletes them. Safe to run again: a second run
/// finds nothing and exits 0. Exit 1 when a removal failed or the operator said no, 2 when it
/// cannot ask (no terminal, no --yes), 3 when Proxmox cannot be used.
pub async fn destroy(args: DestroyArgs, log: &LogFile) -> Result<u8, Exit> {
    use std::io::{BufRead, Write};
    let mut config = load_config(args.config.config.as_deref())?;
    if let Some(dir) = args.output {
        config.output.dir = dir;
    }
    super::deploy::open_log(log, args.log_file.as_deref(), &config.output.dir);
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
