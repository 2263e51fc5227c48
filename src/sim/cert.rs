//! The simulator's certificates, made at start like a fresh PVE install: a cluster CA
//! (`O=PVE Cluster Manager CA`) and a node certificate signed by it with the PVE subject and SAN.
//! Keys are ECDSA P-256 (ring cannot generate RSA keys); clients do not care.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::SimError;

pub struct SimCert {
    /// PEM of the cluster CA (what `pve-root-ca.pem` is on a real cluster).
    pub ca_pem: String,
    /// Leaf first, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf's DER, uppercase hex, colon separated (as `ssl_fingerprint`).
    pub fingerprint: String,
}

fn tls_err(e: impl std::fmt::Display) -> SimError {
    SimError::Tls(e.to_string())
}

pub fn generate(node: &str, domain: &str, uuid: &str) -> Result<SimCert, SimError> {
    let now = jiff::Timestamp::now();
    let to_offset = |ts: jiff::Timestamp| {
        let dt = ts.to_zoned(jiff::tz::TimeZone::UTC);
        rcgen::date_time_ymd(dt.year() as i32, dt.month() as u8, dt.day() as u8)
    };
    let not_before = to_offset(now - jiff::SignedDuration::from_hours(24));
    let fqdn = format!("{node}.{domain}");

    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Proxmox Virtual Environment");
    dn.push(DnType::OrganizationalUnitName, uuid);
    dn.push(DnType::OrganizationName, "PVE Cluster Manager CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = to_offset(now + jiff::SignedDuration::from_hours(24 * 365 * 10));
    let ca_cert = ca.self_signed(&ca_key).map_err(tls_err)?;

    let leaf_key = KeyPair::generate().map_err(tls_err)?;
    let mut leaf = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
        node.to_string(),
        fqdn.clone(),
    ])
    .map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationalUnitName, "PVE Cluster Node");
    dn.push(DnType::OrganizationName, "Proxmox Virtual Environment");
    dn.push(DnType::CommonName, fqdn);
    leaf.distinguished_name = dn;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    // PVE node certificates live at most 2 years.
    leaf.not_after = to_offset(now + jiff::SignedDuration::from_hours(24 * 364 * 2));
    let issuer = Issuer::new(ca, ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(tls_err)?;

    let fingerprint = fingerprint_of(leaf_cert.der());
    Ok(SimCert {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        fingerprint,
    })
}

/// `AA:BB:…` uppercase SHA-256 of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_uppercase_colon_separated_sha256() {
        let c = generate("pve1", "sim.local", "1b2c").expect("cert");
        assert_eq!(c.fingerprint.len(), 32 * 3 - 1);
        assert!(
            c.fingerprint
                .chars()
                .all(|ch| ch == ':' || ch.is_ascii_digit() || ch.is_ascii_uppercase())
        );
        assert_eq!(c.fingerprint, fingerprint_of(&c.chain[0]));
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
