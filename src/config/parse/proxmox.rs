//! `[proxmox]`: where the API is, how to log in, how to trust its certificate.

use crate::pve::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_PER_NODE};

use super::*;

pub(in crate::config) const PROXMOX_KEYS: &[&str] = &[
    "url",
    "token_id",
    "token_secret_file",
    "user",
    "password_file",
    "fingerprint",
    "ca_cert",
    "insecure",
    "max_in_flight",
    "max_in_flight_per_node",
];

impl Doc<'_> {
    pub(super) fn proxmox(&mut self, root: &DeTable<'_>) -> Option<ProxmoxConfig> {
        let s = self.section(root, "proxmox");
        self.unknown_keys(&s, PROXMOX_KEYS);
        let url = self.field(&s, "url", check_url);
        let token_id = self.checked_string(
            &s,
            "token_id",
            "an API token id such as \"root@pam!rollout\"",
            formats::check_token_id,
        );
        let token_secret_file = self.path(&s, "token_secret_file");
        let user = self.checked_string(
            &s,
            "user",
            "a user id such as \"root@pam\"",
            formats::check_userid,
        );
        let password_file = self.path(&s, "password_file");
        let fingerprint = self.string_with(&s, "fingerprint", "a SHA-256 fingerprint", |f| {
            crate::pve::normalize_fingerprint(f).map_err(bad)
        });
        let ca_cert = self.path(&s, "ca_cert");
        let insecure = self.boolean(&s, "insecure");
        let max_in_flight = self.integer(
            &s,
            "max_in_flight",
            1,
            64,
            Some("the ceiling over all nodes; the default 16 lets 8 nodes reach their own cap"),
        );
        let max_in_flight_per_node = self.integer(
            &s,
            "max_in_flight_per_node",
            1,
            16,
            Some("each node has 3 pvedaemon workers; 2 (the default) leaves one for the GUI"),
        );

        if s.table.is_none() {
            self.missing(
                "proxmox".to_string(),
                None,
                "add a [proxmox] section with url and token_id (see deploy.toml.example)",
            );
            return None;
        }
        if s.get("url").is_none() {
            self.missing(
                s.key_path("url"),
                s.line,
                "add url = \"https://pve1.example.org:8006\" under [proxmox]",
            );
        }
        let has = |k: &str| s.get(k).is_some();
        let line_of = |doc: &Self, k: &str| s.get(k).map(|v| doc.line(v.span().start));
        match (has("token_id"), has("user")) {
            (true, true) => {
                let line = line_of(self, "user");
                self.push(
                    Some(s.key_path("user")),
                    line,
                    None,
                    bad_hint(
                        "set together with token_id; choose one way to log in",
                        "keep token_id (an API token, recommended) and remove user and \
                         password_file, or the other way round",
                    ),
                );
            }
            (false, false) => self.missing(
                s.key_path("token_id"),
                s.line,
                "add token_id = \"user@realm!name\" (an API token; its secret comes from env \
                 PVE_TOKEN_SECRET or token_secret_file), or user = \"user@realm\" with \
                 password_file",
            ),
            _ => {}
        }
        if has("token_secret_file") && !has("token_id") {
            let line = line_of(self, "token_secret_file");
            self.push(
                Some(s.key_path("token_secret_file")),
                line,
                None,
                bad_hint(
                    "set without token_id",
                    "add token_id = \"user@realm!name\" for the token this secret belongs to",
                ),
            );
        }
        if has("password_file") && !has("user") {
            let line = line_of(self, "password_file");
            self.push(
                Some(s.key_path("password_file")),
                line,
                None,
                bad_hint(
                    "set without user",
                    "add user = \"user@realm\" for the account this password belongs to",
                ),
            );
        }
        let trust_keys: Vec<&str> = ["fingerprint", "ca_cert", "insecure"]
            .into_iter()
            .filter(|k| has(k) && !(*k == "insecure" && insecure != Some(true)))
            .collect();
        if trust_keys.len() > 1 {
            self.warnings.push(format!(
                "{}: proxmox.{} are all set; {} wins (order: fingerprint, ca_cert, insecure)",
                self.origin,
                trust_keys.join(" and proxmox."),
                trust_keys[0]
            ));
        } else if insecure == Some(true) {
            self.warnings.push(format!(
                "{}: proxmox.insecure = true: the server's certificate is not checked; pin it \
                 with fingerprint instead",
                self.origin
            ));
        }
        if let Some(url) = &url
            && reqwest::Url::parse(url).is_ok_and(|u| u.port().is_none())
        {
            self.warnings.push(format!(
                "{}: proxmox.url {url} has no port, so 443 is used; the PVE API listens on 8006 \
                 unless a proxy is in front",
                self.origin
            ));
        }
        Some(ProxmoxConfig {
            url: url?,
            token_id,
            token_secret_file,
            user,
            password_file,
            fingerprint,
            ca_cert,
            insecure: insecure.unwrap_or(false),
            max_in_flight: max_in_flight.map_or(DEFAULT_MAX_IN_FLIGHT, |n| n as usize),
            max_in_flight_per_node: max_in_flight_per_node
                .map_or(DEFAULT_MAX_IN_FLIGHT_PER_NODE, |n| n as usize),
        })
    }
}

fn check_url(v: &DeValue<'_>) -> Result<String, Bad> {
    let Some(text) = v.as_str() else {
        return Err(expected(
            "an https URL such as \"https://pve1.example.org:8006\"",
            v,
        ));
    };
    let example = "write url = \"https://pve1.example.org:8006\"";
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| bad_hint(format!("not a URL ({e})"), example))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo it: the URL carries credentials.
        return Err(Bad {
            hidden: true,
            ..bad_hint(
                "must not carry a user or password",
                "remove them from the URL; use token_id with env PVE_TOKEN_SECRET or \
                 token_secret_file",
            )
        });
    }
    if url.scheme() != "https" {
        return Err(bad_hint(
            format!(
                "uses {}; Proxmox VE serves its API over https only",
                url.scheme()
            ),
            example,
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad_hint("has no host", example));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad_hint("must not have a query or fragment", example));
    }
    let path = url.path().trim_end_matches('/');
    if !path.is_empty() && path != "/api2/json" {
        return Err(bad_hint(
            format!("has the path {path}; only the server's address (and /api2/json) is allowed"),
            example,
        ));
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "https://{}{port}",
        url.host_str().unwrap_or_default()
    ))
}
