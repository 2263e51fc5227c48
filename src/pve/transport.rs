//! One request at a time, done right: credentials (logging in or renewing a ticket when due), the
//! in-flight caps (per serving node and overall), the timeout, the envelope, error classification, per-endpoint
//! counters; and the retry loop around it.
//!
//! Never logged: headers, parameter values (a config update may carry `cipassword`), bodies.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::auth::{self, Authenticator, Credentials, Ticket, TicketAction};
use super::caps::InFlightCaps;
use super::encode;
use super::error::{self, local};
use super::retry::{self, Jitter, Verdict};
use super::tls::{self, SeenCertificate};
use super::wire::WireTicket;
use super::{ClientConfig, ClientStats, ErrorClass, PveError, RetryPolicy, Secret, TlsTrust};

/// One API call: method, path (encoded for the URL and readable for errors), the endpoint
/// template for the counters, parameters (query for GET/DELETE, form body otherwise), and
/// whether repeating it is harmless. No `Debug`: parameters may hold secrets.
pub(crate) struct Request {
    pub(crate) method: Method,
    template: &'static str,
    path: String,
    readable: String,
    /// The node that serves it (`/nodes/{node}/...`); `None` for a cluster-wide call, which the
    /// entry node serves.
    node: Option<String>,
    pub(crate) params: Vec<(String, String)>,
    /// Safe to repeat after an outcome we did not see (reads, PUTs that set values).
    pub(crate) idempotent: bool,
}

