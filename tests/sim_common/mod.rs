//! Test helpers for the simulator suites: a raw HTTP/1.1-over-TLS client (so tests see the
//! exact status line, reason phrase, headers and body), and polling helpers whose waits are
//! bounded in simulated time.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pve_rollout::sim::{self, Scenario, Sim, SimOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server's leaf certificate (DER).
    pub peer_cert: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn data(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "{} {}: {}",
            self.status,
            self.reason,
            self.text()
        );
        self.json()["data"].clone()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts an error status line and returns the JSON body.
    pub fn expect_err(&self, status: u16, reason: &str) -> Value {
        assert_eq!(
            (self.status, self.reason.as_str()),
            (status, reason),
            "body: {}",
            self.text()
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

#[derive(Clone)]
pub enum Cred {
    None,
    Token(String),
    Ticket {
        ticket: String,
        csrf: Option<String>,
    },
    Header(String),
}

#[derive(Clone)]
pub struct Client {
    pub addr: std::net::SocketAddr,
    connector: TlsConnector,
    pub cred: Cred,
}

pub fn tls_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("add root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

impl Client {
    pub fn new(sim: &Sim) -> Client {
        Client {
            addr: sim.addr(),
            connector: tls_connector(&sim.cert_pem()),
            cred: Cred::Token(format!("{}={}", sim.token_id(), sim.token_secret())),
        }
    }

    pub fn with(&self, cred: Cred) -> Client {
        Client {
            cred,
            ..self.clone()
        }
    }

    /// Sends one request on a fresh connection and reads the whole response.
    pub async fn raw(&self, head: &str, body: &[u8]) -> Resp {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = ServerName::IpAddress(self.addr.ip().into());
        let mut tls = self
            .connector
            .connect(name, tcp)
            .await
            .expect("tls handshake");
        let peer_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        tls.write_all(head.as_bytes()).await.expect("write head");
        tls.write_all(body).await.expect("write body");
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        parse_response(&buf, peer_cert)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut head = format!(
            "{method} /api2/json{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        match &self.cred {
            Cred::None => {}
            Cred::Token(t) => head.push_str(&format!("Authorization: PVEAPIToken={t}\r\n")),
            Cred::Header(h) => head.push_str(&format!("Authorization: {h}\r\n")),
            Cred::Ticket { ticket, csrf } => {
                head.push_str(&format!("Cookie: PVEAuthCookie={ticket}\r\n"));
                if let (Some(c), true) = (csrf, method != "GET") {
                    head.push_str(&format!("CSRFPreventionToken: {c}\r\n"));
                }
            }
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = form.unwrap_or("");
        if form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        self.raw(&head, body.as_bytes()).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[]).await
    }
    pub async fn post(&self, path: &str, form: &str) -> Resp {
        self.request("POST", path, Some(form), &[]).await
    }
    pub async fn put(&self, path: &str, form: &str) -> Resp {
        self.request("PUT", path, Some(form), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[]).await
    }

    /// Polls a task until it stops; returns its status object.
    pub async fn wait_task(&self, sim: &Sim, upid: &str, max_sim_s: f64) -> Value {
        let node = upid.split(':').nth(1).expect("upid node");
        let deadline = sim.now() + max_sim_s;
        loop {
            let st = self
                .get(&format!("/nodes/{node}/tasks/{}/status", enc(upid)))
                .await
                .data();
            if st["status"] == "stopped" {
                return st;
            }
            assert!(
                sim.now() < deadline,
                "task {upid} still running after {max_sim_s} simulated s"
            );
            tick(sim, 0.2).await;
        }
    }

    /// Polls until `f` returns Some, or panics after `max_sim_s` simulated seconds.
    pub async fn until<T, F, Fut>(&self, sim: &Sim, max_sim_s: f64, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = sim.now() + max_sim_s;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                sim.now() < deadline,
                "{what}: not reached within {max_sim_s} simulated s"
            );
            tick(sim, 0.25).await;
        }
    }
}

/// Waits `sim_s` simulated seconds (a poll interval, never used to order events).
pub async fn tick(sim: &Sim, sim_s: f64) {
    tokio::time::sleep(
        Duration::from_secs_f64(sim_s * sim.time_scale()).max(Duration::from_millis(1)),
    )
    .await;
}

/// Percent-encodes a path segment like bpg's `url.PathEscape`.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn parse_response(buf: &[u8], peer_cert: Vec<u8>) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no header end in response: {:?}",
                String::from_utf8_lossy(buf)
            )
        });
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Resp {
        status,
        reason,
        headers,
        body,
        peer_cert,
    }
}

pub fn opts(scenario: &str, scale: f64) -> SimOptions {
    SimOptions {
        scenario: Scenario::builtin(scenario).expect("scenario"),
        time_scale: scale,
        ..SimOptions::default()
    }
}

pub async fn start(o: SimOptions) -> (Sim, Client) {
    let sim = sim::start(o).await.expect("start simulator");
    let c = Client::new(&sim);
    (sim, c)
}

/// Clones the template to `newid` named `name` (full clone onto ssd) and waits for the task.
pub async fn clone_vm(c: &Client, sim: &Sim, newid: u32, name: &str) -> Value {
    let upid = c
        .post(
            "/nodes/pve1/qemu/9000/clone",
            &format!("newid={newid}&name={name}&full=1&storage=ssd&format=qcow2"),
        )
        .await
        .data();
    let st = c.wait_task(sim, upid.as_str().expect("upid"), 600.0).await;
    assert_eq!(st["exitstatus"], "OK", "clone of {newid}: {st}");
    st
}

/// Starts a VM and waits for the qmstart task.
pub async fn start_vm(c: &Client, sim: &Sim, vmid: u32) {
    let upid = c
        .post(&format!("/nodes/pve1/qemu/{vmid}/status/start"), "")
        .await
        .data();
    let st = c.wait_task(sim, upid.as_str().expect("upid"), 120.0).await;
    assert_eq!(st["exitstatus"], "OK", "start {vmid}: {st}");
}

/// Polls agent ping until it answers.
pub async fn wait_agent(c: &Client, sim: &Sim, vmid: u32) {
    c.until(sim, 300.0, "agent ping", || async {
        let r = c
            .post(&format!("/nodes/pve1/qemu/{vmid}/agent/ping"), "")
            .await;
        (r.status == 200).then_some(())
    })
    .await
}

pub fn elapsed_sim(start: Instant, sim: &Sim) -> f64 {
    start.elapsed().as_secs_f64() / sim.time_scale()
}
