//! From the validated config to the API client's settings: the secret (env first, then a file
//! only its owner can read), the TLS trust, the in-flight cap. Secrets live only in
//! `pve::Secret`, which never prints; no message here ever contains one.

use std::path::Path;

use super::{Config, ConfigError, Problem};
use crate::pve::{Auth, ClientConfig, Secret, TlsTrust};

/// Env var that carries the API token secret (preferred over `token_secret_file`).
pub const TOKEN_SECRET_ENV: &str = "PVE_TOKEN_SECRET";
/// Env var that carries the password (preferred over `password_file`).
pub const PASSWORD_ENV: &str = "PVE_PASSWORD";

impl Config {
    /// The API client's settings. The secret comes from env `PVE_TOKEN_SECRET` (or
    /// `PVE_PASSWORD`) when set and non-empty, else from `token_secret_file` (or
    /// `password_file`), which must not be readable by group or others.
    pub fn client_config(&self, time_scale: f64) -> Result<ClientConfig, ConfigError> {
        self.client_config_with_env(time_scale, &|name| std::env::var(name).ok())
    }

    /// `client_config` with the environment passed in (tests must not touch the process env).
    pub fn client_config_with_env(
        &self,
        time_scale: f64,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, ConfigError> {
        if !(time_scale.is_finite() && time_scale > 0.0) {
            return Err(self.problem(
                "--time-scale",
                Some(time_scale.to_string()),
                "must be a positive number".to_string(),
                "1.0 is real time; 0.01 runs 100x faster against a time-scaled simulator",
            ));
        }
        let p = &self.proxmox;
        let auth = match (&p.token_id, &p.user) {
            (Some(token_id), _) => Auth::Token {
                token_id: token_id.clone(),
                secret: self.secret(
                    env,
                    TOKEN_SECRET_ENV,
                    "proxmox.token_secret_file",
                    p.token_secret_file.as_deref(),
                )?,
            },
            (None, Some(user)) => Auth::Password {
                user: user.clone(),
                password: self.secret(
                    env,
                    PASSWORD_ENV,
                    "proxmox.password_file",
                    p.password_file.as_deref(),
                )?,
            },
            (None, None) => {
                return Err(self.problem(
                    "proxmox.token_id",
                    None,
                    "is missing".to_string(),
                    "set token_id (or user) under [proxmox]",
                ));
            }
        };
        let tls = if let Some(fingerprint) = &p.fingerprint {
            TlsTrust::Fingerprint(fingerprint.clone())
        } else if let Some(ca) = &p.ca_cert {
            if let Err(e) = std::fs::metadata(ca).and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            }) {
                return Err(self.problem(
                    "proxmox.ca_cert",
                    Some(format!("{:?}", ca.display().to_string())),
                    format!("cannot be read: {e}"),
                    "give the path of the cluster's CA certificate (PEM), such as a copy of \
                     /etc/pve/pve-root-ca.pem",
                ));
            }
            TlsTrust::CaFile(ca.clone())
        } else if p.insecure {
            TlsTrust::Insecure
        } else {
            TlsTrust::System
        };
        Ok(ClientConfig::new(p.url.clone(), auth)
            .with_tls(tls)
            .with_max_in_flight(p.max_in_flight)
            .with_max_in_flight_per_node(p.max_in_flight_per_node)
            .with_time_scale(time_scale))
    }

    fn secret(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        env_name: &str,
        file_key: &str,
        file: Option<&Path>,
    ) -> Result<Secret, ConfigError> {
        if let Some(value) = env(env_name) {
            let value = value.trim_end_matches(['\r', '\n']);
            if !value.is_empty() {
                return Ok(Secret::new(value));
            }
        }
        let Some(path) = file else {
            return Err(self.problem(
                file_key,
                None,
                format!("is not set and env {env_name} is empty"),
                &format!(
                    "export {env_name}=... or put the secret in a file only you can read \
                     (chmod 600) and set {file_key}"
                ),
            ));
        };
        read_secret_file(path).map_err(|(message, hint)| {
            self.problem(
                file_key,
                Some(format!("{:?}", path.display().to_string())),
                message,
                &hint,
            )
        })
    }

    fn problem(
        &self,
        key: &str,
        value: Option<String>,
        message: String,
        hint: &str,
    ) -> ConfigError {
        // A key that was not written (a missing secret file) points at the login it serves.
        let line = self
            .line_of(key)
            .or_else(|| self.line_of("proxmox.token_id"))
            .or_else(|| self.line_of("proxmox.user"));
        ConfigError::single(
            &self.source.origin,
            Problem {
                key: Some(key.to_string()),
                line,
                value,
                message,
                hint: Some(hint.to_string()),
            },
        )
    }
}

/// Reads a one-line secret, refusing a file others can read (as ssh does for keys). Errors
/// say what is wrong with the file, never what is in it.
fn read_secret_file(path: &Path) -> Result<Secret, (String, String)> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| {
        (
            format!("cannot read {shown}: {e}"),
            "create it with the secret on one line and chmod 600".to_string(),
        )
    })?;
    if !metadata.is_file() {
        return Err((
            format!("{shown} is not a file"),
            "give the path of a file holding the secret".to_string(),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err((
                format!(
                    "permissions {mode:04o} for '{shown}' are too open; a secret file must be readable by its owner only"
                ),
                format!("run chmod 600 {shown}"),
            ));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::InvalidData {
            "it is not UTF-8 text".to_string()
        } else {
            e.to_string()
        };
        (
            format!("cannot read {shown}: {reason}"),
            "put the secret on one line".to_string(),
        )
    })?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err((
            format!("{shown} is empty"),
            "put the secret on one line".to_string(),
        ));
    }
    if secret.contains(['\r', '\n']) {
        return Err((
            format!("{shown} has more than one line"),
            "put only the secret in it, on one line".to_string(),
        ));
    }
    Ok(Secret::new(secret))
}
