//! Why an endpoint list was refused, with a stable code per rule.

use super::{RuleError, MAX_ENDPOINTS};

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
