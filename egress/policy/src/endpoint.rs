//! Inspected endpoints: where the proxy terminates TLS (or serves a gateway), which L7 rules
//! apply there, and which credential it adds on the way out.
//!
//! The wire form is [`EndpointSpec`]:
//! `{"host":"api.anthropic.com","port":443,"tls":"terminate","gateway":"anthropic",
//!   "credential":{"secret":"anthropic","header":"x-api-key","format":"{secret}"},
//!   "rules":[{"methods":["POST"],"paths":["/v1/messages"]}]}`.
//! [`Endpoints::compile`] checks every load rule and returns [`EndpointError`]s with stable codes:
//! - a credential only on `terminate`, never on `passthrough` or plain `http`, never on a
//!   wildcard host, with no override;
//! - the host must pass the policy's domain rules;
//! - `terminate` needs a CA (the caller says whether one is configured);
//! - the header is an HTTP token and not one the proxy owns (`Host`, `Content-Length`, …);
//! - the format is one of [`CredentialFormat`].
//!
//! Credential values never pass through this module: [`CredentialFormat::render`] takes the
//! secret bytes at injection time and refuses CR, LF and NUL.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::host::{parse_host, Host};
use crate::rules::Policy;

mod rules;
#[cfg(test)]
mod tests;

pub use rules::{RuleError, RuleSet, RuleSpec};

/// At most this many endpoints per policy.
pub const MAX_ENDPOINTS: usize = 32;

/// How the proxy treats TLS to an endpoint.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// The proxy answers the CONNECT with its own leaf, inspects, and re-encrypts upstream.
    Terminate,
    /// Bytes are relayed untouched; no rule or credential can apply.
    Passthrough,
    /// Plain-text HTTP through the forward proxy.
    Http,
}

/// One endpoint as written in the policy JSON.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// An exact DNS name (or `*.suffix` for passthrough only).
    pub host: String,
    /// Destination port; 443 when absent.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `terminate`, `passthrough` or `http`.
    pub tls: TlsMode,
    /// A name for the origin-form gateway (`/gw/<name>/…`), for clients that cannot trust a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// ALPN protocols offered to the sandbox (`h2`, `http/1.1`); both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<Vec<String>>,
    /// The credential the proxy adds to every request to this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialSpec>,
    /// L7 rules; absent means every method and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleSpec>>,
}

fn default_port() -> u16 {
    443
}

/// A credential binding as written: which secret, in which header, in which format.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// The owner's secret name; resolved by the controller, never by the sandbox.
    pub secret: String,
    /// The header to set, replacing whatever the client sent.
    pub header: String,
    /// One of `{secret}`, `Bearer {secret}`, `token {secret}`, `basic-x-access-token`.
    pub format: String,
}

/// How a secret becomes a header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialFormat {
    /// The secret as is (`x-api-key: sk-…`).
    Raw,
    /// `Bearer <secret>`.
    Bearer,
    /// `token <secret>`.
    Token,
    /// `Basic base64("x-access-token:<secret>")`, as GitHub's smart HTTP takes a token.
    BasicXAccessToken,
}

