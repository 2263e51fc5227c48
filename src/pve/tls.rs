//! TLS trust for the Proxmox connection: a pinned SHA-256 fingerprint, a CA file, the system roots
//! or (on purpose) nothing. rustls with the ring provider, handed to reqwest preconfigured.
//!
//! Every mode goes through one verifier that records the leaf's fingerprint before deciding, so
//! that an untrusted certificate can be reported with the exact `fingerprint = "..."` line to add
//! (reqwest's error does not carry the certificate).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::error::local;
use super::{ErrorClass, PveError, TlsTrust};

/// `AB:CD:...`: SHA-256 of a DER certificate as PVE shows it (uppercase, colon-separated).
pub fn fingerprint_of_der(der: &[u8]) -> String {
    format_fingerprint(&Sha256::digest(der))
}

fn format_fingerprint(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Accepts a SHA-256 fingerprint as people paste it: `AB:CD:...` as the node's Certificates
/// panel and `pvenode cert info` show it, plain hex, any case, spaces or colons anywhere, and
/// `openssl x509 -fingerprint -sha256` output (`sha256 Fingerprint=AB:CD:...`). Returns the PVE
/// spelling (upper-case colon-separated pairs). The error says what is wrong and what is
/// expected, without repeating the value (callers name it).
pub fn normalize_fingerprint(text: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected a SHA-256 fingerprint: 64 hex digits, bare or as 32 \
                            colon-separated pairs (AB:CD:...), as the node's Certificates panel \
                            or `pvenode cert info` shows it";
    let trimmed = text.trim();
    let value = match trimmed.split_once('=') {
        Some((label, value)) if label.trim().eq_ignore_ascii_case("sha256 fingerprint") => value,
        _ => trimmed,
    };
    let hex: String = value
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("contains {bad:?}; {EXPECTED}"));
    }
    if hex.len() != 64 {
        return Err(format!("has {} hex digits; {EXPECTED}", hex.len()));
    }
    let bytes: Vec<u8> = (0..32)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    Ok(format_fingerprint(&bytes))
}

/// The leaf fingerprint of the latest handshake (all connections go to the same server).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeenCertificate(Arc<Mutex<Option<String>>>);

impl SeenCertificate {
    fn record(&self, fingerprint: String) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(fingerprint);
        }
    }
    pub(crate) fn latest(&self) -> Option<String> {
        self.0.lock().ok().and_then(|slot| slot.clone())
    }
}

#[derive(Debug)]
enum Decision {
    Pinned(String),
    WebPki(Arc<WebPkiServerVerifier>),
    /// System trust asked for, but the system has no roots: nothing can be trusted.
    NoRoots,
    Insecure,
}

#[derive(Debug)]
struct Verifier {
    decision: Decision,
    seen: SeenCertificate,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = fingerprint_of_der(end_entity.as_ref());
        self.seen.record(fingerprint.clone());
        match &self.decision {
            // Pinning trusts exactly this certificate, whatever its names or issuer (as PVE itself
            // pins node certificates).
            Decision::Pinned(want) if *want == fingerprint => Ok(ServerCertVerified::assertion()),
            Decision::Pinned(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            Decision::WebPki(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Decision::NoRoots => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            Decision::Insecure => Ok(ServerCertVerified::assertion()),
        }
    }

    // The handshake signatures are checked in every mode: they prove the server holds the key of
    // the certificate it showed.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

const CALL: &str = "configure TLS";

/// The rustls config for `trust`, and the slot its verifier reports certificates to.
pub(crate) fn client_config(
    trust: &TlsTrust,
) -> Result<(rustls::ClientConfig, SeenCertificate), PveError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let decision = match trust {
        TlsTrust::Fingerprint(text) => Decision::Pinned(
            normalize_fingerprint(text)
                .map_err(|e| local(ErrorClass::Tls, CALL, format!("fingerprint {text:?} {e}")))?,
        ),
        TlsTrust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                local(
                    ErrorClass::Tls,
                    CALL,
                    format!("cannot read CA file {}: {e}", path.display()),
                )
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    local(
                        ErrorClass::Tls,
                        CALL,
                        format!("CA file {} is not valid PEM: {e}", path.display()),
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    local(
                        ErrorClass::Tls,
                        CALL,
                        format!(
                            "CA file {} holds an unusable certificate: {e}",
                            path.display()
                        ),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(local(
                    ErrorClass::Tls,
                    CALL,
                    format!(
                        "CA file {} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)",
                        path.display()
                    ),
                ));
            }
            webpki(roots, &provider)?
        }
        TlsTrust::System => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!("system certificate store: {error}");
            }
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system root certificates found; pin the server with `fingerprint` or set `ca_cert`"
                );
                Decision::NoRoots
            } else {
                webpki(roots, &provider)?
            }
        }
        TlsTrust::Insecure => Decision::Insecure,
    };
    let seen = SeenCertificate::default();
    let verifier = Arc::new(Verifier {
        decision,
        seen: seen.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| local(ErrorClass::Tls, CALL, format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // pveproxy speaks HTTP/1.1 only, and its reason phrases (the error text) exist only there.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, seen))
}

fn webpki(roots: RootCertStore, provider: &Arc<CryptoProvider>) -> Result<Decision, PveError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map(Decision::WebPki)
        .map_err(|e| local(ErrorClass::Tls, CALL, format!("TLS setup failed: {e}")))
}

/// The text of a refused certificate: what was wrong, the fingerprint, and the line to add.
pub(crate) fn refusal_text(trust: &TlsTrust, seen: Option<&str>, cause: &rustls::Error) -> String {
    let Some(server) = seen else {
        return format!("TLS handshake failed: {cause}");
    };
    let line = format!("fingerprint = \"{server}\"");
    match trust {
        TlsTrust::Fingerprint(pinned) => {
            let pinned = normalize_fingerprint(pinned).unwrap_or_else(|_| pinned.clone());
            format!(
                "TLS: the server's certificate does not match the pinned fingerprint; refusing to connect.\n  \
                 pinned: {pinned}\n  server: {server}\n\
                 If the certificate was renewed on purpose (check on the host: `pvenode cert info`), replace the \
                 line under [proxmox] in deploy.toml with:\n{line}"
            )
        }
        _ => {
            let why = match cause {
                rustls::Error::InvalidCertificate(reason) => describe_certificate_error(reason),
                other => other.to_string(),
            };
            format!(
                "TLS: the server's certificate is not trusted ({why}).\n  SHA-256 fingerprint: {server}\n\
                 If this is your Proxmox VE host (compare with `pvenode cert info` on the host), trust it by adding \
                 this line under [proxmox] in deploy.toml:\n{line}"
            )
        }
    }
}

fn describe_certificate_error(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            "unknown issuer: self-signed or signed by a CA this machine does not trust".into()
        }
        CertificateError::Expired => "expired".into(),
        CertificateError::NotValidForName => "not valid for this host name".into(),
        other => format!("{other:?}"),
    }
}

