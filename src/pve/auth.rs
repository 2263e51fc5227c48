//! Credentials: an API token (one header, no CSRF) or a ticket from `POST /access/ticket` (cookie,
//! CSRF header on writes, renewed before its 2 h lifetime runs out).
//!
//! Secrets live in `Secret` and in header values marked sensitive; nothing here formats them.

use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::time::Instant;

use super::error::local;
use super::{Auth, ErrorClass, PveError, Secret};

/// A ticket lives 2 h on the server; renew it once it is an hour old (as proxmoxer does).
const TICKET_RENEW_AFTER: Duration = Duration::from_secs(3600);
/// Past this age a ticket is no longer renewable: log in with the password again (2 h minus a
/// margin for clock and request time).
const TICKET_UNUSABLE_AFTER: Duration = Duration::from_secs(2 * 3600 - 300);

pub(crate) struct Ticket {
    pub(crate) ticket: Secret,
    pub(crate) csrf: Secret,
    pub(crate) obtained: Instant,
}

impl Ticket {
    pub(crate) fn age(&self) -> Duration {
        self.obtained.elapsed()
    }
}

/// What one request carries.
pub(crate) enum Credentials {
    Token(HeaderValue),
    Ticket {
        cookie: HeaderValue,
        csrf: HeaderValue,
        obtained: Instant,
    },
}

impl Credentials {
    pub(crate) fn apply(
        &self,
        request: reqwest::RequestBuilder,
        method: &reqwest::Method,
    ) -> reqwest::RequestBuilder {
        match self {
            Credentials::Token(value) => {
                request.header(reqwest::header::AUTHORIZATION, value.clone())
            }
            Credentials::Ticket { cookie, csrf, .. } => {
                let request = request.header(reqwest::header::COOKIE, cookie.clone());
                // PVE wants the CSRF token on every non-GET ticket request.
                if *method == reqwest::Method::GET {
                    request
                } else {
                    request.header("CSRFPreventionToken", csrf.clone())
                }
            }
        }
    }
}

fn sensitive_header(value: &str, what: &str) -> Result<HeaderValue, PveError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        // Never echo the value: it holds the secret.
        local(
            ErrorClass::Auth,
            "configure authentication",
            format!("the {what} contains characters not allowed in an HTTP header"),
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// `user@realm!tokenid`: the shape PVE accepts (`[^\s:/]+` user, `[A-Za-z][A-Za-z0-9.\-_]+` id).
fn check_token_id(token_id: &str) -> Result<(), String> {
    let Some((user, id)) = token_id.split_once('!') else {
        return Err(format!(
            "token_id {token_id:?} must look like \"user@realm!tokenid\" (no '!' found)"
        ));
    };
    let user_ok = user.contains('@')
        && !user.is_empty()
        && !user
            .chars()
            .any(|c| c.is_whitespace() || c == ':' || c == '/');
    let mut id_chars = id.chars();
    let id_ok = id_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.len() >= 2
        && id_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !user_ok {
        return Err(format!(
            "token_id {token_id:?}: the part before '!' must be \"user@realm\""
        ));
    }
    if !id_ok {
        return Err(format!(
            "token_id {token_id:?}: the token name after '!' must start with a letter and use letters, digits, '.', '-', '_'"
        ));
    }
    Ok(())
}

pub(crate) enum Authenticator {
    Token {
        header: HeaderValue,
    },
    Password {
        user: String,
        password: Secret,
        /// Held across a login so concurrent callers wait for one login instead of starting many.
        ticket: tokio::sync::Mutex<Option<Ticket>>,
    },
}

impl Authenticator {
    pub(crate) fn new(auth: &Auth) -> Result<Self, PveError> {
        match auth {
            Auth::Token { token_id, secret } => {
                check_token_id(token_id)
                    .map_err(|e| local(ErrorClass::Auth, "configure authentication", e))?;
                if secret.expose().is_empty() {
                    return Err(local(
                        ErrorClass::Auth,
                        "configure authentication",
                        "the API token secret is empty",
                    ));
                }
                let header = sensitive_header(
                    &format!("PVEAPIToken={token_id}={}", secret.expose()),
                    "API token secret",
                )?;
                Ok(Authenticator::Token { header })
            }
            Auth::Password { user, password } => {
                if !user.contains('@') || user.starts_with('@') {
                    return Err(local(
                        ErrorClass::Auth,
                        "configure authentication",
                        format!(
                            "user {user:?} must look like \"user@realm\" (for example \"root@pam\")"
                        ),
                    ));
                }
                sensitive_header(password.expose(), "password")?;
                Ok(Authenticator::Password {
                    user: user.clone(),
                    password: password.clone(),
                    ticket: tokio::sync::Mutex::new(None),
                })
            }
        }
    }

    /// The secrets to scrub from any text, in case one slipped in (see `error::redact`).
    pub(crate) fn static_secrets(auth: &Auth) -> Vec<String> {
        match auth {
            Auth::Token { secret, .. } => vec![secret.expose().to_string()],
            Auth::Password { password, .. } => vec![password.expose().to_string()],
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Authenticator::Token { .. } => "API token".into(),
            Authenticator::Password { user, .. } => format!("ticket for {user}"),
        }
    }
}

/// When a ticket of this age should be renewed, or replaced by a fresh login.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TicketAction {
    Use,
    Renew,
    Login,
}

