//! `check` and `plan`: look at the cluster, change nothing.

use std::path::Path;

use clap::Args;

use pve_rollout::headless::json::plan_json;

use super::{ConfigArg, Exit, connect, load_config, make_plan};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the plan as one JSON document (schema version 1) instead of the table.
    #[arg(long)]
    json: bool,
}

pub async fn check(path: Option<&Path>) -> Result<u8, Exit> {
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

pub async fn plan_only(args: PlanArgs) -> Result<u8, Exit> {
    let config = load_config(args.config.config.as_deref())?;
    let client = connect(&config, 1.0).await?;
    let plan = make_plan(&client, &config).await?;
    if args.json {
        println!("{:#}", plan_json(&plan));
        return Ok(0);
    }
    print!("{}", plan.table());
    for (storage, clones, bytes) in plan.copy_per_storage() {
        println!(
            "storage {storage}: {clones} full clone(s), at most {:.1} GiB to copy",
            bytes as f64 / f64::from(1u32 << 30)
        );
    }
    println!(
        "{} VM(s) from template '{}'; nothing was changed.",
        plan.vms.len(),
        plan.template_name
    );
    Ok(0)
}