/// Finds the rustls error in a transport error's chain. It travels inside `io::Error`s (possibly
/// nested), whose `source()` skips the wrapped error, so those are opened explicitly.
pub(crate) fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref());
    if let Some(found) = wrapped.and_then(|inner| find_rustls_error(inner)) {
        return Some(found);
    }
    error.source().and_then(find_rustls_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "5A:1B:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:01:23:45:67:89:AB:CD:EF:10:32:54:76:98:BA";

    #[test]
    fn fingerprints_in_any_spelling() {
        assert_eq!(normalize_fingerprint(FP).as_deref(), Ok(FP));
        assert_eq!(normalize_fingerprint(&FP.to_lowercase()).as_deref(), Ok(FP));
        assert_eq!(
            normalize_fingerprint(&FP.replace(':', "")).as_deref(),
            Ok(FP)
        );
        assert_eq!(
            normalize_fingerprint(&format!(" {} ", FP.replace(':', " "))).as_deref(),
            Ok(FP)
        );
        let short = normalize_fingerprint("AB:CD").expect_err("too short");
        assert!(short.contains("has 4 hex digits"), "{short}");
        let bad = normalize_fingerprint(&FP.replace('5', "x")).expect_err("not hex");
        assert!(bad.contains("'x'"), "{bad}");
        assert!(
            !bad.contains(&FP.replace('5', "x")),
            "the caller names the value: {bad}"
        );
    }

    /// Every spelling the config once accepted on its own (bare hex, colon pairs, any case)
    /// and every one the client accepted (spaces, colons anywhere), plus openssl's output.
    #[test]
    fn fingerprints_accept_every_spelling_people_paste() {
        let bare = FP.replace(':', "");
        for spelling in [
            bare.clone(),
            bare.to_lowercase(),
            FP.to_lowercase(),
            FP.replace(':', " "),
            format!("  {FP}\n"),
            bare.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(":"),
            format!("sha256 Fingerprint={FP}"),
            format!("SHA256 Fingerprint={}", FP.to_lowercase()),
        ] {
            assert_eq!(
                normalize_fingerprint(&spelling).as_deref(),
                Ok(FP),
                "{spelling:?}"
            );
        }
        for (bad, says) in [
            ("ab".repeat(31), "has 62 hex digits"),
            ("ab".repeat(33), "has 66 hex digits"),
            ("zz".repeat(32), "contains 'z'"),
            (String::new(), "has 0 hex digits"),
            (format!("sha1 Fingerprint={FP}"), "contains 's'"),
        ] {
            let err = normalize_fingerprint(&bad).expect_err(&bad);
            assert!(
                err.contains(says) && err.contains("64 hex digits"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn fingerprint_is_sha256_of_der_uppercase_colons() {
        // SHA-256 of the empty input.
        assert_eq!(
            fingerprint_of_der(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn refusals_show_the_fingerprint_and_the_line_to_add() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let text = refusal_text(&TlsTrust::System, Some(FP), &unknown);
        assert!(
            text.contains(&format!("SHA-256 fingerprint: {FP}")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l == format!("fingerprint = \"{FP}\"")),
            "{text}"
        );

        let other = "00".repeat(32);
        let mismatch =
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        let text = refusal_text(&TlsTrust::Fingerprint(other.clone()), Some(FP), &mismatch);
        assert!(
            text.contains(&format!(
                "pinned: {}",
                normalize_fingerprint(&other).expect("valid")
            )),
            "{text}"
        );
        assert!(text.contains(&format!("server: {FP}")), "{text}");
    }

    #[test]
    fn configs_build_for_every_mode() {
        assert!(client_config(&TlsTrust::Fingerprint(FP.into())).is_ok());
        assert!(client_config(&TlsTrust::Insecure).is_ok());
        assert!(client_config(&TlsTrust::System).is_ok());
        let bad_pin = client_config(&TlsTrust::Fingerprint("AB:CD".into())).expect_err("bad pin");
        assert_eq!(bad_pin.class, ErrorClass::Tls);
        let dir = tempfile::tempdir().expect("tempdir");
        let missing =
            client_config(&TlsTrust::CaFile(dir.path().join("nope.pem"))).expect_err("missing");
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").expect("write");
        let empty = client_config(&TlsTrust::CaFile(empty)).expect_err("empty");
        assert!(
            empty.to_string().contains("holds no certificate"),
            "{empty}"
        );
    }
}
