//! Error classification from status, reason phrase and body, and how a `PveError` reads.
//!
//! The texts are PVE's own (API errors, task exit statuses, guest-agent errors): classifying here
//! means the engine never parses error strings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{ErrorClass, PveError};

/// The class of an error text from PVE (an HTTP message or a task's exit status), or `None` when
/// the text is not one we know (the caller then falls back on the status code).
pub fn classify_message(text: &str) -> Option<ErrorClass> {
    let text = text.trim();
    // Agent texts first: `QEMU guest agent is not running` would otherwise look like `not running`.
    // The agent socket busy with another client, or QEMU's monitor socket not there (yet).
    if text.contains("QEMU guest agent is not running")
        || text.contains("No QEMU guest agent configured")
        || (text.contains("unable to connect to VM") && text.contains("qga socket"))
        || text.contains("unable to open monitor socket")
    {
        return Some(ErrorClass::AgentNotReady);
    }
    // The cluster filesystem refusing a config for a vmid another node has (a clone's
    // temporary config): the id is taken.
    if text.contains("close (rename) atomic file") && text.ends_with("failed: File exists") {
        return Some(ErrorClass::AlreadyExists);
    }
    // Lock and worker timeouts: nothing happened, the same call can succeed later.
    if text.contains("got timeout")
        || text.contains("can't lock file")
        || (text.contains("cfs-lock") && text.contains("got lock request timeout"))
        || text.contains("got no worker upid")
    {
        return Some(ErrorClass::Transient);
    }
    if text.contains("VM is locked (") {
        return Some(ErrorClass::Locked);
    }
    if is_vm_not_running(text) {
        return Some(ErrorClass::NotRunning);
    }
    if (text.contains("Configuration file") && text.contains("does not exist"))
        || text.contains("unable to find configuration file")
    {
        return Some(ErrorClass::NotFound);
    }
    if text.contains("config file already exists") {
        return Some(ErrorClass::AlreadyExists);
    }
    if text.contains("checksum mismatch (file change by other user?)") {
        return Some(ErrorClass::DigestMismatch);
    }
    if text.contains("Invalid parameter 'pid'") {
        return Some(ErrorClass::ExecPidUnknown);
    }
    None
}

/// `can't lock file '/var/lock/qemu-server/lock-N.conf' - got timeout` -> N.
pub(crate) fn config_lock_timeout(text: &str) -> Option<u32> {
    let rest = text
        .split("can't lock file '/var/lock/qemu-server/lock-")
        .nth(1)?;
    let (id, tail) = rest.split_once(".conf'")?;
    tail.contains("got timeout")
        .then(|| id.parse().ok())
        .flatten()
}

/// Whether a call answered so may have done its work: the answer was lost on its way
/// (502-504, 596-599), or a timeout other than a lock's (an agent command, a worker fork).
/// 595 means pveproxy never reached the handler; a lock not taken means nothing happened.
fn outcome_unknown(status: u16, class: ErrorClass, text: &str) -> bool {
    match status {
        595 => false,
        502..=504 | 596..=599 => true,
        _ if class == ErrorClass::Transient => {
            !(text.contains("can't lock file") || text.contains("cfs-lock"))
        }
        _ => false,
    }
}

