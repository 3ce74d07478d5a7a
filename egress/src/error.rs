//! The proxy's error type. Every failure records which side caused it, and that side and its
//! typed kind alone choose the HTTP status: `Client` → 400 (by [`ClientFault`]: 431, 414 and
//! 408 for a head that is too large, a target that is too long and a head that is too slow;
//! 401 and 404 for a gateway request without its placeholder or naming no gateway),
//! `Policy` → 403, `Identity` → 407/403, `Limited` → 429 (a per-source cap or the sandbox's
//! ledger share), `Upstream` → 502 (by [`UpstreamFault`]: 504 on a timeout), `Internal` → 500.
//!
//! Messages are written for the client and never carry an address it did not send (no resolved
//! address, no resolver, no upstream socket address); details go to the log.
//!
//! Every refusal is answered with the same JSON body,
//! `{"error":"<code>","message":"..","host":..,"sandbox":..}`, so a client never sees a bare
//! dropped connection and never sees a `Debug`-formatted error.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, PROXY_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::budget::BudgetExceeded;
use crate::dial::DialError;
use crate::registry::IdentityError;

/// Why the proxy refused or failed a request, labelled with the side that caused it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EgressError {
    /// The client sent something malformed (400, or 431/414/408 by kind).
    #[error("malformed request ({}): {message}", kind.code())]
    Client {
        /// What was wrong; it decides the status and the code.
        kind: ClientFault,
        /// Human-readable detail.
        message: String,
    },
    /// The policy refused the destination (403).
    #[error("denied by policy ({code}): {message}")]
    Policy {
        /// The `DenyReason` (or budget) code.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// The client could not be identified (407 without a credential, 403 otherwise).
    #[error("identity check failed")]
    Identity(#[source] IdentityError),
    /// The client is over a cap that protects the other sandboxes (429): too many connections
    /// or pending heads from its source, or its ledger share is full.
    #[error("over a limit ({code}): {message}")]
    Limited {
        /// `connection_limit`, `head_limit` or `ledger_full`.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// The upstream could not be reached or failed mid-way (502, or 504 when it timed out).
    #[error("upstream failed ({code}): {message}")]
    Upstream {
        /// Whether it failed or timed out; it decides the status.
        kind: UpstreamFault,
        /// Stable reason code, e.g. `connect_failed`, `connect_timeout`, `dns_failed`.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// A bug or resource failure inside the proxy (500).
    #[error("internal error: {message}")]
    Internal {
        /// Detail for the log; the client only gets a generic message.
        message: String,
    },
}

/// What was wrong with a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFault {
    /// Malformed in the way the stable code names (400), e.g. `userinfo` or `origin_form`.
    Malformed(&'static str),
    /// The request head is larger than the proxy takes (431 `header_too_large`).
    HeadTooLarge,
    /// The request target is longer than hyper takes (414 `uri_too_long`).
    UriTooLong,
    /// The request head did not arrive in time (408 `header_timeout`).
    HeadTimeout,
    /// A gateway request without the sandbox's placeholder, or from an unknown source (401
    /// `gateway_unauthorized`).
    GatewayUnauthorized,
    /// A gateway request naming no gateway of the sandbox (404 `unknown_gateway`).
    UnknownGateway,
}

/// How an upstream let the request down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamFault {
    /// It refused, reset or failed the exchange (502).
    Failed,
    /// It did not answer in time (504).
    TimedOut,
}

/// Who and where a refusal concerns; echoed in the JSON body.
#[derive(Debug, Default, Clone)]
pub(crate) struct ErrorContext {
    /// The destination host as requested, when known.
    pub(crate) host: Option<String>,
    /// The sandbox id, when the client was identified.
    pub(crate) sandbox: Option<String>,
}

/// The JSON refusal body as written on the wire.
#[derive(Debug, serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    host: Option<&'a str>,
    sandbox: Option<&'a str>,
}

// === impl EgressError ===

impl EgressError {
    /// A malformed-request error (400) with its stable code.
    pub(crate) fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self::fault(ClientFault::Malformed(code), message)
    }

    /// A client error of the given kind.
    pub(crate) fn fault(kind: ClientFault, message: impl Into<String>) -> Self {
        Self::Client {
            kind,
            message: message.into(),
        }
    }

    /// A policy denial with the given reason code.
    pub(crate) fn policy(code: &'static str, message: impl Into<String>) -> Self {
        Self::Policy {
            code,
            message: message.into(),
        }
    }

    /// A refusal over a cap (429).
    pub(crate) fn limited(code: &'static str, message: impl Into<String>) -> Self {
        Self::Limited {
            code,
            message: message.into(),
        }
    }

    /// An upstream failure (502).
    pub(crate) fn upstream(code: &'static str, message: impl Into<String>) -> Self {
        Self::Upstream {
            kind: UpstreamFault::Failed,
            code,
            message: message.into(),
        }
    }

    /// An upstream that did not answer in time (504).
    pub(crate) fn upstream_timeout(code: &'static str, message: impl Into<String>) -> Self {
        Self::Upstream {
            kind: UpstreamFault::TimedOut,
            code,
            message: message.into(),
        }
    }

    /// An internal failure (500).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
        }
    }

    /// The HTTP status this error maps to: the side's, refined by its kind.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Client { kind, .. } => kind.status(),
            Self::Policy { .. } => StatusCode::FORBIDDEN,
            Self::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Identity(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
            Self::Upstream { kind, .. } => kind.status(),
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code: the JSON `error` field, the ledger reason and metrics label.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Client { kind, .. } => kind.code(),
            Self::Policy { code, .. }
            | Self::Limited { code, .. }
            | Self::Upstream { code, .. } => code,
            Self::Identity(e) => e.code(),
            Self::Internal { .. } => "internal",
        }
    }

    /// The message shown to the client. Internal details stay in the log.
    pub(crate) fn public_message(&self) -> String {
        match self {
            Self::Client { message, .. }
            | Self::Policy { message, .. }
            | Self::Limited { message, .. }
            | Self::Upstream { message, .. } => message.clone(),
            Self::Identity(e) => e.to_string(),
            Self::Internal { .. } => "internal proxy error".to_owned(),
        }
    }

    /// Whether this is a refusal decided by the proxy (as opposed to an upstream/internal failure).
    pub(crate) fn is_denial(&self) -> bool {
        matches!(
            self,
            Self::Client { .. } | Self::Policy { .. } | Self::Identity(_) | Self::Limited { .. }
        )
    }

    /// Builds the JSON refusal response.
    pub(crate) fn to_response(&self, ctx: &ErrorContext) -> Response<Bytes> {
        let message = self.public_message();
        let body = ErrorBody {
            error: self.code(),
            message: &message,
            host: ctx.host.as_deref(),
            sandbox: ctx.sandbox.as_deref(),
        };
        // Serialising a struct of strings cannot fail; fall back to a fixed body regardless.
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":"internal","message":"internal proxy error"}"#.to_vec()
        });
        let mut response = Response::new(Bytes::from(json));
        *response.status_mut() = self.status();
        let proxy_auth = response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if proxy_auth {
            headers.insert(
                PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"airlock\""),
            );
        }
        response
    }
}

