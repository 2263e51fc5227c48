//! Authentication as pve-access-control does it: API tokens (`PVEAPIToken=user@realm!id=secret`,
//! split at the last `=`, no CSRF) and tickets (`PVE:user:HEXTS::sig`, 2 h lifetime, CSRF token
//! required on non-GET), plus a small privilege model for 403s and list filtering.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{self, HeaderMap};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::envelope::ApiError;
use super::params::uri_unescape;
use super::scenario::AuthSpec;

/// Ticket lifetime (simulated seconds) and the clock-skew grace PVE allows.
pub const TICKET_LIFETIME_S: i64 = 7200;
const TICKET_GRACE_S: i64 = 300;

/// Every privilege the simulator checks (what a full-rights identity has).
pub const ALL_PRIVS: &[&str] = &[
    "VM.Audit",
    "VM.Allocate",
    "VM.Clone",
    "VM.Config.Disk",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Config.Cloudinit",
    "VM.PowerMgmt",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.Unrestricted",
    "VM.Monitor",
    "Datastore.Audit",
    "Datastore.AllocateSpace",
    "Sys.Audit",
    "Sys.Modify",
    "SDN.Use",
    "Pool.Audit",
];

#[derive(Debug, Clone)]
pub enum Privs {
    All,
    /// A privilege-separated token: its grants only.
    Only(Arc<Grants>),
}

/// A token's grants: privileges everywhere, and per-path ACL entries.
#[derive(Debug, Default)]
pub struct Grants {
    everywhere: HashSet<String>,
    acl: Vec<(String, HashSet<String>, bool)>,
}

impl Grants {
    fn on(&self, path: &str, privilege: &str) -> bool {
        self.everywhere.contains(privilege)
            || self.acl.iter().any(|(p, set, propagate)| {
                set.contains(privilege)
                    && (p == path
                        || (*propagate
                            && (p == "/"
                                || path
                                    .strip_prefix(p.as_str())
                                    .is_some_and(|rest| rest.starts_with('/')))))
            })
    }

    fn anywhere(&self, privilege: &str) -> bool {
        self.everywhere.contains(privilege)
            || self.acl.iter().any(|(_, set, _)| set.contains(privilege))
    }

    /// The paths `/access/permissions` lists without a `path`.
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.acl.iter().map(|(p, _, _)| p.clone()).collect();
        if !self.everywhere.is_empty() {
            v.push("/".into());
        }
        v.sort();
        v.dedup();
        v
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `user@realm`
    pub user: String,
    /// Token id without the user, for token requests.
    pub token: Option<String>,
    pub privs: Privs,
}

impl Identity {
    /// `root@pam` itself (what the HA resource manager runs as).
    pub fn root() -> Identity {
        Identity {
            user: "root@pam".into(),
            token: None,
            privs: Privs::All,
        }
    }

    /// `root@pam` or `root@pam!ci`: what UPIDs carry.
    pub fn full_id(&self) -> String {
        match &self.token {
            Some(t) => format!("{}!{t}", self.user),
            None => self.user.clone(),
        }
    }

    /// Paths that test the identity literally (`skiplock`): tokens are never root.
    pub fn is_root(&self) -> bool {
        self.user == "root@pam" && self.token.is_none()
    }

    /// `privilege` somewhere (what list endpoints filter by before looking closer).
    pub fn has(&self, privilege: &str) -> bool {
        match &self.privs {
            Privs::All => true,
            Privs::Only(g) => g.anywhere(privilege),
        }
    }

    /// `privilege` on `path`, by an ACL on it or propagated from above.
    pub fn has_on(&self, path: &str, privilege: &str) -> bool {
        match &self.privs {
            Privs::All => true,
            Privs::Only(g) => g.on(path, privilege),
        }
    }

    /// The paths `/access/permissions` reports without a `path` parameter.
    pub fn acl_paths(&self) -> Vec<String> {
        match &self.privs {
            Privs::All => vec!["/".into()],
            Privs::Only(g) => g.paths(),
        }
    }

    /// Any of `privs` on `path`, else `403 Permission check failed (path, a|b)`.
    pub fn require(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        if privs.iter().any(|p| self.has_on(path, p)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(&format!("{path}, {}", privs.join("|"))))
        }
    }

    /// The `cap` object of a ticket response.
    pub fn caps(&self) -> Value {
        let group = |prefixes: &[&str]| {
            let mut m = serde_json::Map::new();
            for p in ALL_PRIVS {
                if prefixes.iter().any(|pre| p.starts_with(pre)) && self.has(p) {
                    m.insert(p.to_string(), json!(1));
                }
            }
            Value::Object(m)
        };
        json!({
            "vms": group(&["VM."]),
            "storage": group(&["Datastore."]),
            "nodes": group(&["Sys."]),
            "sdn": group(&["SDN."]),
            "access": {}, "dc": {}, "mapping": {},
        })
    }
}