/// `VM 101 is not running` (API) or `VM 101 not running` (raw QMP check).
fn is_vm_not_running(text: &str) -> bool {
    text.match_indices("VM ").any(|(at, _)| {
        let rest = &text[at + 3..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && {
            let tail = &rest[digits..];
            tail.starts_with(" is not running") || tail.starts_with(" not running")
        }
    })
}

/// The class of an HTTP error response. `text` is the body's `message`, else the reason phrase.
pub fn classify_response(status: u16, text: &str) -> ErrorClass {
    match status {
        401 => ErrorClass::Auth,
        403 => ErrorClass::Permission,
        400 => ErrorClass::InvalidParameter,
        // AnyEvent::HTTP pseudo-statuses relayed by pveproxy: the proxied connection failed.
        595..=599 => ErrorClass::Transient,
        // pveproxy/HTTP-level failures in front of the handlers.
        502..=504 => ErrorClass::Transient,
        _ => classify_message(text).unwrap_or(ErrorClass::Other),
    }
}

/// How a `PveError` reads (its `Display`).
pub(crate) fn render(error: &PveError) -> String {
    let mut out = format!("{}: ", error.call);
    if let Some(status) = error.status {
        let _ = write!(out, "{status} ");
    }
    // The message is the full text; the reason is only its first line.
    let text = match &error.message {
        Some(message) if !message.is_empty() => message.as_str(),
        _ => error.reason.as_str(),
    };
    out.push_str(text);
    if !error.errors.is_empty() {
        out.push_str(" - ");
        let parts: Vec<String> = error
            .errors
            .iter()
            .map(|(key, msg)| format!("{key}: {msg}"))
            .collect();
        out.push_str(&parts.join("; "));
    }
    out
}

/// Builds the error for an HTTP response with status >= 400 (or an unexpected non-2xx). `reason`
/// is the status line's phrase as received; when it is empty (absent, or dropped by the HTTP
/// parser because PVE put non-ASCII text in it) the message's first line or the standard phrase
/// stands in.
pub(crate) fn from_response(call: &str, status: u16, reason: &str, body: &[u8]) -> PveError {
    let (message, errors) = parse_error_body(body);
    let reason = match reason.trim() {
        "" => message
            .as_deref()
            .and_then(|m| m.lines().next())
            .or_else(|| {
                reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
            })
            .unwrap_or_default()
            .to_string(),
        given => given.to_string(),
    };
    let text = message.as_deref().unwrap_or(&reason);
    let class = classify_response(status, text);
    let outcome_unknown = outcome_unknown(status, class, text);
    PveError {
        class,
        call: call.to_string(),
        status: Some(status),
        reason,
        message,
        errors,
        outcome_unknown,
    }
}

/// `{"data":null,"message":"...\n","errors":{"p":"...\n"}}`; empty or non-JSON bodies give nothing.
fn parse_error_body(body: &[u8]) -> (Option<String>, BTreeMap<String, String>) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return (None, BTreeMap::new());
    };
    let message = map
        .get("message")
        .and_then(|m| m.as_str())
        .map(|m| m.trim().to_string());
    let errors = match map.get("errors") {
        Some(serde_json::Value::Object(errors)) => errors
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.trim().to_string(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    (message, errors)
}

/// An error with no HTTP response behind it (transport, TLS, decoding, bad input).
pub(crate) fn local(class: ErrorClass, call: &str, reason: impl Into<String>) -> PveError {
    PveError {
        class,
        call: call.to_string(),
        status: None,
        reason: reason.into(),
        message: None,
        errors: BTreeMap::new(),
        outcome_unknown: false,
    }
}

/// Replaces every known secret in the error's texts with `<redacted>`: a safety net under the
/// rule that secrets never reach error texts in the first place.
pub(crate) fn redact(mut error: PveError, secrets: &[String]) -> PveError {
    let scrub = |text: &mut String| {
        for secret in secrets {
            // Very short secrets would garble ordinary words and are not worth hiding that way.
            if secret.len() >= 4 && text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), "<redacted>");
            }
        }
    };
    scrub(&mut error.reason);
    scrub(&mut error.call);
    if let Some(message) = error.message.as_mut() {
        scrub(message);
    }
    for value in error.errors.values_mut() {
        scrub(value);
    }
    error
}