impl From<IdentityError> for EgressError {
    fn from(error: IdentityError) -> Self {
        Self::Identity(error)
    }
}

/// A spent budget is a policy refusal named by the budget's code.
impl From<BudgetExceeded> for EgressError {
    fn from(error: BudgetExceeded) -> Self {
        Self::policy(error.code(), error.to_string())
    }
}

/// A dial failure as the client sees it. The address that failed is one the proxy resolved,
/// so only the log names it.
impl From<DialError> for EgressError {
    fn from(error: DialError) -> Self {
        match error {
            DialError::SelfConnect => Self::policy("proxy_loop", error.to_string()),
            DialError::Timeout(_) => Self::upstream_timeout("connect_timeout", error.to_string()),
            DialError::Failed { addr, source } => {
                tracing::debug!(dst.addr = %addr, error = %source, "Upstream connect failed");
                Self::upstream("connect_failed", "cannot connect to the destination")
            }
        }
    }
}

// === impl ClientFault ===

impl ClientFault {
    /// The stable code of this kind.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Malformed(code) => code,
            Self::HeadTooLarge => "header_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::HeadTimeout => "header_timeout",
            Self::GatewayUnauthorized => "gateway_unauthorized",
            Self::UnknownGateway => "unknown_gateway",
        }
    }

    /// The status of this kind.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::GatewayUnauthorized => StatusCode::UNAUTHORIZED,
            Self::UnknownGateway => StatusCode::NOT_FOUND,
        }
    }
}

// === impl UpstreamFault ===

impl UpstreamFault {
    /// 502 for a failure, 504 for a timeout.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Failed => StatusCode::BAD_GATEWAY,
            Self::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_side() {
        let cases = [
            (EgressError::client("userinfo", "x"), 400),
            (EgressError::policy("loopback", "x"), 403),
            (EgressError::limited("ledger_full", "x"), 429),
            (EgressError::upstream("connect_failed", "x"), 502),
            (EgressError::upstream_timeout("connect_timeout", "x"), 504),
            (EgressError::internal("x"), 500),
            (EgressError::fault(ClientFault::HeadTooLarge, "x"), 431),
            (EgressError::fault(ClientFault::UriTooLong, "x"), 414),
            (EgressError::fault(ClientFault::HeadTimeout, "x"), 408),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn body_is_the_design_json() {
        let ctx = ErrorContext {
            host: Some("example.com".into()),
            sandbox: None,
        };
        let response = EgressError::policy("private", "10.0.0.1 is private").to_response(&ctx);
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error":"private","message":"10.0.0.1 is private",
                               "host":"example.com","sandbox":null})
        );
    }

    #[test]
    fn internal_detail_is_not_shown() {
        let response = EgressError::internal("secret detail").to_response(&ErrorContext::default());
        let body = String::from_utf8(response.body().to_vec()).unwrap();
        assert!(!body.contains("secret"), "{body}");
    }
}
