//! `init` (a deploy.toml from what the cluster has) and `import-tf` (from the original
//! Terraform/OpenTofu setup).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use pve_rollout::config::{Config, PASSWORD_ENV, TOKEN_SECRET_ENV, format_size};
use pve_rollout::engine::plan;
use pve_rollout::onboard::Draft;
use pve_rollout::onboard::discover::{self, Discovery, Template};
use pve_rollout::pve::{Auth, Client, ClientConfig, Secret, TlsTrust};

use super::Exit;

/// The original flow's sizes, proposed unless the cluster cannot hold them.
const SEED_MEMORY_MIB: u64 = 32768;
const SEED_DISK: u64 = 128 << 30;
const SEED_VMS: usize = 2;

#[derive(Args)]
pub struct InitArgs {
    /// The API endpoint, e.g. https://pve1.example.org:8006.
    #[arg(long, value_name = "URL")]
    url: String,
    /// Log in with this API token (user@realm!name); its secret comes from env PVE_TOKEN_SECRET.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "user",
        required_unless_present = "user"
    )]
    token_id: Option<String>,
    /// Log in as this user (user@realm); the password comes from env PVE_PASSWORD.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Trust the server by its certificate's SHA-256 fingerprint.
    #[arg(long, value_name = "SHA256", conflicts_with_all = ["ca_cert", "insecure"])]
    fingerprint: Option<String>,
    /// Trust the server through this PEM CA file (such as a copy of /etc/pve/pve-root-ca.pem).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca_cert: Option<PathBuf>,
    /// Accept any certificate (only on purpose, on a lab network).
    #[arg(long)]
    insecure: bool,
    /// The cloud-init template to clone (name or vmid). [default: asked, or `ubuntu`, or the first]
    #[arg(long, value_name = "NAME|VMID")]
    template: Option<String>,
    /// How many VMs. [default: asked, or 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    vms: Option<u16>,
    /// VM name prefix (VMs are <prefix>-1 .. <prefix>-N). [default: asked, or <template>-vm]
    #[arg(long, value_name = "NAME")]
    prefix: Option<String>,
    /// Nodes to place VMs on, comma-separated. [default: all online nodes when a shared
    /// storage reaches them all, else the template's node]
    #[arg(long, value_name = "NODE,...", value_delimiter = ',')]
    nodes: Vec<String>,
    /// Storage for the clones' disks. [default: the one with the most free space]
    #[arg(long, value_name = "STORAGE")]
    storage: Option<String>,
    /// Bridge for net0. [default: the template's, when on every node]
    #[arg(long, value_name = "BRIDGE")]
    bridge: Option<String>,
    /// Where to write the config.
    #[arg(short, long, value_name = "FILE", default_value = "deploy.toml")]
    output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Ask nothing: take the flags and the defaults (automatic when stdin is not a terminal).
    #[arg(short, long)]
    yes: bool,
}

fn fail(code: u8, text: impl std::fmt::Display) -> Exit {
    eprintln!("error: {text}");
    Exit(code)
}

/// Refuses to overwrite `path` without `--force` (exit 2), before any work.
pub fn check_writable(path: &Path, force: bool) -> Result<(), Exit> {
    if path.exists() && !force {
        return Err(fail(
            2,
            format!("{} exists; pass --force to overwrite it", path.display()),
        ));
    }
    Ok(())
}

/// Validates `draft` as a config, then writes it (atomically: a temp file renamed).
pub fn write_config(path: &Path, text: &str) -> Result<Config, Exit> {
    let config = Config::parse(text, &path.display().to_string())
        .map_err(|e| fail(2, format!("the config to write is not valid (a bug): {e}")))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| fail(1, format!("writing {}: {e}", path.display())))?;
    Ok(config)
}

/// One question on the terminal; an empty answer takes `default`.
fn ask(question: &str, default: &str) -> String {
    print!("{question} [{default}]: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    match line.trim() {
        "" => default.to_string(),
        answer => answer.to_string(),
    }
}

fn client(args: &InitArgs) -> Result<Client, Exit> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let auth = match (&args.token_id, &args.user) {
        (Some(token_id), _) => Auth::Token {
            token_id: token_id.clone(),
            secret: Secret::new(env(TOKEN_SECRET_ENV).ok_or_else(|| {
                fail(
                    2,
                    format!("--token-id needs its secret in env {TOKEN_SECRET_ENV}"),
                )
            })?),
        },
        (None, Some(user)) => Auth::Password {
            user: user.clone(),
            password: Secret::new(env(PASSWORD_ENV).ok_or_else(|| {
                fail(
                    2,
                    format!("--user needs the password in env {PASSWORD_ENV}"),
                )
            })?),
        },
        (None, None) => return Err(fail(2, "pass --token-id or --user")),
    };
    let mut config = ClientConfig::new(args.url.clone(), auth);
    config.tls = if let Some(fp) = &args.fingerprint {
        TlsTrust::Fingerprint(fp.clone())
    } else if let Some(ca) = &args.ca_cert {
        TlsTrust::CaFile(ca.clone())
    } else if args.insecure {
        eprintln!(
            "warning: --insecure: the server's certificate is not checked; pin it with --fingerprint instead"
        );
        TlsTrust::Insecure
    } else {
        TlsTrust::System
    };
    Client::new(config).map_err(|e| fail(2, e))
}