struct TokenEntry {
    secret: String,
    privs: Privs,
}

pub struct Auth {
    tokens: HashMap<String, TokenEntry>,
    users: HashMap<String, String>,
    key: [u8; 32],
}

static UUID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random-looking UUID (token secrets, cluster id); unique per call.
pub fn new_uuid() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(UUID_COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let mut b: [u8; 32] = h.finalize().into();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// `user@realm!tokenid` as PVE accepts it.
pub fn check_token_id(id: &str) -> Result<(), String> {
    let Some((user, tok)) = id.rsplit_once('!') else {
        return Err("expected USER@REALM!TOKENID, e.g. root@pam!rollout".into());
    };
    check_userid(user)?;
    let b = tok.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
    if !ok {
        return Err(format!(
            "token name '{tok}' must match [A-Za-z][A-Za-z0-9.-_]+"
        ));
    }
    Ok(())
}

pub fn check_userid(user: &str) -> Result<(), String> {
    let Some((name, realm)) = user.rsplit_once('@') else {
        return Err(format!("user '{user}' needs a realm, e.g. root@pam"));
    };
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == ':' || c == '/')
        || realm.is_empty()
    {
        return Err(format!("user '{user}' is not a valid USER@REALM"));
    }
    Ok(())
}

impl Auth {
    pub fn new(
        tokens: &[(String, String)],
        users: &[(String, String)],
        extra: &AuthSpec,
        seed: u64,
    ) -> Auth {
        let mut map = HashMap::new();
        for (id, secret) in tokens {
            map.insert(
                id.clone(),
                TokenEntry {
                    secret: secret.clone(),
                    privs: Privs::All,
                },
            );
        }
        for t in &extra.tokens {
            let privs = if t.privsep {
                Privs::Only(Arc::new(Grants {
                    everywhere: t.privileges.iter().cloned().collect(),
                    acl: t
                        .acl
                        .iter()
                        .map(|a| {
                            let path = a.path.trim_end_matches('/');
                            let path = if path.is_empty() { "/" } else { path };
                            (
                                path.to_string(),
                                a.privileges.iter().cloned().collect(),
                                a.propagate,
                            )
                        })
                        .collect(),
                }))
            } else {
                Privs::All
            };
            map.insert(
                t.id.clone(),
                TokenEntry {
                    secret: t.secret.clone(),
                    privs,
                },
            );
        }
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(new_uuid().as_bytes());
        Auth {
            tokens: map,
            users: users.iter().cloned().collect(),
            key: h.finalize().into(),
        }
    }

    /// Authenticates a request, or gives the 401 reason phrase.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        is_get: bool,
        now_epoch: i64,
    ) -> Result<Identity, &'static str> {
        let authz = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(value) = token_value(authz) {
            return self
                .verify_token(&uri_unescape(&value))
                .ok_or("Authentication failed!");
        }
        let ticket = cookie_ticket(headers)
            .or_else(|| authz.strip_prefix("PVEAuthCookie=").map(uri_unescape));
        let Some(ticket) = ticket else {
            return Err("No ticket");
        };
        let user = self
            .verify_ticket(&ticket, now_epoch)
            .ok_or("Authentication failed!")?;
        if !is_get {
            let csrf = headers
                .get("CSRFPreventionToken")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !self.verify_csrf(csrf, &user, now_epoch) {
                return Err("Permission denied - invalid csrf token");
            }
        }
        Ok(Identity {
            user,
            token: None,
            privs: Privs::All,
        })
    }

    fn verify_token(&self, value: &str) -> Option<Identity> {
        // Split at the LAST '=': the token id itself may not contain one, the secret could.
        let (id, secret) = value.rsplit_once('=')?;
        let entry = self.tokens.get(id)?;
        if entry.secret != secret {
            return None;
        }
        let (user, tok) = id.rsplit_once('!')?;
        Some(Identity {
            user: user.to_string(),
            token: Some(tok.to_string()),
            privs: entry.privs.clone(),
        })
    }

    pub fn make_ticket(&self, user: &str, now_epoch: i64) -> (String, String) {
        let ts = format!("{:08X}", now_epoch);
        let plain = format!("PVE:{user}:{ts}");
        let sig = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(&self.key, plain.as_bytes()));
        let csrf_sig = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(hmac_sha256(&self.key, format!("{ts}:{user}").as_bytes()));
        (format!("{plain}::{sig}"), format!("{ts}:{csrf_sig}"))
    }

    /// The user of a valid, unexpired ticket.
    pub fn verify_ticket(&self, ticket: &str, now_epoch: i64) -> Option<String> {
        let (plain, sig) = ticket.split_once("::")?;
        let rest = plain.strip_prefix("PVE:")?;
        let (user, ts) = rest.rsplit_once(':')?;
        let ts = i64::from_str_radix(ts, 16).ok()?;
        let want = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(&self.key, plain.as_bytes()));
        let age = now_epoch - ts;
        (want == sig && age > -TICKET_GRACE_S && age < TICKET_LIFETIME_S).then(|| user.to_string())
    }

    fn verify_csrf(&self, token: &str, user: &str, now_epoch: i64) -> bool {
        let Some((ts, sig)) = token.split_once(':') else {
            return false;
        };
        let Ok(t) = i64::from_str_radix(ts, 16) else {
            return false;
        };
        let want = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(hmac_sha256(&self.key, format!("{ts}:{user}").as_bytes()));
        let age = now_epoch - t;
        want == sig && age > -TICKET_GRACE_S && age < TICKET_LIFETIME_S
    }

    /// `POST /access/ticket`: a password, or a valid ticket of the same user (renewal).
    pub fn login(&self, user: &str, password: &str, now_epoch: i64) -> Option<Identity> {
        let ok = self.users.get(user).is_some_and(|pw| pw == password)
            || self.verify_ticket(password, now_epoch).as_deref() == Some(user);
        ok.then(|| Identity {
            user: user.to_string(),
            token: None,
            privs: Privs::All,
        })
    }
}

