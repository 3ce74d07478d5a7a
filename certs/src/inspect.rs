//! Reads an existing certificate: expiry, SANs, key identifiers and public key. Used by
//! [`crate::init`] to decide what to keep, and by `airlock doctor` to report expiry.

use std::net::IpAddr;
use std::path::Path;

use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::parse_x509_pem;

use crate::{CertsError, San};

/// What Airlock needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The end of the validity period.
    pub not_after: OffsetDateTime,
    /// The subject alternative names (DNS names and IPs; other kinds are skipped).
    pub sans: Vec<San>,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// The subject key identifier, when present.
    pub subject_key_id: Option<Vec<u8>>,
    /// The authority key identifier, when present.
    pub authority_key_id: Option<Vec<u8>>,
    /// The DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
}

/// Parses the first certificate of a PEM file. `path` only labels errors.
pub fn inspect_cert(pem: &str, path: &Path) -> Result<CertInfo, CertsError> {
    let corrupt = |detail: String| CertsError::Corrupt {
        path: path.to_path_buf(),
        expected: "certificate",
        detail,
    };
    let (_, pem) = parse_x509_pem(pem.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(corrupt(format!("PEM label is {:?}", pem.label)));
    }
    let cert = pem.parse_x509().map_err(|e| corrupt(e.to_string()))?;
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| corrupt(e.to_string()))?;
    let sans = match cert
        .subject_alternative_name()
        .map_err(|e| corrupt(e.to_string()))?
    {
        Some(ext) => ext.value.general_names.iter().filter_map(san_of).collect(),
        None => Vec::new(),
    };
    let mut info = CertInfo {
        not_after,
        sans,
        is_ca: cert.is_ca(),
        subject_key_id: None,
        authority_key_id: None,
        public_key_der: cert.public_key().raw.to_vec(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => info.subject_key_id = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                info.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    Ok(info)
}

fn san_of(name: &GeneralName<'_>) -> Option<San> {
    match name {
        GeneralName::DNSName(dns) => Some(San::Dns(dns.to_ascii_lowercase())),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| San::Ip(IpAddr::from(b))),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| San::Ip(IpAddr::from(b))),
            _ => None,
        },
        _ => None,
    }
}
