//! Pure egress policy core: parses request targets, classifies addresses and decides.
//!
//! It performs no I/O and never panics on any input. Its inputs are values (a request target,
//! a compiled [`Policy`], operator exceptions, the infrastructure set and resolved addresses)
//! and its output is a [`Decision`]. The proxy (`airlock-egress`) resolves names, calls
//! [`evaluate`] and dials only an address from [`Decision::Allow`].
//!
//! Layout:
//! - [`ip`]: special-purpose address registry and classification, embedded IPv4 unwrapping.
//! - [`host`]: strict parsing of CONNECT and absolute-form targets and Host headers.
//! - [`spec`]: the JSON policy object; [`rules`]: its compiled form and operator exceptions.
//! - [`infra`]: the [`Infrastructure`] set, the deployment's own addresses, denied first.
//! - [`canon`]: canonical request paths for inspected traffic; [`endpoint`]: inspected
//!   endpoints (TLS mode, credential binding, L7 rules), compiled against a [`Policy`].
//! - [`decision`]: [`precheck`] (no DNS needed) and [`evaluate`] (every resolved address).

pub mod canon;
pub mod decision;
pub mod endpoint;
pub mod host;
pub mod infra;
pub mod ip;
pub mod rules;
pub mod spec;

pub use canon::{canonical_path, CanonicalTarget, PathError};
pub use decision::{evaluate, precheck, Allowed, Decision, Denied, DenyReason};
pub use endpoint::{
    Credential, CredentialFormat, CredentialSpec, Endpoint, EndpointError, EndpointSpec, Endpoints,
    RuleSpec, TlsMode,
};
pub use host::{
    check_host_header, parse_absolute, parse_connect, parse_host, AbsoluteForm, DnsName, Host,
    ParseError, Target,
};
pub use infra::Infrastructure;
pub use ip::{canonical, classify, embedded_v4, net_is_global, net_never_admissible, IpClass};
pub use rules::{OperatorExceptions, Policy, PolicyError, DEFAULT_PORTS};
pub use spec::{Mode, PolicySpec};
