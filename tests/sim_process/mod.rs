//! `pve-rollout sim` as a child process, for tests that run `pve-rollout deploy` as a real
//! process against it (kills, signals, resumes).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;

pub const BIN: &str = env!("CARGO_BIN_EXE_pve-rollout");

/// The simulator child, killed when dropped.
pub struct SimProcess {
    child: Child,
    pub url: String,
    pub fingerprint: String,
    pub token_id: String,
    pub secret_file: PathBuf,
    pub ca_file: PathBuf,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pve-rollout sim` on an ephemeral loopback port and reads what it serves from its
/// banner.
pub fn start_sim(scenario: &str, scale: &str) -> SimProcess {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            scenario,
            "--time-scale",
            scale,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim starts");
    let stdout = child.stdout.take().expect("sim stdout");
    let mut fields = std::collections::BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("sim banner");
        if line.starts_with("Ctrl-C") {
            break;
        }
        for key in ["URL", "Fingerprint", "Token", "Secret file", "CA cert"] {
            if let Some(rest) = line.trim_start().strip_prefix(key)
                && rest.starts_with("  ")
            {
                fields.insert(key, rest.trim().to_string());
            }
        }
    }
    let get = |k: &str| {
        fields
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} in the sim banner: {fields:?}"))
    };
    SimProcess {
        url: get("URL"),
        fingerprint: get("Fingerprint"),
        token_id: get("Token"),
        secret_file: get("Secret file").into(),
        ca_file: get("CA cert").into(),
        child,
    }
}

/// A deploy.toml for `vms` VMs named `<prefix>-N` against `sim`, its outputs in `dir/out`.
pub fn write_config(dir: &Path, sim: &SimProcess, prefix: &str, vms: usize) -> PathBuf {
    write_config_with(dir, sim, prefix, vms, "", "")
}

/// [`write_config`] with `defaults` lines added to `[defaults]` and `extra` sections at the end.
pub fn write_config_with(
    dir: &Path,
    sim: &SimProcess,
    prefix: &str,
    vms: usize,
    defaults: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("deploy.toml");
    let text = format!(
        r#"[proxmox]
url = "{url}"
token_id = "{token}"
token_secret_file = "{secret}"
fingerprint = "{fp}"

[rollout]
name = "{prefix}"
template = "ubuntu"
vm_count = {vms}
vm_name_prefix = "{prefix}"
deployment_delay = "3s"
nodes = ["pve1"]

[defaults]
memory = 4096
storage = "ssd"
{defaults}

[checks]
stabilization = "2s"
agent_timeout = "2m"
ip_timeout = "2m"

[output]
dir = "{out}"
{extra}
"#,
        url = sim.url,
        token = sim.token_id,
        secret = sim.secret_file.display(),
        fp = sim.fingerprint,
        out = dir.join("out").display(),
    );
    std::fs::write(&path, text).expect("deploy.toml");
    path
}

/// `GET /sim/stats` over TLS, trusting the simulator's CA file.
pub fn sim_stats(sim: &SimProcess) -> serde_json::Value {
    let pem = std::fs::read(&sim.ca_file).expect("ca file");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = sim
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let ip: std::net::IpAddr = addr
        .rsplit_once(':')
        .and_then(|(h, _)| h.trim_matches(['[', ']']).parse().ok())
        .expect("ip in the sim url");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ip.into()).expect("tls");
    let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    write!(
        tls,
        "GET /sim/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (_, body) = text.split_once("\r\n\r\n").expect("http response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("stats json: {e}: {body}"))
}
