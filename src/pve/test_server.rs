//! A scripted HTTPS server for the client's own tests: each request is recorded and answered by a
//! closure (status, reason phrase, body, delay). It checks the client's wire behaviour precisely
//! (headers, bodies, reason phrases, TLS); the simulator checks it against PVE's behaviour.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::fingerprint_of_der;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    /// The raw (still percent-encoded) path, without `/api2/json`.
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// `method path`, e.g. `GET /version`.
    pub(crate) fn call(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Clone)]
pub(crate) struct Reply {
    status: u16,
    reason: Option<String>,
    body: String,
    delay: Duration,
}

impl Reply {
    /// `200 OK` with `{"data": data}`.
    pub(crate) fn data(data: serde_json::Value) -> Reply {
        Reply {
            status: 200,
            reason: None,
            body: serde_json::json!({ "data": data }).to_string(),
            delay: Duration::ZERO,
        }
    }
    /// An error with a custom reason phrase and a raw body.
    pub(crate) fn error(status: u16, reason: &str, body: &str) -> Reply {
        Reply {
            status,
            reason: Some(reason.to_string()),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    /// A handler error as PVE >= 8.3 sends it.
    pub(crate) fn die(message: &str) -> Reply {
        let first = message.lines().next().unwrap_or_default();
        Reply::error(
            500,
            first,
            &serde_json::json!({"data": null, "message": format!("{message}\n")}).to_string(),
        )
    }
    pub(crate) fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub(crate) struct TestServer {
    pub(crate) url: String,
    /// SHA-256 of the leaf certificate, PVE style.
    pub(crate) fingerprint: String,
    /// PEM of the CA that signed the leaf.
    pub(crate) ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    peak: Arc<AtomicUsize>,
    by_node: Arc<Mutex<NodeLoad>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
    pub(crate) fn calls(&self) -> Vec<String> {
        self.seen().iter().map(Seen::call).collect()
    }
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
    /// Most requests in flight at once per node named in the path (`/nodes/{node}/...`; other
    /// paths under `""`).
    pub(crate) fn peak_in_flight_by_node(&self) -> BTreeMap<String, usize> {
        self.by_node.lock().expect("lock").peak.clone()
    }
}

#[derive(Default)]
struct NodeLoad {
    now: BTreeMap<String, usize>,
    peak: BTreeMap<String, usize>,
}

/// `pve1` of `/nodes/pve1/...`, `""` for other paths.
fn node_of(path: &str) -> String {
    path.strip_prefix("/nodes/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server on an ephemeral loopback port with a CA-signed leaf for `127.0.0.1`.
pub(crate) async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestServer {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test PVE CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let fingerprint = fingerprint_of_der(leaf.der());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));

    let seen = Arc::new(Mutex::new(Vec::new()));
    let peak = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let by_node = Arc::new(Mutex::new(NodeLoad::default()));
    let handler: Handler = Arc::new(handler);
    let app = {
        let (seen, peak, by_node) = (seen.clone(), peak.clone(), by_node.clone());
        axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (seen, peak, in_flight, by_node, handler) = (
                    seen.clone(),
                    peak.clone(),
                    in_flight.clone(),
                    by_node.clone(),
                    handler.clone(),
                );
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let node = node_of(uri.path().strip_prefix("/api2/json").unwrap_or_default());
                    {
                        let mut load = by_node.lock().expect("lock");
                        let n = load.now.entry(node.clone()).or_default();
                        *n += 1;
                        let n = *n;
                        let peak = load.peak.entry(node.clone()).or_default();
                        *peak = (*peak).max(n);
                    }
                    let request = Seen {
                        method: method.to_string(),
                        path: uri
                            .path()
                            .strip_prefix("/api2/json")
                            .unwrap_or(uri.path())
                            .to_string(),
                        query: uri.query().map(str::to_string),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    seen.lock().expect("lock").push(request.clone());
                    let reply = handler(&request);
                    tokio::time::sleep(reply.delay).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if let Some(n) = by_node.lock().expect("lock").now.get_mut(&node) {
                        *n -= 1;
                    }
                    respond(reply)
                }
            },
        )
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // Handshake failures are what some tests provoke; nothing to do about them here.
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    TestServer {
        url,
        fingerprint,
        ca_pem: ca.pem(),
        seen,
        peak,
        by_node,
        task,
    }
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).expect("status");
    let mut response = (status, reply.body).into_response();
    if let Some(reason) = reply.reason {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::try_from(reason).expect("reason"));
    }
    response
}