/// The error chain of a transport failure as one line, without the URL.
pub(crate) fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = current {
        let text = err.to_string();
        // Wrappers often repeat their source's text; keep each piece once.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_lock_timeout_names_its_vm() {
        let text = "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout";
        assert_eq!(config_lock_timeout(text), Some(101));
        assert_eq!(
            config_lock_timeout(
                "can't lock file '/var/lock/pve-manager/pve-storage-ssd' - got timeout"
            ),
            None
        );
        assert_eq!(config_lock_timeout("VM is locked (clone)"), None);
        let error = from_response("PUT /x", 500, text, b"");
        assert_eq!(
            (error.config_lock_timeout(), error.outcome_unknown),
            (Some(101), false)
        );
    }

    #[test]
    fn messages_map_to_their_classes() {
        let cases = [
            ("QEMU guest agent is not running", ErrorClass::AgentNotReady),
            ("No QEMU guest agent configured", ErrorClass::AgentNotReady),
            ("VM 101 is not running", ErrorClass::NotRunning),
            ("VM 101 not running", ErrorClass::NotRunning),
            ("VM is locked (clone)", ErrorClass::Locked),
            ("VM is locked (backup)", ErrorClass::Locked),
            (
                "unable to connect to VM 101 qga socket - timeout after 11 retries",
                ErrorClass::AgentNotReady,
            ),
            (
                "close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/120.conf' failed: File exists",
                ErrorClass::AlreadyExists,
            ),
            (
                "checksum mismatch (file change by other user?)",
                ErrorClass::DigestMismatch,
            ),
            (
                "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout",
                ErrorClass::Transient,
            ),
            (
                "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-ssd' - got timeout",
                ErrorClass::Transient,
            ),
            (
                "cfs-lock 'storage-shared' error: got lock request timeout",
                ErrorClass::Transient,
            ),
            ("got no worker upid - fork failed", ErrorClass::Transient),
            (
                "VM 101 qmp command 'guest-network-get-interfaces' failed - got timeout",
                ErrorClass::Transient,
            ),
            (
                "VM 101 qga command 'guest-ping' failed - got timeout",
                ErrorClass::Transient,
            ),
            (
                "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist",
                ErrorClass::NotFound,
            ),
            (
                "unable to find configuration file for VM 999 on node 'pve1'",
                ErrorClass::NotFound,
            ),
            (
                "unable to create VM 102: config file already exists",
                ErrorClass::AlreadyExists,
            ),
            (
                "Agent error: Invalid parameter 'pid'",
                ErrorClass::ExecPidUnknown,
            ),
        ];
        for (text, class) in cases {
            assert_eq!(classify_message(text), Some(class), "{text}");
            assert_eq!(classify_response(500, text), class, "{text}");
        }
        for text in [
            "VM 101 already running",
            "hostname lookup 'x' failed - failed to get address info for: x: Name or service not known",
            "you can't start a vm if it's a template",
        ] {
            assert_eq!(classify_message(text), None, "{text}");
            assert_eq!(classify_response(500, text), ErrorClass::Other, "{text}");
        }
    }

    #[test]
    fn statuses_map_to_their_classes() {
        assert_eq!(classify_response(401, "No ticket"), ErrorClass::Auth);
        assert_eq!(
            classify_response(401, "Permission denied - invalid csrf token"),
            ErrorClass::Auth
        );
        assert_eq!(classify_response(401, ""), ErrorClass::Auth);
        assert_eq!(
            classify_response(403, "Permission check failed (/vms/100, VM.Audit)"),
            ErrorClass::Permission
        );
        assert_eq!(
            classify_response(400, "Parameter verification failed."),
            ErrorClass::InvalidParameter
        );
        // A 400 stays a parameter error even when its text names a lock or an existing VM.
        assert_eq!(
            classify_response(400, "VM 105 already exists"),
            ErrorClass::InvalidParameter
        );
        for status in [595, 596, 597, 598, 599] {
            assert_eq!(classify_response(status, ""), ErrorClass::Transient);
        }
        assert_eq!(
            classify_response(501, "Method 'GET /foo' not implemented"),
            ErrorClass::Other
        );
    }

    #[test]
    fn response_error_reads_message_errors_and_reason() {
        let body = br#"{"data":null,"errors":{"newid":"invalid format - value does not look like a valid VM ID\n"},"message":"Parameter verification failed.\n"}"#;
        let error = from_response(
            "POST /nodes/pve1/qemu/9000/clone",
            400,
            "Parameter verification failed.",
            body,
        );
        assert_eq!(error.class, ErrorClass::InvalidParameter);
        assert_eq!(
            error.message.as_deref(),
            Some("Parameter verification failed.")
        );
        assert_eq!(
            error.errors["newid"],
            "invalid format - value does not look like a valid VM ID"
        );
        assert_eq!(
            error.to_string(),
            "POST /nodes/pve1/qemu/9000/clone: 400 Parameter verification failed. - newid: invalid format - value does not look like a valid VM ID"
        );

        let locked = from_response(
            "POST /nodes/pve1/qemu/9000/clone",
            500,
            "VM is locked (clone)",
            br#"{"data":null,"message":"VM is locked (clone)\n"}"#,
        );
        assert_eq!(locked.class, ErrorClass::Locked);
        assert_eq!(
            locked.to_string(),
            "POST /nodes/pve1/qemu/9000/clone: 500 VM is locked (clone)"
        );

        // PVE < 8.3: the reason phrase is all there is.
        let old = from_response(
            "PUT /nodes/pve1/qemu/101/config",
            500,
            "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout",
            br#"{"data":null}"#,
        );
        assert_eq!(old.class, ErrorClass::Transient);
        assert_eq!(old.message, None);

        // 401: empty body, no content type.
        let auth = from_response("GET /version", 401, "Authentication failed!", b"");
        assert_eq!(auth.class, ErrorClass::Auth);
        assert_eq!(auth.to_string(), "GET /version: 401 Authentication failed!");

        let proxy = from_response("GET /nodes/pve2/status", 596, "Connection timed out", b"");
        assert_eq!(proxy.class, ErrorClass::Transient);

        // A reason phrase with non-ASCII text reaches us empty: the message's first line stands in.
        let quoted = from_response(
            "POST /nodes/pve1/qemu/101/agent/exec",
            500,
            "",
            br#"{"data":null,"message":"Agent error: Failed to execute child process \u201cx\u201d\nmore\n"}"#,
        );
        assert_eq!(
            quoted.reason,
            "Agent error: Failed to execute child process \u{201c}x\u{201d}"
        );
        assert_eq!(
            from_response("GET /version", 401, "", b"").reason,
            "Unauthorized"
        );
    }

    #[test]
    fn redaction_scrubs_every_text() {
        let mut error = local(
            ErrorClass::Other,
            "GET /version",
            "failed with s3cr3t-value inside",
        );
        error.message = Some("also s3cr3t-value".into());
        error
            .errors
            .insert("password".into(), "got 's3cr3t-value'".into());
        let error = redact(error, &["s3cr3t-value".into(), "ab".into()]);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
        // Two-letter secrets are left alone rather than garbling words.
        assert!(shown.contains("GET /version"));
    }
}
