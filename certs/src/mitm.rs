//! Inspection CAs: one P-256 CA per sandbox, and the leaves the egress proxy presents when it
//! terminates TLS for a bound endpoint.
//!
//! [`InspectionCa::generate`] is run by the controller at create. The CA is `pathLen 0`, valid
//! from an hour ago until the sandbox deadline plus a day, and, when hosts are given, carries a
//! name constraint permitting only those DNS names (clients that honour constraints then refuse
//! a leaf for any other host even if the key leaks). [`LeafIssuer`] is the proxy's side: it
//! loads the CA and signs an exact-host leaf (one SAN, `serverAuth`, never outliving the CA) in
//! well under a millisecond; the proxy caches leaves per (sandbox, host).
//!
//! Key material is returned as PEM strings for the controller to seal; this module never logs.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::CertsError;

/// A freshly made inspection CA.
pub struct InspectionCa {
    /// The CA certificate (PEM): what the sandbox trusts.
    pub cert_pem: String,
    /// The CA private key (PKCS#8 PEM): sealed by the controller, pushed only to the proxy.
    pub key_pem: String,
}

/// Signs exact-host leaves under one inspection CA.
pub struct LeafIssuer {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    not_after: OffsetDateTime,
}

/// A leaf and its key, ready for a TLS server: the chain is `[leaf, ca]`.
pub struct Leaf {
    /// `[leaf, ca]`, DER.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's PKCS#8 key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for InspectionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectionCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for LeafIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafIssuer")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl InspectionCa {
    /// Makes a CA named after `label` (the sandbox id), constrained to `hosts` when any are
    /// given, valid until `deadline` plus one day.
    pub fn generate(
        label: &str,
        hosts: &[String],
        deadline: OffsetDateTime,
    ) -> Result<InspectionCa, CertsError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Airlock");
        dn.push(DnType::CommonName, format!("Airlock inspection CA {label}"));
        params.distinguished_name = dn;
        params.not_before = now - Duration::hours(1);
        params.not_after = deadline + Duration::days(1);
        params.serial_number = Some(SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if !hosts.is_empty() {
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: hosts
                    .iter()
                    .map(|h| GeneralSubtree::DnsName(h.clone()))
                    .collect(),
                excluded_subtrees: Vec::new(),
            });
        }
        let cert = params.self_signed(&key)?;
        Ok(InspectionCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl LeafIssuer {
    /// Loads a CA from PEM. Refuses a key that does not parse or does not match.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<LeafIssuer, CertsError> {
        let corrupt = |expected: &'static str, detail: String| CertsError::Corrupt {
            path: "<inspection CA>".into(),
            expected,
            detail,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| corrupt("private key", e.to_string()))?;
        let info = crate::inspect_cert(cert_pem, std::path::Path::new("<inspection CA>"))?;
        if !info.is_ca {
            return Err(corrupt("CA certificate", "not a CA".to_owned()));
        }
        if info.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(corrupt(
                "CA certificate",
                "does not match its key".to_owned(),
            ));
        }
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| corrupt("CA certificate", e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| corrupt("CA certificate", e.to_string()))?;
        Ok(LeafIssuer {
            issuer,
            ca_der,
            not_after: info.not_after,
        })
    }

    /// An exact-host leaf for `host` (a normalised DNS name).
    pub fn issue(&self, host: &str) -> Result<Leaf, CertsError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.not_before = now - Duration::hours(1);
        params.not_after = (now + Duration::days(7)).min(self.not_after);
        params.serial_number = Some(SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![SanType::DnsName(host.try_into()?)];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain: vec![cert.der().clone(), self.ca_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::*;

    fn deadline() -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::hours(2)
    }

    /// Runs an in-memory handshake of a client trusting `ca_pem` against a server with `leaf`.
    fn handshake(ca_pem: &str, leaf: Leaf, server_name: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let ca: CertificateDer<'static> =
            rustls_pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .unwrap();
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_an_exact_host_leaf() {
        let hosts = vec!["api.anthropic.com".to_owned()];
        let ca = InspectionCa::generate("sb-1", &hosts, deadline()).unwrap();
        let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let leaf = issuer.issue("api.anthropic.com").unwrap();
        handshake(&ca.cert_pem, leaf, "api.anthropic.com").unwrap();
        // The leaf names only its host.
        let leaf = issuer.issue("api.anthropic.com").unwrap();
        assert!(handshake(&ca.cert_pem, leaf, "evil.example").is_err());
    }

    #[test]
    fn the_name_constraint_refuses_a_leaf_for_an_unbound_host() {
        let hosts = vec!["api.anthropic.com".to_owned()];
        let ca = InspectionCa::generate("sb-2", &hosts, deadline()).unwrap();
        let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let leaf = issuer.issue("bank.example").unwrap();
        assert!(handshake(&ca.cert_pem, leaf, "bank.example").is_err());
    }

    #[test]
    fn another_sandboxs_ca_is_not_trusted() {
        let a = InspectionCa::generate("a", &[], deadline()).unwrap();
        let b = InspectionCa::generate("b", &[], deadline()).unwrap();
        let leaf = LeafIssuer::from_pem(&b.cert_pem, &b.key_pem)
            .unwrap()
            .issue("api.openai.com")
            .unwrap();
        assert!(handshake(&a.cert_pem, leaf, "api.openai.com").is_err());
    }

    #[test]
    fn a_mismatched_key_is_refused_and_the_key_is_redacted() {
        let a = InspectionCa::generate("a", &[], deadline()).unwrap();
        let b = InspectionCa::generate("b", &[], deadline()).unwrap();
        assert!(LeafIssuer::from_pem(&a.cert_pem, &b.key_pem).is_err());
        assert!(LeafIssuer::from_pem(&a.cert_pem, "not a key").is_err());
        assert!(!format!("{a:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn issuing_a_leaf_takes_well_under_a_millisecond_on_average() {
        let ca = InspectionCa::generate("perf", &[], deadline()).unwrap();
        let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let n = 200u32;
        let started = Instant::now();
        for i in 0..n {
            issuer.issue(&format!("h{i}.example.com")).unwrap();
        }
        // Reported, not asserted: timing belongs in benchmarks.
        eprintln!("leaf issuance: {:?} per leaf", started.elapsed() / n);
    }
}