pub async fn init(args: InitArgs) -> Result<u8, Exit> {
    check_writable(&args.output, args.force)?;
    let client = client(&args)?;
    let found = discover::discover(&client)
        .await
        .map_err(|e| fail(3, format!("cannot use {}: {e}", client.url())))?;
    print_found(&found);
    let interactive = !args.yes && std::io::stdin().is_terminal();

    let mut wanted = args.template.clone();
    if wanted.is_none() && interactive && found.templates.len() > 1 {
        let default = found.template(None).map_err(|e| fail(3, e))?;
        wanted = Some(ask("Template to clone (name or vmid)", &default.name));
    }
    let template = found.template(wanted.as_deref()).map_err(|e| fail(3, e))?;
    let vms = match args.vms {
        Some(n) => usize::from(n),
        None if interactive => ask("How many VMs", &SEED_VMS.to_string())
            .parse()
            .map_err(|_| fail(2, "the number of VMs must be a whole number"))?,
        None => SEED_VMS,
    };
    let default_prefix = format!("{}-vm", sanitize(&template.name));
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None if interactive => ask("VM name prefix", &default_prefix),
        None => default_prefix,
    };
    let placement = found
        .placement(
            template,
            &args.nodes,
            args.storage.as_deref(),
            args.bridge.as_deref(),
        )
        .map_err(|e| fail(3, e))?;
    let draft = draft(&args, &found, template, vms, prefix, placement);
    let text = draft.render();
    let config =
        Config::parse(&text, &args.output.display().to_string()).map_err(|e| fail(2, e))?;
    // The file must plan cleanly against this cluster: the preflight runs before it is written.
    let plan = plan::build(&client, &config).await.map_err(|e| {
        fail(
            e.exit_code() as u8,
            format!("{e}\nnothing written; adjust with --template, --vms, --prefix, --nodes, --storage or --bridge"),
        )
    })?;
    write_config(&args.output, &text)?;
    println!(
        "wrote {}: {} VM(s) from template '{}' on {}; next: pve-rollout plan -c {}",
        args.output.display(),
        plan.vms.len(),
        plan.template_name,
        config.rollout.nodes.join(", "),
        args.output.display()
    );
    Ok(0)
}

/// A name PVE accepts as a VM name part: letters, digits, hyphens.
fn sanitize(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "vm".into() } else { out }
}

fn print_found(found: &Discovery) {
    println!("Proxmox VE {}", found.version);
    for n in &found.nodes {
        let memory = match (n.mem_free, n.mem_total) {
            (Some(free), Some(total)) => format!("{} of {} GiB free", free >> 30, total >> 30),
            _ => "memory unknown".into(),
        };
        let bridges = n.bridges.as_ref().map_or("?".into(), |b| b.join(" "));
        let storages: Vec<String> = n
            .image_storages
            .iter()
            .map(|s| format!("{}{}", s.storage, if s.shared { " (shared)" } else { "" }))
            .collect();
        println!(
            "node {}: {memory}; bridges: {bridges}; image storages: {}; snippets: {}",
            n.node,
            storages.join(" "),
            if n.snippet_storages.is_empty() {
                "-".into()
            } else {
                n.snippet_storages.join(" ")
            }
        );
    }
    for n in &found.offline {
        println!("node {n}: offline");
    }
    for t in &found.templates {
        println!(
            "cloud-init template {} ({} on {}, cloud-init drive {})",
            t.name, t.vmid, t.node, t.cloudinit_drive
        );
    }
    for note in &found.notes {
        println!("note: {note}");
    }
}