/// Why an endpoint list was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// More than [`MAX_ENDPOINTS`].
    #[error("at most {MAX_ENDPOINTS} endpoints")]
    TooMany,
    /// The host is not a DNS name or a `*.name` wildcard.
    #[error("endpoint host {host:?} is not a DNS name")]
    BadHost {
        /// The host as written.
        host: String,
    },
    /// Port 0.
    #[error("endpoint {host:?}: port 0 is not a destination")]
    PortZero {
        /// The host.
        host: String,
    },
    /// The same (host, port) twice.
    #[error("endpoint {host}:{port} is listed twice")]
    Duplicate {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// The policy's domain rules do not admit the host.
    #[error("endpoint host {host:?} is not admitted by allow_domains")]
    HostNotAllowed {
        /// The host.
        host: String,
    },
    /// A credential on `passthrough`: the proxy never sees the requests.
    #[error("endpoint {host:?}: a credential needs tls \"terminate\", not passthrough")]
    CredentialOnPassthrough {
        /// The host.
        host: String,
    },
    /// A credential on plain HTTP would travel in clear text.
    #[error("endpoint {host:?}: a credential is never sent over plain http")]
    CredentialOnPlainHttp {
        /// The host.
        host: String,
    },
    /// A credential on a wildcard host would go to hosts nobody named.
    #[error("endpoint {host:?}: a credential needs an exact host, not a wildcard")]
    CredentialOnWildcard {
        /// The host.
        host: String,
    },
    /// Terminate or gateway mode without a CA to sign leaves.
    #[error("endpoint {host:?}: tls \"terminate\" needs a CA and none is configured")]
    TerminateWithoutCa {
        /// The host.
        host: String,
    },
    /// A header name that is not an HTTP token.
    #[error("credential header {header:?} is not an HTTP header name")]
    BadHeaderName {
        /// The header as written.
        header: String,
    },
    /// A header the proxy owns.
    #[error("credential header {header:?} is reserved")]
    ReservedHeader {
        /// The header as written.
        header: String,
    },
    /// An unknown credential format.
    #[error("unknown credential format {format:?}")]
    UnknownFormat {
        /// The format as written.
        format: String,
    },
    /// A secret name that is empty, too long, or holds CR, LF or NUL.
    #[error("credential secret name {secret:?} is not a valid secret name")]
    BadSecretName {
        /// The name as written.
        secret: String,
    },
    /// A gateway name that is not `[a-z0-9][a-z0-9-]{0,31}`, or one used twice.
    #[error("gateway name {gateway:?} is invalid or used twice")]
    BadGateway {
        /// The name as written.
        gateway: String,
    },
    /// A gateway on an endpoint that is not `terminate`.
    #[error("endpoint {host:?}: a gateway needs tls \"terminate\"")]
    GatewayNeedsTerminate {
        /// The host.
        host: String,
    },
    /// An ALPN protocol other than `h2` and `http/1.1`.
    #[error("unknown ALPN protocol {alpn:?}")]
    BadAlpn {
        /// The protocol as written.
        alpn: String,
    },
    /// A bad L7 rule.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

impl EndpointError {
    /// A stable snake_case code for API errors and the proxy's exit message.
    pub fn code(&self) -> &'static str {
        match self {
            EndpointError::TooMany => "too_many_endpoints",
            EndpointError::BadHost { .. } => "bad_endpoint_host",
            EndpointError::PortZero { .. } => "port_zero",
            EndpointError::Duplicate { .. } => "duplicate_endpoint",
            EndpointError::HostNotAllowed { .. } => "endpoint_host_not_allowed",
            EndpointError::CredentialOnPassthrough { .. } => "credential_on_passthrough",
            EndpointError::CredentialOnPlainHttp { .. } => "credential_on_plain_http",
            EndpointError::CredentialOnWildcard { .. } => "credential_on_wildcard",
            EndpointError::TerminateWithoutCa { .. } => "terminate_without_ca",
            EndpointError::BadHeaderName { .. } => "bad_header_name",
            EndpointError::ReservedHeader { .. } => "reserved_header",
            EndpointError::UnknownFormat { .. } => "unknown_credential_format",
            EndpointError::BadSecretName { .. } => "bad_secret_name",
            EndpointError::BadGateway { .. } => "bad_gateway_name",
            EndpointError::GatewayNeedsTerminate { .. } => "gateway_needs_terminate",
            EndpointError::BadAlpn { .. } => "bad_alpn",
            EndpointError::Rule(e) => e.code(),
        }
    }
}

/// Why a credential value cannot be put in a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the credential value holds CR, LF, NUL or a non-visible byte")]
pub struct BadCredentialValue;

/// A compiled credential binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The owner's secret name.
    pub secret: String,
    /// The lower-case header name.
    pub header: String,
    /// How the value is rendered.
    pub format: CredentialFormat,
}

/// A compiled endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The normalised host (`*.suffix` kept for wildcards).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The TLS mode.
    pub tls: TlsMode,
    /// The gateway name, if any.
    pub gateway: Option<String>,
    /// Offered ALPN protocols, most preferred first.
    pub alpn: Vec<String>,
    /// The credential, if any.
    pub credential: Option<Credential>,
    /// The L7 rules.
    pub rules: RuleSet,
}