impl Request {
    pub(crate) fn new(method: Method, template: &'static str, args: &[&str]) -> Self {
        let (path, readable) = encode::path(template, args);
        let idempotent = method == Method::GET;
        let node = template
            .starts_with("/nodes/{node}")
            .then(|| args.first().map(|n| (*n).to_string()))
            .flatten();
        Request {
            method,
            template,
            path,
            readable,
            node,
            params: Vec::new(),
            idempotent,
        }
    }
    pub(crate) fn param(mut self, key: &str, value: impl Into<String>) -> Self {
        self.params.push((key.to_string(), value.into()));
        self
    }
    pub(crate) fn params(mut self, params: impl IntoIterator<Item = (String, String)>) -> Self {
        self.params.extend(params);
        self
    }
    pub(crate) fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
    /// `POST /nodes/pve1/qemu/9000/clone`: what errors name.
    pub(crate) fn call(&self) -> String {
        format!("{} {}", self.method, self.readable)
    }
    /// `POST /nodes/{node}/qemu/{vmid}/clone`: what the counters are keyed by.
    fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// A failed attempt (its error says whether the server may have acted on it anyway).
pub(crate) struct Failure {
    pub(crate) error: PveError,
    /// The ticket this attempt used, so a 401 invalidates exactly that one.
    used_ticket: Option<Instant>,
}

impl Failure {
    fn known(error: PveError) -> Self {
        Failure {
            error,
            used_ticket: None,
        }
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    base: String,
    api: String,
    auth: Authenticator,
    trust: TlsTrust,
    seen: SeenCertificate,
    caps: InFlightCaps,
    stats: Mutex<ClientStats>,
    retry: RetryPolicy,
    time_scale: f64,
    timeout: Duration,
    jitter: Jitter,
    /// Every secret known to this client, for the last-resort scrub of error texts.
    secrets: Mutex<Vec<String>>,
}

/// `https://host:8006` from what the user wrote (a trailing `/api2/json` or `/` is fine).
fn base_url(url: &str) -> Result<String, PveError> {
    let call = "configure the Proxmox URL";
    let trimmed = url.trim().trim_end_matches('/');
    let trimmed = trimmed
        .strip_suffix("/api2/json")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| {
        local(
            ErrorClass::Other,
            call,
            format!("url {trimmed:?} is not a URL ({e}); expected https://host:8006"),
        )
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not echoed: it holds credentials.
        return Err(local(
            ErrorClass::Other,
            call,
            "url must not contain credentials; use token_id with PVE_TOKEN_SECRET, or user with PVE_PASSWORD",
        ));
    }
    if parsed.scheme() != "https" {
        return Err(local(
            ErrorClass::Other,
            call,
            format!(
                "url {trimmed:?} must start with https:// (Proxmox VE serves its API over HTTPS on port 8006)"
            ),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty)
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || parsed.path() != "/"
    {
        return Err(local(
            ErrorClass::Other,
            call,
            format!("url {trimmed:?} should be just https://host:8006"),
        ));
    }
    Ok(trimmed.to_string())
}

impl Inner {
    pub(crate) fn new(config: &ClientConfig) -> Result<Inner, PveError> {
        let base = base_url(&config.url)?;
        for (key, value) in [
            ("max_in_flight", config.max_in_flight),
            ("max_in_flight_per_node", config.max_in_flight_per_node),
        ] {
            if value == 0 {
                return Err(local(
                    ErrorClass::Other,
                    "configure the client",
                    format!("{key} must be at least 1"),
                ));
            }
        }
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(local(
                ErrorClass::Other,
                "configure the client",
                format!(
                    "time_scale must be a positive number, got {}",
                    config.time_scale
                ),
            ));
        }
        let auth = Authenticator::new(&config.auth)?;
        let (tls_config, seen) = tls::client_config(&config.tls)?;
        // The operator is warned where they asked for it (the config's `insecure` key, `init
        // --insecure`); here the fact goes to the log only, so it is said once on the terminal.
        if config.tls == TlsTrust::Insecure {
            tracing::info!(
                "TLS certificate verification is OFF (insecure = true): anyone on the path to {base} can read the API \
                 credentials. Pin the certificate with `fingerprint` instead."
            );
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .http1_only()
            .no_proxy()
            // PVE never redirects API calls; following one could carry credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .timeout(config.request_timeout)
            .user_agent(concat!("pve-rollout/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                local(
                    ErrorClass::Other,
                    "configure the client",
                    format!("HTTP client setup failed: {e}"),
                )
            })?;
        Ok(Inner {
            http,
            api: format!("{base}/api2/json"),
            base,
            auth,
            trust: config.tls.clone(),
            seen,
            caps: InFlightCaps::new(config.max_in_flight, config.max_in_flight_per_node),
            stats: Mutex::new(ClientStats::default()),
            retry: config.retry,
            time_scale: config.time_scale,
            timeout: config.request_timeout,
            jitter: Jitter::new(),
            secrets: Mutex::new(Authenticator::static_secrets(&config.auth)),
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn describe_auth(&self) -> String {
        self.auth.describe()
    }

    pub(crate) fn trust(&self) -> &TlsTrust {
        &self.trust
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let mut stats = self
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        (stats.peak_in_flight, stats.peak_in_flight_by_node) = self.caps.peaks();
        stats
    }

    fn with_stats(&self, update: impl FnOnce(&mut ClientStats)) {
        match self.stats.lock() {
            Ok(mut stats) => update(&mut stats),
            Err(poisoned) => update(&mut poisoned.into_inner()),
        }
    }

    fn remember_secret(&self, secret: &Secret) {
        if let Ok(mut secrets) = self.secrets.lock() {
            secrets.push(secret.expose().to_string());
        }
    }

    /// The last-resort scrub every error leaving the client goes through.
    pub(crate) fn redact(&self, error: PveError) -> PveError {
        match self.secrets.lock() {
            Ok(secrets) => error::redact(error, &secrets),
            Err(poisoned) => error::redact(error, &poisoned.into_inner()),
        }
    }

    /// The call with retries for transient failures: idempotent calls always, others only when
    /// the request certainly did not reach the handler.
    pub(crate) async fn call(&self, request: &Request) -> Result<Value, PveError> {
        let result = retry::run(
            &self.retry,
            self.time_scale,
            &self.jitter,
            |_| async {
                self.attempt(request).await.map_err(|failure| {
                    let repeatable = request.idempotent || !failure.error.outcome_unknown;
                    if failure.error.class == ErrorClass::Transient && repeatable {
                        Verdict::Retry(failure.error)
                    } else {
                        Verdict::Fail(failure.error)
                    }
                })
            },
            |next, delay, error| self.note_retry(next, delay, error),
        )
        .await;
        result.map_err(|e| self.redact(e))
    }

    pub(crate) fn note_retry(&self, next: u32, delay: Duration, error: &PveError) {
        self.with_stats(|s| s.retries_total += 1);
        tracing::debug!(
            "{}; retrying in {:.2}s (attempt {next} of {})",
            self.redact(error.clone()),
            delay.as_secs_f64(),
            self.retry.max_attempts
        );
    }

    pub(crate) fn retry_policy(&self) -> (&RetryPolicy, f64, &Jitter) {
        (&self.retry, self.time_scale, &self.jitter)
    }

    /// One attempt with credentials; a 401 on a ticket triggers one fresh login and one repeat
    /// (a 401 means the request was not executed, so repeating is always safe).
    pub(crate) async fn attempt(&self, request: &Request) -> Result<Value, Failure> {
        let credentials = self.credentials().await?;
        match self.send(request, Some(&credentials)).await {
            Err(failure) if failure.error.status == Some(401) && failure.used_ticket.is_some() => {
                tracing::debug!(
                    "{}: 401 {}; logging in again",
                    request.call(),
                    failure.error.reason
                );
                self.invalidate_ticket(failure.used_ticket).await;
                let credentials = self.credentials().await?;
                self.send(request, Some(&credentials)).await
            }
            other => other,
        }
    }

    async fn credentials(&self) -> Result<Credentials, Failure> {
        let (user, password, slot) = match &self.auth {
            Authenticator::Token { header } => return Ok(Credentials::Token(header.clone())),
            Authenticator::Password {
                user,
                password,
                ticket,
            } => (user, password, ticket),
        };
        let mut slot = slot.lock().await;
        let action = slot.as_ref().map_or(TicketAction::Login, |t| {
            auth::ticket_action(t.age(), self.time_scale)
        });
        match (action, slot.as_ref()) {
            (TicketAction::Renew, Some(current)) => {
                // Renewal: the current ticket serves as the password.
                let old = current.ticket.clone();
                match self.login(user, &old).await {
                    Ok(ticket) => *slot = Some(ticket),
                    Err(failure) if failure.error.class == ErrorClass::Auth => {
                        *slot = Some(self.login(user, password).await?);
                    }
                    // Still valid for a while: keep it and try renewing on the next call.
                    Err(failure) => tracing::debug!(
                        "ticket renewal failed, keeping the current ticket: {}",
                        failure.error
                    ),
                }
            }
            (TicketAction::Use, Some(_)) => {}
            _ => *slot = Some(self.login(user, password).await?),
        }
        match slot.as_ref() {
            Some(ticket) => auth::ticket_credentials(ticket).map_err(Failure::known),
            None => Err(Failure::known(local(
                ErrorClass::Auth,
                "POST /access/ticket",
                "no ticket after login",
            ))),
        }
    }

    async fn invalidate_ticket(&self, used: Option<Instant>) {
        if let Authenticator::Password { ticket, .. } = &self.auth {
            let mut slot = ticket.lock().await;
            if slot.as_ref().map(|t| t.obtained) == used {
                *slot = None;
            }
        }
    }

    /// Makes the current ticket older, as if time had passed (tests of renewal).
    #[cfg(test)]
    pub(crate) async fn backdate_ticket(&self, by: Duration) {
        if let Authenticator::Password { ticket, .. } = &self.auth
            && let Some(ticket) = ticket.lock().await.as_mut()
        {
            ticket.obtained = ticket.obtained.checked_sub(by).unwrap_or(ticket.obtained);
        }
    }

    /// `POST /access/ticket` with `password` (the password, or the current ticket to renew it).
    async fn login(&self, user: &str, password: &Secret) -> Result<Ticket, Failure> {
        let request = Request::new(Method::POST, "/access/ticket", &[])
            .param("username", user)
            .param("password", password.expose())
            .idempotent(true);
        let data = retry::run(
            &self.retry,
            self.time_scale,
            &self.jitter,
            |_| async {
                self.send(&request, None).await.map_err(|failure| {
                    if failure.error.class == ErrorClass::Transient {
                        Verdict::Retry(failure.error)
                    } else {
                        Verdict::Fail(failure.error)
                    }
                })
            },
            |next, delay, error| self.note_retry(next, delay, error),
        )
        .await
        .map_err(|e| Failure::known(self.redact(e)))?;
        let wire: WireTicket = serde_json::from_value(data).map_err(|e| {
            Failure::known(local(
                ErrorClass::Decode,
                &request.call(),
                format!("unexpected login answer: {e}"),
            ))
        })?;
        let ticket = Ticket {
            ticket: Secret::new(wire.ticket),
            csrf: Secret::new(wire.csrf),
            obtained: Instant::now(),
        };
        self.remember_secret(&ticket.ticket);
        self.remember_secret(&ticket.csrf);
        tracing::debug!("logged in to {} as {user}", self.base);
        Ok(ticket)
    }

    /// Sends once and reads the whole answer; counts it.
    async fn send(
        &self,
        request: &Request,
        credentials: Option<&Credentials>,
    ) -> Result<Value, Failure> {
        let call = request.call();
        let url = format!("{}{}", self.api, request.path);
        let mut builder = self.http.request(request.method.clone(), url);
        // PVE refuses a body on GET and DELETE (501): their parameters go in the query only.
        builder = if request.method == Method::GET || request.method == Method::DELETE {
            if request.params.is_empty() {
                builder
            } else {
                builder.query(&request.params)
            }
        } else {
            builder.form(&request.params)
        };
        if let Some(credentials) = credentials {
            builder = credentials.apply(builder, &request.method);
        }
        let used_ticket = match credentials {
            Some(Credentials::Ticket { obtained, .. }) => Some(*obtained),
            _ => None,
        };
        tracing::trace!("{call} params [{}]", encode::param_keys(&request.params));

        let in_flight = self.caps.acquire(request.node.as_deref()).await;
        let started = Instant::now();
        let answer = async {
            let response = builder.send().await?;
            let status = response.status();
            // hyper keeps a reason phrase only when it differs from the standard one.
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_string());
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, reason, body))
        }
        .await;
        drop(in_flight);
        let latency = started.elapsed();

        let result = match answer {
            Ok((status, _reason, body)) if status.is_success() => {
                tracing::debug!("{call} -> {} in {:.0?}", status.as_u16(), latency);
                decode_envelope(&call, status.as_u16(), &body)
                    .map_err(|error| Failure { error, used_ticket })
            }
            Ok((status, reason, body)) => {
                let error = error::from_response(&call, status.as_u16(), &reason, &body);
                tracing::debug!(
                    "{call} -> {} {} in {:.0?}",
                    status.as_u16(),
                    error.reason,
                    latency
                );
                Err(Failure { error, used_ticket })
            }
            Err(transport) => {
                let failure = self.transport_failure(&call, transport);
                tracing::debug!(
                    "{call} failed after {:.0?}: {}",
                    latency,
                    self.redact(failure.error.clone())
                );
                Err(failure)
            }
        };
        let failed = result.is_err();
        let endpoint = request.endpoint();
        self.with_stats(|s| {
            s.requests_total += 1;
            let entry = s.by_endpoint.entry(endpoint).or_default();
            entry.count += 1;
            entry.errors += u64::from(failed);
            entry.total_latency += latency;
        });
        result.map_err(|mut failure| {
            failure.error = self.redact(failure.error);
            failure
        })
    }

    fn transport_failure(&self, call: &str, error: reqwest::Error) -> Failure {
        // Our URLs carry no secrets, but error texts need no URL either.
        let error = error.without_url();
        if let Some(cause) = tls::find_rustls_error(&error) {
            let text = tls::refusal_text(&self.trust, self.seen.latest().as_deref(), cause);
            return Failure::known(local(ErrorClass::Tls, call, text));
        }
        let detail = error::chain_text(&error);
        let (reason, outcome_unknown) = if error.is_connect() {
            (format!("cannot connect to {}: {detail}", self.base), false)
        } else if error.is_timeout() {
            (
                format!("no answer within {:.0?} ({detail})", self.timeout),
                true,
            )
        } else {
            (format!("request failed: {detail}"), true)
        };
        Failure {
            error: PveError {
                outcome_unknown,
                ..local(ErrorClass::Transient, call, reason)
            },
            used_ticket: None,
        }
    }
}

/// `{"data": ...}` of a 2xx answer.
pub(crate) fn decode_envelope(call: &str, status: u16, body: &[u8]) -> Result<Value, PveError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let mut error = local(ErrorClass::Decode, call, format!("answer is not JSON: {e}"));
        error.status = Some(status);
        error
    })?;
    match value {
        Value::Object(mut map) => Ok(map.remove("data").unwrap_or(Value::Null)),
        other => {
            let mut error = local(
                ErrorClass::Decode,
                call,
                format!(
                    "answer has no data envelope: {}",
                    truncate(&other.to_string())
                ),
            );
            error.status = Some(status);
            Err(error)
        }
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= 200 {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(200).collect::<String>())
    }
}

