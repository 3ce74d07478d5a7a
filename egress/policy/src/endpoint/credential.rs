//! Credential bindings of an inspected endpoint: the wire form, the compiled form, the header
//! rules a binding must pass, and how a secret is rendered into the header value at injection
//! time.

use serde::{Deserialize, Serialize};

use super::{EndpointError, TlsMode};

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

pub(super) fn compile_credential(
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