/// A policy's compiled endpoints, looked up by (host, port) and by gateway name.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    list: Vec<Endpoint>,
    by_target: HashMap<(String, u16), usize>,
    by_gateway: HashMap<String, usize>,
}

// === impl CredentialFormat ===

impl CredentialFormat {
    /// Parses the format as written in the policy.
    pub fn parse(format: &str) -> Option<CredentialFormat> {
        match format {
            "{secret}" => Some(CredentialFormat::Raw),
            "Bearer {secret}" => Some(CredentialFormat::Bearer),
            "token {secret}" => Some(CredentialFormat::Token),
            "basic-x-access-token" => Some(CredentialFormat::BasicXAccessToken),
            _ => None,
        }
    }

    /// The format as written in the policy.
    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialFormat::Raw => "{secret}",
            CredentialFormat::Bearer => "Bearer {secret}",
            CredentialFormat::Token => "token {secret}",
            CredentialFormat::BasicXAccessToken => "basic-x-access-token",
        }
    }

    /// The header value for `secret`. Refuses CR, LF, NUL and other non-visible bytes, so a
    /// stored secret can never split a header.
    pub fn render(&self, secret: &[u8]) -> Result<Vec<u8>, BadCredentialValue> {
        if secret.is_empty() || secret.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
            return Err(BadCredentialValue);
        }
        let mut out = Vec::with_capacity(secret.len() + 48);
        match self {
            CredentialFormat::Raw => {}
            CredentialFormat::Bearer => out.extend_from_slice(b"Bearer "),
            CredentialFormat::Token => out.extend_from_slice(b"token "),
            CredentialFormat::BasicXAccessToken => {
                let mut plain = b"x-access-token:".to_vec();
                plain.extend_from_slice(secret);
                out.extend_from_slice(b"Basic ");
                base64_into(&plain, &mut out);
                plain.fill(0);
                return Ok(out);
            }
        }
        out.extend_from_slice(secret);
        Ok(out)
    }
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64_into(input: &[u8], out: &mut Vec<u8>) {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

// === impl Endpoints ===

impl Endpoints {
    /// Validates and compiles `specs` against `policy`'s domain rules. `have_ca` says whether
    /// the proxy can sign leaves (a per-sandbox CA, or `--mitm-ca-cert` standalone).
    pub fn compile(
        specs: &[EndpointSpec],
        policy: &Policy,
        have_ca: bool,
    ) -> Result<Endpoints, EndpointError> {
        if specs.len() > MAX_ENDPOINTS {
            return Err(EndpointError::TooMany);
        }
        let mut out = Endpoints::default();
        for spec in specs {
            let endpoint = compile_one(spec, policy, have_ca)?;
            let key = (endpoint.host.clone(), endpoint.port);
            if out.by_target.contains_key(&key) {
                return Err(EndpointError::Duplicate {
                    host: key.0,
                    port: key.1,
                });
            }
            if let Some(gateway) = &endpoint.gateway {
                if out.by_gateway.contains_key(gateway) {
                    return Err(EndpointError::BadGateway {
                        gateway: gateway.clone(),
                    });
                }
                out.by_gateway.insert(gateway.clone(), out.list.len());
            }
            out.by_target.insert(key, out.list.len());
            out.list.push(endpoint);
        }
        Ok(out)
    }

    /// The endpoint for a CONNECT to `host:port` (host normalised): the exact entry, else the
    /// nearest `*.suffix` passthrough entry.
    pub fn find(&self, host: &str, port: u16) -> Option<&Endpoint> {
        if let Some(&i) = self.by_target.get(&(host.to_owned(), port)) {
            return self.list.get(i);
        }
        let mut rest = host;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(&i) = self.by_target.get(&(format!("*.{parent}"), port)) {
                return self.list.get(i);
            }
            rest = parent;
        }
        None
    }

    /// The endpoint behind gateway `name`.
    pub fn gateway(&self, name: &str) -> Option<&Endpoint> {
        self.by_gateway.get(name).and_then(|&i| self.list.get(i))
    }

    /// Every endpoint, in policy order.
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.list.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The secret names the endpoints bind, each once, in policy order.
    pub fn secrets(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for c in self.list.iter().filter_map(|e| e.credential.as_ref()) {
            if !names.contains(&c.secret.as_str()) {
                names.push(&c.secret);
            }
        }
        names
    }
}