/// Decodes the `data` of a call into `T`, as a `Decode` error naming the call.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    call: &str,
    data: Value,
) -> Result<T, PveError> {
    let shown = truncate(&data.to_string());
    serde_json::from_value(data).map_err(|e| {
        let mut error = local(
            ErrorClass::Decode,
            call,
            format!("unexpected answer ({e}): {shown}"),
        );
        error.status = Some(200);
        error
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_checked() {
        assert_eq!(
            base_url("https://pve1:8006").as_deref(),
            Ok("https://pve1:8006")
        );
        assert_eq!(
            base_url("https://pve1:8006/").as_deref(),
            Ok("https://pve1:8006")
        );
        assert_eq!(
            base_url(" https://10.0.0.2:8006/api2/json/ ").as_deref(),
            Ok("https://10.0.0.2:8006")
        );
        let http = base_url("http://pve1:8006").expect_err("http");
        assert!(http.reason.contains("https://"), "{http}");
        let creds = base_url("https://root:hunter22@pve1:8006").expect_err("credentials");
        assert!(!creds.to_string().contains("hunter22"), "{creds}");
        assert!(base_url("pve1:8006").is_err());
        assert!(base_url("https://pve1:8006/other").is_err());
    }

    #[test]
    fn envelopes_decode() {
        assert_eq!(
            decode_envelope("GET /x", 200, br#"{"data":"100"}"#).ok(),
            Some(Value::String("100".into()))
        );
        assert_eq!(
            decode_envelope("GET /x", 200, br#"{"data":null}"#).ok(),
            Some(Value::Null)
        );
        assert_eq!(
            decode_envelope("GET /x", 200, br#"{"data":[1],"total":1}"#).ok(),
            Some(serde_json::json!([1]))
        );
        assert_eq!(
            decode_envelope("GET /x", 200, b"<html>").map_err(|e| e.class),
            Err(ErrorClass::Decode)
        );
    }

    #[test]
    fn what_may_have_happened() {
        let response = |status, reason: &str| error::from_response("POST /x", status, reason, b"");
        let unknown = |status, reason: &str| response(status, reason).outcome_unknown;
        assert!(!unknown(595, "No route to host"));
        assert!(unknown(596, "Connection timed out"));
        assert!(!unknown(
            500,
            "can't lock file '/var/lock/qemu-server/lock-1.conf' - got timeout"
        ));
        assert!(!unknown(
            500,
            "cfs-lock 'storage-x' error: got lock request timeout"
        ));
        assert!(unknown(
            500,
            "VM 101 qga command 'guest-exec' failed - got timeout"
        ));
        assert!(!unknown(500, "VM is locked (clone)"));
        assert!(!unknown(401, "No ticket"));
    }
}