fn draft(
    args: &InitArgs,
    found: &Discovery,
    template: &Template,
    vms: usize,
    prefix: String,
    placement: discover::Placement,
) -> Draft {
    let mut d = Draft {
        header: vec![format!(
            "deploy.toml written by `pve-rollout init` from {} (Proxmox VE {}).",
            args.url, found.version
        )],
        url: args.url.clone(),
        token_id: args.token_id.clone(),
        user: args.user.clone(),
        fingerprint: args.fingerprint.clone(),
        ca_cert: args.ca_cert.as_ref().map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        }),
        insecure: args.insecure,
        template: Some(template.name.clone()),
        vm_count: Some(vms),
        vm_name_prefix: Some(prefix),
        nodes: placement.nodes.clone(),
        storage: Some(placement.storage.clone()),
        bridge: Some(placement.bridge.clone()),
        ..Draft::default()
    };
    let list = found
        .templates
        .iter()
        .map(|t| format!("{} ({} on {})", t.name, t.vmid, t.node))
        .collect::<Vec<_>>()
        .join(", ");
    d.note(
        "rollout.template",
        format!("Cloud-init templates found: {list}."),
    );
    d.note(
        "rollout.nodes",
        format!(
            "Online nodes: {}.",
            found
                .nodes
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    // Memory: the original flow's 32 GiB each, unless the chosen nodes cannot hold them all.
    let mut memory = SEED_MEMORY_MIB;
    if let Some(free) = found.free_memory(&placement.nodes) {
        let fits = (free >> 20) * 8 / 10 / vms.max(1) as u64;
        if fits < memory {
            memory = (fits / 1024 * 1024).max(1024);
            d.note(
                "defaults.memory",
                format!(
                    "{} GiB free on the chosen nodes: {memory} MiB each keeps 20% spare (the original flow used 32768).",
                    free >> 30
                ),
            );
        }
    }
    d.memory = Some(memory);
    let disk = template.boot_disk_size.unwrap_or(0).max(SEED_DISK);
    d.disk_size = Some(format_size(disk));
    if let Some(size) = template.boot_disk_size {
        d.note(
            "defaults.disk_size",
            format!(
                "The template's disk is {}; clones are grown, never shrunk.",
                format_size(size)
            ),
        );
    }
    // Each storage once: shared, or local and on how many of the chosen nodes.
    let mut storages: Vec<(String, bool, usize)> = Vec::new();
    let mut snippets: Vec<String> = Vec::new();
    for n in found
        .nodes
        .iter()
        .filter(|n| placement.nodes.contains(&n.node))
    {
        for s in &n.image_storages {
            match storages.iter_mut().find(|(name, ..)| *name == s.storage) {
                Some(entry) => entry.2 += 1,
                None => storages.push((s.storage.clone(), s.shared, 1)),
            }
        }
        for s in &n.snippet_storages {
            if !snippets.contains(s) {
                snippets.push(s.clone());
            }
        }
    }
    let storages: Vec<String> = storages
        .iter()
        .map(|(name, shared, count)| match shared {
            true => format!("{name} (shared)"),
            false => format!(
                "{name} (local, on {count} of {} nodes)",
                placement.nodes.len()
            ),
        })
        .collect();
    let snippets = if snippets.is_empty() {
        "none".to_string()
    } else {
        snippets.join(", ")
    };
    d.note(
        "defaults.storage",
        format!(
            "Storages for disk images: {}. Storages for snippets (cloud-init user data): {snippets}.",
            storages.join(", ")
        ),
    );
    let bridges: Vec<String> = found
        .nodes
        .iter()
        .filter(|n| placement.nodes.contains(&n.node))
        .map(|n| {
            format!(
                "{}: {}",
                n.node,
                n.bridges.as_ref().map_or("?".into(), |b| b.join(" "))
            )
        })
        .collect();
    d.note(
        "defaults.bridge",
        format!("Bridges: {}.", bridges.join("; ")),
    );
    d
}

#[derive(Args)]
pub struct ImportTfArgs {
    /// The directory of the Terraform/OpenTofu setup (terraform.tfvars, variables.tf, *.tf).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the config.
    #[arg(short, long, value_name = "FILE", default_value = "deploy.toml")]
    output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Use this API endpoint instead of the provider's pm_api_url.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Use this API token instead of the provider's pm_api_token_id.
    #[arg(long, value_name = "ID")]
    token_id: Option<String>,
    /// Pin the server's certificate by its SHA-256 fingerprint (instead of pm_tls_insecure).
    #[arg(long, value_name = "SHA256")]
    fingerprint: Option<String>,
}

pub fn import_tf(args: ImportTfArgs) -> Result<u8, Exit> {
    use pve_rollout::onboard::terraform;
    check_writable(&args.output, args.force)?;
    let mut import = terraform::import_dir(&args.dir).map_err(|e| fail(2, e))?;
    let draft = &mut import.draft;
    if let Some(url) = args.url {
        draft.url = url;
    }
    if let Some(token_id) = args.token_id {
        draft.token_id = Some(token_id);
        draft.user = None;
    }
    if let Some(fp) = args.fingerprint {
        draft.fingerprint = Some(fp);
        draft.insecure = false;
        draft.notes.retain(|(key, _)| key != "proxmox.insecure");
    }
    if draft.url.is_empty() {
        return Err(fail(
            2,
            "no pm_api_url in the provider \"proxmox\" block: pass --url https://HOST:8006",
        ));
    }
    if draft.insecure {
        eprintln!(
            "warning: pm_tls_insecure = true became insecure = true: the server's certificate is not checked; pin it with --fingerprint instead"
        );
    }
    let mut text = draft.render();
    if !import.skipped.is_empty() {
        text.push_str("\n# Not translated from the Terraform setup:\n");
        for s in &import.skipped {
            text.push_str(&format!("#   {}: {}: {}\n", s.place, s.what, s.reason));
        }
    }
    write_config(&args.output, &text)?;
    println!("translated:");
    for t in &import.translated {
        println!("  {t}");
    }
    println!("not translated ({}):", import.skipped.len());
    for s in &import.skipped {
        println!("  {}: {}: {}", s.place, s.what, s.reason);
    }
    println!(
        "wrote {}; check it with: pve-rollout plan -c {}",
        args.output.display(),
        args.output.display()
    );
    Ok(0)
}