/// `/(?:^|\s)PVEAPIToken(?:=| )([^;]*)/`
fn token_value(authz: &str) -> Option<String> {
    let mut start = 0;
    while let Some(pos) = authz[start..].find("PVEAPIToken") {
        let at = start + pos;
        let boundary = at == 0 || authz[..at].ends_with(char::is_whitespace);
        let after = &authz[at + "PVEAPIToken".len()..];
        if boundary && (after.starts_with('=') || after.starts_with(' ')) {
            let v = &after[1..];
            return Some(v.split(';').next().unwrap_or("").to_string());
        }
        start = at + 1;
    }
    None
}

fn cookie_ticket(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some(t) = part.trim().strip_prefix("PVEAuthCookie=") {
                return Some(uri_unescape(t));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            &[("root@pam!ci".into(), "5ecret-uuid".into())],
            &[("root@pam".into(), "pw".into())],
            &AuthSpec::default(),
            1,
        )
    }

    #[test]
    fn token_splits_at_last_equals() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "PVEAPIToken=root@pam!ci=5ecret-uuid".parse().expect("hv"),
        );
        let id = a.authenticate(&h, false, 0).expect("token ok");
        assert_eq!(id.full_id(), "root@pam!ci");
        // A space works as the separator, and the value may be URI-escaped.
        h.insert(
            "authorization",
            "PVEAPIToken root%40pam%21ci=5ecret-uuid"
                .parse()
                .expect("hv"),
        );
        assert!(a.authenticate(&h, false, 0).is_ok());
        h.insert(
            "authorization",
            "PVEAPIToken=root@pam!ci=wrong".parse().expect("hv"),
        );
        assert_eq!(
            a.authenticate(&h, true, 0).unwrap_err(),
            "Authentication failed!"
        );
    }

    #[test]
    fn ticket_needs_csrf_on_writes_and_expires() {
        let a = auth();
        let (ticket, csrf) = a.make_ticket("root@pam", 1000);
        assert!(ticket.starts_with("PVE:root@pam:000003E8::"));
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            format!("PVEAuthCookie={ticket}").parse().expect("hv"),
        );
        assert!(a.authenticate(&h, true, 1000).is_ok());
        assert_eq!(
            a.authenticate(&h, false, 1000).unwrap_err(),
            "Permission denied - invalid csrf token"
        );
        h.insert("csrfpreventiontoken", csrf.parse().expect("hv"));
        assert!(a.authenticate(&h, false, 1000).is_ok());
        assert_eq!(
            a.authenticate(&h, true, 1000 + TICKET_LIFETIME_S)
                .unwrap_err(),
            "Authentication failed!"
        );
        assert!(
            a.login("root@pam", &ticket, 2000).is_some(),
            "renewal with the old ticket"
        );
    }

    #[test]
    fn no_credentials_is_no_ticket() {
        assert_eq!(
            auth().authenticate(&HeaderMap::new(), true, 0).unwrap_err(),
            "No ticket"
        );
    }
}
