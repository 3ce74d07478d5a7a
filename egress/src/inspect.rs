//! Inspection: TLS termination for the policy's `terminate` endpoints, where L7 rules run and
//! the bound credential is added on the way out, so the sandbox never holds the key.
//!
//! A CONNECT to a terminating endpoint passes every check of a plain tunnel first (a denial still
//! precedes any tunnel), dials the checked address, and answers `200`. Then, instead of relaying
//! bytes, the proxy:
//! 1. reads the ClientHello (`accept`): not TLS is `not_tls`, an SNI other than the CONNECT
//!    host is `sni_mismatch`; it answers with an exact-host leaf signed by the sandbox's
//!    inspection CA, and a client that refuses it is `client_rejected_ca`. It never falls back to
//!    a raw relay;
//! 2. serves HTTP/1.1 and HTTP/2 (by ALPN) on the decrypted stream (`relay`). Each request's
//!    authority must be the endpoint (`421` otherwise); its path is canonicalised
//!    ([`airlock_egress_policy::canonical_path`]) and that path is what rules see and what goes
//!    upstream; a rule denial is a `403` JSON inside the tunnel; hop-by-hop headers and the bound
//!    header are dropped and the credential set;
//! 3. sends it over verified TLS (Mozilla roots plus `--upstream-ca`) to the address checked at
//!    CONNECT, on connections that belong to this tunnel alone.
//!
//! Each request gets a ledger row of its own (`row`), recorded when its response ends, linked
//! to the tunnel's row by the tunnel id ([`crate::ledger::Ledger::next_tunnel`]).
//!
//! Bytes on the client side are charged to the sandbox's budget as in a plain tunnel
//! (`io::MeteredIo`). Credential values live in [`SecretValue`] (zeroed on drop, redacted in
//! `Debug`) and never reach the ledger, logs or errors.

mod accept;
mod io;
mod relay;
mod row;
mod upgrade;
mod upstream;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use airlock_certs::mitm::LeafIssuer;
use airlock_certs::CertsError;
use airlock_egress_policy::TlsMode;
use airlock_egress_policy::{Credential, Endpoint, EndpointError, EndpointSpec, Endpoints, Policy};
use http::HeaderValue;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

pub(crate) use relay::{gateway, open};
pub(crate) use upstream::GatewayUpstream;

/// A credential value: zeroed when dropped, never printed.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps `bytes` (trailing CR and LF, as a file written by `echo` has, are removed).
    pub fn new(mut bytes: Vec<u8>) -> Self {
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        Self(Zeroizing::new(bytes))
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Why inspection could not be set up; the proxy refuses to start (or the push is refused).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectionError {
    /// An endpoint was refused.
    #[error("endpoint refused: {0}")]
    Endpoint(EndpointError),
    /// The inspection CA is unusable.
    #[error("the inspection CA is unusable: {0}")]
    Ca(CertsError),
    /// Only one of the CA certificate and key was given.
    #[error("--mitm-ca-cert and --mitm-ca-key go together")]
    HalfCa,
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An upstream CA file holds no certificate.
    #[error("{} holds no PEM certificate", path.display())]
    UpstreamCa {
        /// The file.
        path: PathBuf,
    },
    /// An endpoint binds a credential that was not given.
    #[error("credential {name:?} is bound by an endpoint but was not given")]
    MissingCredential {
        /// The secret name.
        name: String,
    },
    /// A pushed gateway hash is not 64 hex digits.
    #[error("gateway_hash must be 64 hex digits")]
    BadGatewayHash,
    /// A credential value cannot go into a header (CR, LF, NUL, space or empty).
    #[error("credential {name:?} holds a byte that cannot go into a header")]
    BadCredentialValue {
        /// The secret name.
        name: String,
    },
}

// Written out rather than `#[from]`, which would also make the inner error the `source` and
// print its message twice in the proxy's exit line.
impl From<EndpointError> for InspectionError {
    fn from(e: EndpointError) -> Self {
        InspectionError::Endpoint(e)
    }
}

impl From<CertsError> for InspectionError {
    fn from(e: CertsError) -> Self {
        InspectionError::Ca(e)
    }
}

impl InspectionError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            InspectionError::Endpoint(e) => e.code(),
            InspectionError::Ca(_) => "bad_inspection_ca",
            InspectionError::HalfCa => "half_inspection_ca",
            InspectionError::Read { .. } => "unreadable_file",
            InspectionError::UpstreamCa { .. } => "bad_upstream_ca",
            InspectionError::MissingCredential { .. } => "missing_credential",
            InspectionError::BadCredentialValue { .. } => "bad_credential_value",
            InspectionError::BadGatewayHash => "bad_gateway_hash",
        }
    }
}

