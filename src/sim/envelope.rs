//! PVE's response envelope: `{"data": …}` on success, and the error shapes of
//! pve-http-server ≥ 5.2 (reason phrase = first line of the message, `message` keeps the full
//! text, `errors` for parameter failures, empty bodies for 401 and proxy pseudo-statuses).

use indexmap::IndexMap;
use serde_json::{Value, json};

/// What a handler answers on success.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiOk {
    pub data: Value,
    /// Only the task log sets it (and only when non-zero).
    pub total: Option<u64>,
}

impl ApiOk {
    pub fn data(data: Value) -> ApiOk {
        ApiOk { data, total: None }
    }
    pub fn null() -> ApiOk {
        ApiOk {
            data: Value::Null,
            total: None,
        }
    }
}

/// Every way a request can fail, each with PVE's exact wire shape.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// A handler `die` or `PVE::Exception`: JSON body with `message` (kept with its `\n`).
    Handler { code: u16, message: String },
    /// `400 Parameter verification failed.` with `errors`.
    Params(IndexMap<String, String>),
    /// 401 with an empty body and no Content-Type (delayed by the caller).
    Unauthorized(&'static str),
    /// `POST /access/ticket` with bad credentials: 401 with a JSON body.
    TicketFailed,
    /// pveproxy relaying an AnyEvent::HTTP pseudo-status (595/596): empty body.
    Proxy { code: u16, reason: &'static str },
    /// `error()` outside the handlers: plain-text body (501 no such uri, chunked, …).
    Plain { code: u16, message: String },
}

impl ApiError {
    /// A plain `die "text\n"` → 500.
    pub fn die(text: impl Into<String>) -> ApiError {
        let mut message = text.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        ApiError::Handler { code: 500, message }
    }

    pub fn forbidden(what: &str) -> ApiError {
        let message = if what.is_empty() {
            "Permission check failed\n".to_string()
        } else {
            format!("Permission check failed ({what})\n")
        };
        ApiError::Handler { code: 403, message }
    }

    pub fn param(name: &str, msg: impl Into<String>) -> ApiError {
        let mut m = IndexMap::new();
        m.insert(name.to_string(), msg.into());
        ApiError::Params(m)
    }

    pub fn not_implemented(method: &str, path: &str) -> ApiError {
        // rest_handler's message has no trailing newline.
        ApiError::Handler {
            code: 501,
            message: format!("Method '{method} {path}' not implemented"),
        }
    }

    pub fn timed_out() -> ApiError {
        ApiError::Proxy {
            code: 596,
            reason: "Connection timed out",
        }
    }

    pub fn no_route() -> ApiError {
        ApiError::Proxy {
            code: 595,
            reason: "No route to host",
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::Handler { code, .. }
            | ApiError::Proxy { code, .. }
            | ApiError::Plain { code, .. } => *code,
            ApiError::Params(_) => 400,
            ApiError::Unauthorized(_) | ApiError::TicketFailed => 401,
        }
    }

    /// The full message (for task logs and tests).
    pub fn message(&self) -> String {
        match self {
            ApiError::Handler { message, .. } | ApiError::Plain { message, .. } => message.clone(),
            ApiError::Params(_) => "Parameter verification failed.\n".into(),
            ApiError::Unauthorized(r) => (*r).to_string(),
            ApiError::TicketFailed => "authentication failure\n".into(),
            ApiError::Proxy { reason, .. } => (*reason).to_string(),
        }
    }

    /// The HTTP reason phrase: the first line of the message.
    pub fn reason(&self) -> String {
        first_line(&self.message()).to_string()
    }

    /// Body and whether it is JSON; `None` = empty body.
    pub fn body(&self) -> Option<(Vec<u8>, bool)> {
        match self {
            ApiError::Handler { message, .. } => {
                Some((json!({"data": null, "message": message}).to_string().into_bytes(), true))
            }
            ApiError::Params(errors) => Some((
                json!({"data": null, "errors": errors, "message": "Parameter verification failed.\n"})
                    .to_string()
                    .into_bytes(),
                true,
            )),
            ApiError::TicketFailed => Some((
                json!({"data": null, "message": "authentication failure\n"}).to_string().into_bytes(),
                true,
            )),
            ApiError::Plain { message, .. } => Some((message.clone().into_bytes(), false)),
            ApiError::Unauthorized(_) | ApiError::Proxy { .. } => None,
        }
    }
}

pub fn first_line(s: &str) -> &str {
    s.split('\n').next().unwrap_or("")
}

/// The success body: `{"data": …}` plus `total` when set and non-zero.
pub fn ok_body(ok: &ApiOk) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("data".into(), ok.data.clone());
    if let Some(t) = ok.total.filter(|t| *t > 0) {
        obj.insert("total".into(), json!(t));
    }
    Value::Object(obj).to_string().into_bytes()
}

/// A gzip member (RFC 1952) around a raw deflate stream.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend(crc32(data).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE, reflected), bit by bit: bodies are small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_first_line_and_message_keeps_newline() {
        let e = ApiError::die("VM is locked (clone)");
        assert_eq!(e.reason(), "VM is locked (clone)");
        assert_eq!(e.message(), "VM is locked (clone)\n");
        let (body, json) = e.body().expect("body");
        assert!(json);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            json!({"data": null, "message": "VM is locked (clone)\n"})
        );
    }

    #[test]
    fn auth_and_proxy_errors_have_empty_bodies() {
        assert!(ApiError::Unauthorized("No ticket").body().is_none());
        assert!(ApiError::timed_out().body().is_none());
        assert_eq!(ApiError::timed_out().code(), 596);
    }

    #[test]
    fn gzip_round_trips_and_has_the_known_crc() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let body = b"{\"data\":[]}".repeat(200);
        let z = gzip(&body);
        assert_eq!(&z[..3], &[0x1f, 0x8b, 8]);
        let raw = miniz_oxide::inflate::decompress_to_vec(&z[10..z.len() - 8]).expect("inflate");
        assert_eq!(raw, body);
        assert_eq!(&z[z.len() - 4..], &(body.len() as u32).to_le_bytes());
    }
}
