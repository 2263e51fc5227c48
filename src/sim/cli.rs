//! `pve-rollout sim`: the simulator as a standalone HTTPS server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{AgentBackend, Scenario, SimError, SimOptions, start};

/// Run the Proxmox VE simulator (HTTPS, self-signed certificate) until Ctrl-C or SIGTERM.
#[derive(Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub listen: SocketAddr,
    /// Scenario: fast, realistic, flaky, stuck, cluster, or the path of a scenario .toml file.
    #[arg(long, default_value = "fast", value_name = "NAME|PATH")]
    pub scenario: String,
    /// Seed of every random draw (same seed + scenario = same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wall seconds per simulated second (0.01 = 100x faster).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub time_scale: f64,
    /// API token with full rights (repeatable); without one, a token is generated and printed.
    #[arg(long = "token", value_name = "USER@REALM!ID=SECRET")]
    pub tokens: Vec<String>,
    /// User for ticket login (with --password).
    #[arg(long, requires = "password", value_name = "USER@REALM")]
    pub user: Option<String>,
    /// Password of --user (or env PVE_SIM_PASSWORD).
    #[arg(
        long,
        requires = "user",
        env = "PVE_SIM_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Guest agent backend: the model, or a real qemu-ga process per running VM.
    #[arg(long, value_enum, default_value = "simulated")]
    pub agent: AgentBackend,
}

impl std::fmt::Debug for SimArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self
            .tokens
            .iter()
            .map(|t| t.rsplit_once('=').map(|(id, _)| id).unwrap_or("?"))
            .collect();
        f.debug_struct("SimArgs")
            .field("listen", &self.listen)
            .field("scenario", &self.scenario)
            .field("seed", &self.seed)
            .field("time_scale", &self.time_scale)
            .field("tokens", &ids)
            .field("user", &self.user)
            .field("agent", &self.agent)
            .finish()
    }
}

/// `USER@REALM!ID=SECRET`, split at the last `=` (the error never shows the secret).
fn parse_token(spec: &str) -> Result<(String, String), SimError> {
    let Some((id, secret)) = spec.rsplit_once('=') else {
        let shown = spec.split('=').next().unwrap_or("").to_string();
        return Err(SimError::Option {
            key: "--token",
            value: shown,
            hint: "expected USER@REALM!ID=SECRET".into(),
        });
    };
    super::auth::check_token_id(id).map_err(|hint| SimError::Option {
        key: "--token",
        value: id.to_string(),
        hint,
    })?;
    if secret.is_empty() {
        return Err(SimError::Option {
            key: "--token",
            value: id.to_string(),
            hint: "the secret after '=' is empty".into(),
        });
    }
    Ok((id.to_string(), secret.to_string()))
}

fn write_private(path: &PathBuf, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

pub async fn run_cli(args: SimArgs) -> Result<(), SimError> {
    let scenario = Scenario::by_name_or_path(&args.scenario)?;
    let mut opts = SimOptions {
        listen: args.listen,
        scenario,
        seed: args.seed,
        time_scale: args.time_scale,
        agent: args.agent,
        ..SimOptions::default()
    };
    let generated = args.tokens.is_empty();
    if !generated {
        opts.tokens = args
            .tokens
            .iter()
            .map(|t| parse_token(t))
            .collect::<Result<_, _>>()?;
    }
    if let (Some(u), Some(p)) = (&args.user, &args.password) {
        super::auth::check_userid(u).map_err(|hint| SimError::Option {
            key: "--user",
            value: u.clone(),
            hint,
        })?;
        opts.users.push((u.clone(), p.clone()));
    }
    let scenario_name = opts.scenario.name.clone();
    let version = opts.scenario.pve_version.strings().0;
    let sim = start(opts).await?;
    let port = sim.addr().port();
    let tmp = std::env::temp_dir();
    let secret_file = tmp.join(format!("pve-rollout-sim-{port}.token"));
    let ca_file = tmp.join(format!("pve-rollout-sim-{port}-ca.pem"));
    write_private(&secret_file, &format!("{}\n", sim.token_secret()))?;
    std::fs::write(&ca_file, sim.cert_pem())?;

    let mut out = String::new();
    out.push_str(&format!(
        "pve-rollout sim: Proxmox VE {} simulator, scenario '{scenario_name}', seed {}, time scale {}\n\n",
        version, args.seed, args.time_scale
    ));
    out.push_str(&format!("  URL          {}\n", sim.url()));
    out.push_str(&format!("  Fingerprint  {}\n", sim.fingerprint()));
    out.push_str(&format!("  CA cert      {}\n", ca_file.display()));
    out.push_str(&format!("  Token        {}\n", sim.token_id()));
    if generated {
        out.push_str(&format!(
            "  Secret       {} (generated for this run)\n",
            sim.token_secret()
        ));
    }
    out.push_str(&format!("  Secret file  {}\n", secret_file.display()));
    if let Some(u) = &args.user {
        out.push_str(&format!("  User         {u} (ticket login)\n"));
    }
    out.push_str(&format!("  Stats        {}/sim/stats\n\n", sim.url()));
    out.push_str("Paste into deploy.toml:\n\n[proxmox]\n");
    out.push_str(&format!("url = \"{}\"\n", sim.url()));
    out.push_str(&format!("token_id = \"{}\"\n", sim.token_id()));
    out.push_str(&format!(
        "token_secret_file = \"{}\"\n",
        secret_file.display()
    ));
    out.push_str(&format!("fingerprint = \"{}\"\n\n", sim.fingerprint()));
    out.push_str("Ctrl-C stops the simulator.\n");
    {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
    }

    wait_for_stop().await;
    tracing::info!("stopping the simulator");
    sim.shutdown().await;
    let _ = std::fs::remove_file(&secret_file);
    let _ = std::fs::remove_file(&ca_file);
    Ok(())
}

async fn wait_for_stop() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_spec_splits_at_last_equals_and_hides_secret_on_error() {
        let (id, secret) = parse_token("root@pam!ci=abc-def").expect("ok");
        assert_eq!((id.as_str(), secret.as_str()), ("root@pam!ci", "abc-def"));
        // Split at the last '=' like PVE: an '=' in the secret makes the id invalid.
        let err = parse_token("root@pam!ci=abc=def").unwrap_err().to_string();
        assert!(
            err.contains("root@pam!ci=abc") && !err.contains("def"),
            "{err}"
        );
        let err = parse_token("nobody=topsecret").unwrap_err().to_string();
        assert!(!err.contains("topsecret"), "{err}");
    }
}