/// A sandbox's (or the standalone proxy's) compiled endpoints, CA and credential values.
pub struct Inspection {
    endpoints: Endpoints,
    issuer: Option<LeafIssuer>,
    /// Server configs (leaf + ALPN) per host, made on first use.
    servers: Mutex<HashMap<String, Arc<ServerConfig>>>,
    credentials: HashMap<String, SecretValue>,
    upstream: Arc<ClientConfig>,
    /// The same, offering HTTP/1.1 only (for upgrades).
    upstream_h1: Arc<ClientConfig>,
    /// SHA-256 of the sandbox's gateway token (the token in its placeholders), when pushed.
    gateway_hash: Option<[u8; 32]>,
    /// SHA-256 over the CA certificate, the credentials and the gateway hash, to tell a
    /// re-push from a change.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspection")
            .field("endpoints", &self.endpoints.iter().count())
            .field("ca", &self.issuer.is_some())
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Inspection {
    /// Compiles `specs` against `policy`, with the CA (`(cert_pem, key_pem)`) if any, the
    /// credential values by secret name, and extra upstream roots. Every bound credential must
    /// be present and fit in a header.
    pub fn new(
        specs: &[EndpointSpec],
        policy: &Policy,
        ca: Option<(&str, &str)>,
        credentials: HashMap<String, SecretValue>,
        upstream_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Inspection, InspectionError> {
        let endpoints = Endpoints::compile(specs, policy, ca.is_some())?;
        for endpoint in endpoints.iter() {
            if let Some(cred) = &endpoint.credential {
                let value = credentials.get(&cred.secret).ok_or_else(|| {
                    InspectionError::MissingCredential {
                        name: cred.secret.clone(),
                    }
                })?;
                cred.format.render(&value.0).map_err(|_bad| {
                    InspectionError::BadCredentialValue {
                        name: cred.secret.clone(),
                    }
                })?;
            }
        }
        let issuer = ca
            .map(|(cert, key)| LeafIssuer::from_pem(cert, key))
            .transpose()?;
        let fingerprint = fingerprint(ca.map(|(cert, _)| cert), &credentials);
        let upstream = upstream_config(upstream_roots)?;
        Ok(Inspection {
            endpoints,
            issuer,
            servers: Mutex::new(HashMap::new()),
            credentials,
            upstream_h1: Arc::new(h1_only(&upstream)),
            upstream: Arc::new(upstream),
            gateway_hash: None,
            fingerprint,
        })
    }

    /// The same inspection, whose gateway admits only requests carrying the token that hashes
    /// (SHA-256) to `hash` in their credential header (controlled mode).
    #[must_use]
    pub fn with_gateway_hash(mut self, hash: Option<[u8; 32]>) -> Self {
        if let Some(hash) = &hash {
            use sha2::{Digest, Sha256};
            let mut chained = Sha256::new();
            chained.update(self.fingerprint);
            chained.update(hash);
            self.fingerprint = chained.finalize().into();
        }
        self.gateway_hash = hash;
        self
    }

    /// The standalone proxy's inspection: the policy file's endpoints with the CA, credential
    /// and upstream CA files named by the flags. `None` when the policy has no endpoints.
    pub fn load(
        specs: Option<&[EndpointSpec]>,
        policy: &Policy,
        files: &InspectionFiles,
    ) -> Result<Option<Inspection>, InspectionError> {
        let Some(specs) = specs.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let ca = match (&files.ca_cert, &files.ca_key) {
            (Some(cert), Some(key)) => Some((read_text(cert)?, Zeroizing::new(read_text(key)?))),
            (None, None) => None,
            _ => return Err(InspectionError::HalfCa),
        };
        let mut credentials = HashMap::new();
        for (name, path) in &files.credentials {
            let bytes = std::fs::read(path).map_err(|source| InspectionError::Read {
                path: path.clone(),
                source,
            })?;
            credentials.insert(name.clone(), SecretValue::new(bytes));
        }
        let roots = upstream_roots(files)?;
        let ca = ca.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        Inspection::new(specs, policy, ca, credentials, roots).map(Some)
    }

    /// The endpoint a CONNECT to `host:port` terminates at, if any.
    pub(crate) fn terminating(&self, host: &str, port: u16) -> Option<&Endpoint> {
        self.endpoints
            .find(host, port)
            .filter(|e| e.tls == TlsMode::Terminate)
    }

    /// The terminating endpoint behind gateway `name`, if any.
    pub(crate) fn gateway(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .gateway(name)
            .filter(|e| e.tls == TlsMode::Terminate)
    }

    /// Whether a gateway request to `endpoint` with `headers` carries the sandbox's placeholder
    /// in the endpoint's credential header ([`airlock_wire::placeholder_token`]), whose token
    /// hashes to the pushed gateway hash. The
    /// comparison is constant-time. Without a pushed hash nothing is admitted.
    pub(crate) fn gateway_admits(&self, endpoint: &Endpoint, headers: &http::HeaderMap) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq as _;
        let (Some(expected), Some(credential)) = (&self.gateway_hash, &endpoint.credential) else {
            return false;
        };
        let Some(value) = headers
            .get(credential.header.as_str())
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(token) = airlock_wire::placeholder_token(value) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(digest.ct_eq(expected))
    }

    /// The TLS server config for `endpoint`: an exact-host leaf and the endpoint's ALPN.
    fn server_config(&self, endpoint: &Endpoint) -> Result<Arc<ServerConfig>, CertsError> {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = servers.get(&endpoint.host) {
            return Ok(config.clone());
        }
        let issuer = self.issuer.as_ref().ok_or_else(|| {
            CertsError::InvalidOption("no inspection CA for a terminating endpoint".to_owned())
        })?;
        let leaf = issuer.issue(&endpoint.host)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CertsError::InvalidOption(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .map_err(|e| CertsError::InvalidOption(e.to_string()))?;
        config.alpn_protocols = endpoint
            .alpn
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let config = Arc::new(config);
        servers.insert(endpoint.host.clone(), config.clone());
        Ok(config)
    }

    /// The header value of `credential`; checked at construction, so `None` only if absent.
    fn credential_value(&self, credential: &Credential) -> Option<HeaderValue> {
        let secret = self.credentials.get(&credential.secret)?;
        let rendered = Zeroizing::new(credential.format.render(&secret.0).ok()?);
        let mut value = HeaderValue::from_bytes(&rendered).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Equal for equal CA certificates and credentials (names and values).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    fn upstream(&self) -> Arc<ClientConfig> {
        self.upstream.clone()
    }

    fn upstream_h1(&self) -> Arc<ClientConfig> {
        self.upstream_h1.clone()
    }
}

/// The files of a standalone proxy's inspection (`--mitm-ca-cert`, `--mitm-ca-key`,
/// `--credential NAME=FILE`, `--upstream-ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectionFiles {
    /// The CA certificate (PEM).
    pub ca_cert: Option<PathBuf>,
    /// The CA key (PKCS#8 PEM).
    pub ca_key: Option<PathBuf>,
    /// Credential files by secret name.
    pub credentials: Vec<(String, PathBuf)>,
    /// Extra roots for upstream TLS (PEM).
    pub upstream_ca: Option<PathBuf>,
}

fn fingerprint(ca_cert: Option<&str>, credentials: &HashMap<String, SecretValue>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(ca_cert.unwrap_or_default().as_bytes());
    let mut names: Vec<&String> = credentials.keys().collect();
    names.sort_unstable();
    for name in names {
        hash.update((name.len() as u64).to_be_bytes());
        hash.update(name.as_bytes());
        let value = &credentials[name].0;
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value.as_slice());
    }
    hash.finalize().into()
}

/// The extra upstream roots named by `--upstream-ca` (none when it is not given).
pub fn upstream_roots(
    files: &InspectionFiles,
) -> Result<Vec<CertificateDer<'static>>, InspectionError> {
    let Some(path) = &files.upstream_ca else {
        return Ok(Vec::new());
    };
    let pem = read_text(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(InspectionError::UpstreamCa { path: path.clone() });
    }
    Ok(certs)
}

fn read_text(path: &Path) -> Result<String, InspectionError> {
    std::fs::read_to_string(path).map_err(|source| InspectionError::Read {
        path: path.to_owned(),
        source,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `config` offering HTTP/1.1 alone.
fn h1_only(config: &ClientConfig) -> ClientConfig {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Verified upstream TLS: the Mozilla roots plus `extra`; ALPN h2 then http/1.1.
fn upstream_config(extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, InspectionError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots
            .add(cert)
            .map_err(|e| CertsError::InvalidOption(format!("upstream CA: {e}")))?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::InvalidOption(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
