//! HTTPS serving and the request pipeline of pveproxy: transport rejections (501s), 401s with
//! their delay, routing (`501 Method … not implemented`, never 404), parameter decoding, node
//! proxying (595 offline, hostname lookup failure), pvedaemon hand-off for protected calls
//! (596 after 30 s), and PVE's headers and reason phrases on every response.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::auth::Identity;
use super::cert::SimCert;
use super::daemon::PROXY_TIMEOUT_S;
use super::envelope::{self, ApiError, ApiOk, ok_body};
use super::params::Params;
use super::routes::{Ep, route};
use super::{Shared, SimError, endpoints};

/// pve-http-server's POST limit (since April 2025).
const MAX_BODY: usize = 512 * 1024;
/// Authentication failures are answered after this long (simulated s).
pub const AUTH_FAIL_DELAY_S: f64 = 3.0;

pub fn tls_config(cert: &SimCert) -> Result<Arc<rustls::ServerConfig>, SimError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| SimError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, shared: Arc<Shared>) {
    let acceptor = TlsAcceptor::from(tls);
    let app = Router::new()
        .route("/sim/stats", get(stats_handler))
        .fallback(api_handler)
        .with_state(shared.clone());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                conns.spawn(async move { connection(tcp, acceptor, app).await });
            }
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, app: Router) {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] != 0x16 => return redirect_plain_http(tcp).await,
        Ok(1) => {}
        _ => return,
    }
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let service = TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

/// Plain HTTP on the TLS port: 301 (GET/HEAD) or 308 to https, like `ensure_tls_connection`.
async fn redirect_plain_http(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        match tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf[n..])).await
        {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(k)) => n += k,
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("GET");
    let path = parts.next().unwrap_or("/");
    let host = lines
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("localhost:8006");
    let (code, reason) = if matches!(method, "GET" | "HEAD") {
        (301, "Moved Permanently")
    } else {
        (308, "Permanent Redirect")
    };
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nLocation: https://{host}{path}\r\nServer: pve-api-daemon/3.0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = tcp.write_all(resp.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> Response<Body> {
    let body = serde_json::to_vec(&super::stats::snapshot(&shared)).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    resp
}

async fn api_handler(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    let _in_flight = shared.counters.begin();
    let arrival = shared.clock.now();
    let client_closes = req
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
    let accepts_gzip = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (key, result) = pipeline(&shared, req, arrival).await;
    shared.counters.endpoint(key);
    if let Err(ApiError::Unauthorized(_) | ApiError::TicketFailed) = &result {
        shared.clock.sleep_until(arrival + AUTH_FAIL_DELAY_S).await;
    }
    let mut resp = respond(result, accepts_gzip);
    if client_closes {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    shared.counters.status(resp.status().as_u16());
    resp
}

fn plain(code: u16, message: impl Into<String>) -> ApiError {
    ApiError::Plain {
        code,
        message: message.into(),
    }
}

async fn pipeline(
    shared: &Arc<Shared>,
    req: Request<Body>,
    arrival: f64,
) -> (String, Result<ApiOk, ApiError>) {
    let method = req.method().clone();
    let fallback_key = format!("{method} (unmatched)");
    if !matches!(
        method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE
    ) {
        return (
            fallback_key,
            Err(plain(501, format!("method '{method}' not available"))),
        );
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let Some(rel) = path
        .strip_prefix("/api2/json")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return (fallback_key, Err(plain(501, "no such uri")));
    };
    let segs: Vec<String> = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .map(super::params::uri_unescape)
        .collect();
    let rel_path = format!("/{}", segs.join("/"));
    let headers = req.headers().clone();
    let routed = route(&method, &segs);
    let key = match &routed {
        Some(r) => format!("{method} {}", r.template),
        None => fallback_key,
    };

    if headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return (
            key,
            Err(plain(501, "chunked transfer encoding not supported")),
        );
    }
    let len: usize = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if len > 0 && matches!(method, Method::GET | Method::DELETE) {
        return (
            key,
            Err(plain(
                501,
                format!("Unexpected content for method '{method}'"),
            )),
        );
    }
    if len > MAX_BODY {
        return (key, Err(plain(501, "for data too large")));
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (key, Err(plain(501, "for data too large"))),
    };

    let no_auth = matches!(
        routed.as_ref().map(|r| r.ep),
        Some(Ep::TicketGet | Ep::TicketPost)
    );
    let who = if no_auth {
        None
    } else {
        match shared
            .auth
            .authenticate(&headers, method == Method::GET, shared.clock.epoch())
        {
            Ok(id) => Some(id),
            Err(reason) => return (key, Err(ApiError::Unauthorized(reason))),
        }
    };
    let Some(routed) = routed else {
        return (
            key,
            Err(ApiError::not_implemented(method.as_str(), &rel_path)),
        );
    };

    let params = match decode_params(&headers, &query, &body, &routed.path_params) {
        Ok(p) => p,
        Err(e) => return (key, Err(e)),
    };
    let result = execute(shared, routed.ep, who, params, arrival).await;
    (key, result)
}