pub(crate) fn ticket_action(age: Duration, time_scale: f64) -> TicketAction {
    let scale = |d: Duration| d.mul_f64(time_scale.max(0.0));
    if age >= scale(TICKET_UNUSABLE_AFTER) {
        TicketAction::Login
    } else if age >= scale(TICKET_RENEW_AFTER) {
        TicketAction::Renew
    } else {
        TicketAction::Use
    }
}

pub(crate) fn ticket_credentials(ticket: &Ticket) -> Result<Credentials, PveError> {
    Ok(Credentials::Ticket {
        cookie: sensitive_header(
            &format!("PVEAuthCookie={}", ticket.ticket.expose()),
            "ticket",
        )?,
        csrf: sensitive_header(ticket.csrf.expose(), "CSRF token")?,
        obtained: ticket.obtained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_checked_without_echoing_the_secret() {
        assert!(check_token_id("root@pam!ci").is_ok());
        assert!(check_token_id("deploy@pve!roll-out_1.x").is_ok());
        assert!(check_token_id("root@pam").is_err());
        assert!(check_token_id("root!ci").is_err());
        assert!(check_token_id("root@pam!1ci").is_err());
        let bad = Authenticator::new(&Auth::Token {
            token_id: "root@pam!ci".into(),
            secret: Secret::new("bad\nsecret-xyz"),
        });
        let text = format!("{:?}", bad.as_ref().err());
        assert!(!text.contains("secret-xyz"), "{text}");
        assert!(text.contains("not allowed in an HTTP header"), "{text}");
    }

    #[test]
    fn token_header_is_sensitive() {
        let auth = Authenticator::new(&Auth::Token {
            token_id: "root@pam!ci".into(),
            secret: Secret::new("0b2f-very-secret"),
        })
        .expect("valid");
        let Authenticator::Token { header } = auth else {
            panic!("token")
        };
        assert!(header.is_sensitive());
        assert_eq!(
            header.to_str().ok(),
            Some("PVEAPIToken=root@pam!ci=0b2f-very-secret")
        );
        assert!(!format!("{header:?}").contains("very-secret"));
    }

    #[test]
    fn tickets_are_renewed_after_an_hour_and_replaced_near_two() {
        let h = |hours: f64| Duration::from_secs_f64(hours * 3600.0);
        assert_eq!(ticket_action(h(0.5), 1.0), TicketAction::Use);
        assert_eq!(ticket_action(h(1.0), 1.0), TicketAction::Renew);
        assert_eq!(ticket_action(h(1.9), 1.0), TicketAction::Renew);
        assert_eq!(ticket_action(h(1.95), 1.0), TicketAction::Login);
        // Scaled: at 0.01 an hour is 36 s.
        assert_eq!(
            ticket_action(Duration::from_secs(30), 0.01),
            TicketAction::Use
        );
        assert_eq!(
            ticket_action(Duration::from_secs(40), 0.01),
            TicketAction::Renew
        );
    }
}
