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

mod credential;
mod error;
mod rules;
#[cfg(test)]
mod tests;

pub use credential::{BadCredentialValue, Credential, CredentialFormat, CredentialSpec};
pub use error::EndpointError;
pub use rules::{RuleError, RuleSet, RuleSpec};

use credential::compile_credential;

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

fn is_gateway_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}