fn compile_one(
    spec: &EndpointSpec,
    policy: &Policy,
    have_ca: bool,
) -> Result<Endpoint, EndpointError> {
    let bad_host = || EndpointError::BadHost {
        host: spec.host.clone(),
    };
    let (wildcard, body) = match spec.host.strip_prefix("*.") {
        Some(body) => (true, body),
        None => (false, spec.host.as_str()),
    };
    let name = match parse_host(body) {
        Ok(Host::Name(name)) => name,
        _ => return Err(bad_host()),
    };
    let host = if wildcard {
        format!("*.{}", name.as_str())
    } else {
        name.as_str().to_owned()
    };
    if spec.port == 0 {
        return Err(EndpointError::PortZero { host });
    }
    if !policy.admits_domain(&host) {
        return Err(EndpointError::HostNotAllowed { host });
    }
    let inspected = spec.tls == TlsMode::Terminate;
    if inspected && !have_ca {
        return Err(EndpointError::TerminateWithoutCa { host });
    }
    if inspected && wildcard {
        return Err(bad_host());
    }
    let gateway = match &spec.gateway {
        None => None,
        Some(_) if !inspected => return Err(EndpointError::GatewayNeedsTerminate { host }),
        Some(g) if is_gateway_name(g) => Some(g.clone()),
        Some(g) => return Err(EndpointError::BadGateway { gateway: g.clone() }),
    };
    let alpn = compile_alpn(spec.alpn.as_deref())?;
    let credential = match &spec.credential {
        None => None,
        Some(c) => Some(compile_credential(c, spec.tls, wildcard, &host)?),
    };
    let rules = RuleSet::compile(spec.rules.as_deref())?;
    Ok(Endpoint {
        host,
        port: spec.port,
        tls: spec.tls,
        gateway,
        alpn,
        credential,
        rules,
    })
}

fn compile_alpn(alpn: Option<&[String]>) -> Result<Vec<String>, EndpointError> {
    let Some(alpn) = alpn else {
        return Ok(vec!["h2".to_owned(), "http/1.1".to_owned()]);
    };
    let mut out = Vec::new();
    for p in alpn {
        if p != "h2" && p != "http/1.1" {
            return Err(EndpointError::BadAlpn { alpn: p.clone() });
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn compile_credential(
    spec: &CredentialSpec,
    tls: TlsMode,
    wildcard: bool,
    host: &str,
) -> Result<Credential, EndpointError> {
    let host = host.to_owned();
    match tls {
        TlsMode::Passthrough => return Err(EndpointError::CredentialOnPassthrough { host }),
        TlsMode::Http => return Err(EndpointError::CredentialOnPlainHttp { host }),
        TlsMode::Terminate if wildcard => return Err(EndpointError::CredentialOnWildcard { host }),
        TlsMode::Terminate => {}
    }
    let header = spec.header.to_ascii_lowercase();
    if header.is_empty() || !header.bytes().all(is_tchar) {
        return Err(EndpointError::BadHeaderName {
            header: spec.header.clone(),
        });
    }
    if RESERVED_HEADERS.contains(&header.as_str()) || header.starts_with("proxy-") {
        return Err(EndpointError::ReservedHeader {
            header: spec.header.clone(),
        });
    }
    let format =
        CredentialFormat::parse(&spec.format).ok_or_else(|| EndpointError::UnknownFormat {
            format: spec.format.clone(),
        })?;
    let secret_ok = !spec.secret.is_empty()
        && spec.secret.len() <= 128
        && !spec.secret.bytes().any(|b| b.is_ascii_control());
    if !secret_ok {
        return Err(EndpointError::BadSecretName {
            secret: spec.secret.clone(),
        });
    }
    Ok(Credential {
        secret: spec.secret.clone(),
        header,
        format,
    })
}

/// Headers the proxy owns: framing, routing and hop-by-hop.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "trailer",
];

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_gateway_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}