fn decode_params(
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    path: &[(&'static str, String)],
) -> Result<Params, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut params = if body.is_empty() {
        Params::new()
    } else if ctype.starts_with("application/json") {
        // An unparsable JSON body dies in the handler: 500, not a parameter error.
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::Handler {
            code: 500,
            message: format!("unable to parse JSON body - {e}\n"),
        })?;
        Params::from_json(&v).ok_or_else(|| ApiError::Handler {
            code: 400,
            message: "JSON body must be an object\n".into(),
        })?
    } else {
        Params::from_form(&String::from_utf8_lossy(body))
    };
    params.override_with(Params::from_form(query));
    for (name, value) in path {
        if let Some(given) = params.get(name)
            && &given != value
        {
            return Err(ApiError::param(
                name,
                "duplicate parameter (already defined in URI) with conflicting values!",
            ));
        }
        params.set(name, value.clone());
    }
    Ok(params)
}

/// Node proxying, the pvedaemon hand-off and the handler.
async fn execute(
    shared: &Arc<Shared>,
    ep: Ep,
    who: Option<Identity>,
    params: Params,
    arrival: f64,
) -> Result<ApiOk, ApiError> {
    let node = params.get("node");
    if let Some(node) = &node {
        if shared.state().node(node).is_none() {
            return Err(ApiError::die(format!(
                "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
            )));
        }
        if !shared.node_online(node, shared.clock.now())
            || shared.chance(shared.scenario.faults.p_595)
        {
            return Err(ApiError::no_route());
        }
    }
    if let Some(vmid) = params.int("vmid").and_then(|v| u32::try_from(v).ok()) {
        super::stats::note_vm_request(shared, vmid, arrival);
    }
    // Counted at the node that serves it (the entry node answers for an unknown or offline one).
    let _serving = shared
        .counters
        .serving(node.as_deref().unwrap_or(shared.local_node()));
    let mut service = shared.draw(shared.scenario.timing.api_service_s);
    if ep == Ep::VmClone {
        service += shared.draw(shared.scenario.timing.clone_post_s);
    }
    if !ep.protected() {
        shared.clock.sleep(service).await;
        return endpoints::dispatch(shared.clone(), ep, who, params).await;
    }
    if shared.chance(shared.scenario.faults.p_596) {
        // Never reaches a worker: pveproxy gives up after its timeout.
        shared.clock.sleep_until(arrival + PROXY_TIMEOUT_S).await;
        return Err(ApiError::timed_out());
    }
    let daemon_node = node
        .clone()
        .unwrap_or_else(|| shared.local_node().to_string());
    let Some(daemon) = shared.daemons.get(&daemon_node).cloned() else {
        return Err(ApiError::die("no pvedaemon for node"));
    };
    if shared.chance(shared.scenario.faults.p_596_executed) {
        // pveproxy gives up, but the connection still sits in pvedaemon's queue: a worker
        // accepts it later and runs it. The client only ever sees the 596.
        shared.clock.sleep_until(arrival + PROXY_TIMEOUT_S).await;
        let sh = shared.clone();
        tokio::spawn(async move {
            let late = sh.clone();
            let _ = daemon
                .run(&sh.clock, sh.clock.now(), async move {
                    endpoints::dispatch(late, ep, who, params).await
                })
                .await;
        });
        return Err(ApiError::timed_out());
    }
    let sh = shared.clone();
    let result = daemon
        .run(&shared.clock, arrival, async move {
            sh.clock.sleep(service).await;
            endpoints::dispatch(sh, ep, who, params).await
        })
        .await;
    if ep == Ep::VmClone
        && result.is_ok()
        && shared.chance(shared.scenario.faults.p_clone_response_lost)
    {
        // The clone runs, but pveproxy's answer is lost.
        shared.clock.sleep_until(arrival + PROXY_TIMEOUT_S).await;
        return Err(ApiError::timed_out());
    }
    result
}

fn http_date() -> HeaderValue {
    let now = jiff::Timestamp::now();
    let s = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&now)
        .unwrap_or_default();
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// pveproxy compresses bodies above this size for clients that accept gzip.
const GZIP_ABOVE: usize = 1024;

/// Builds the response with PVE's status line, headers and body.
pub fn respond(result: Result<ApiOk, ApiError>, accepts_gzip: bool) -> Response<Body> {
    let (code, reason, body) = match &result {
        Ok(ok) => (200u16, None, Some((ok_body(ok), true))),
        Err(e) => (e.code(), Some(e.reason()), e.body()),
    };
    let gzip = accepts_gzip && body.as_ref().is_some_and(|(b, _)| b.len() > GZIP_ABOVE);
    let mut resp = Response::new(match &body {
        Some((b, _)) if gzip => Body::from(envelope::gzip(b.as_ref())),
        Some((b, _)) => Body::from(b.clone()),
        None => Body::empty(),
    });
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(reason) = reason
        && let Ok(rp) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes())
    {
        resp.extensions_mut().insert(rp);
    }
    let h = resp.headers_mut();
    let date = http_date();
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(header::DATE, date.clone());
    h.insert(header::EXPIRES, date);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static(if code >= 400 { "close" } else { "Keep-Alive" }),
    );
    match body {
        Some((_, true)) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=UTF-8"),
            );
        }
        Some((_, false)) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain;charset=UTF-8"),
            );
        }
        None => {}
    }
    resp
}
