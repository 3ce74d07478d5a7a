//! The proxy's one `Config`, parsed from `AIRLOCK_EGRESS_*` variables (CLI flags are mapped onto
//! the same variables by `cli`). `Config::from_lookup` parses every variable before failing and
//! reports each bad one, so an operator fixes them all in one go; the binary exits 64.
//!
//! Every variable is declared once here, with its default beside it. Durations use the one
//! grammar both binaries share (`airlock_wire::parse_duration`: `250ms`, `10s`, `5m`, `1h`, `2d`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_egress_policy::{Policy, PolicyError, PolicySpec};
use airlock_wire::parse_duration;

pub use crate::inspect::InspectionFiles;
use ipnet::IpNet;

/// Proxy listen address.
pub const ENV_LISTEN: &str = "AIRLOCK_EGRESS_LISTEN";
/// Default for [`ENV_LISTEN`].
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3128";
/// Admin API listen address (no admin API when unset).
pub const ENV_ADMIN_LISTEN: &str = "AIRLOCK_EGRESS_ADMIN_LISTEN";
/// Directory holding `ca.pem`, `cert.pem`, `key.pem` for the mTLS admin API.
pub const ENV_ADMIN_TLS_DIR: &str = "AIRLOCK_EGRESS_ADMIN_TLS_DIR";
/// DNS servers, comma-separated `ADDR[:PORT]` (default: the nameservers of `/etc/resolv.conf`).
pub const ENV_DNS: &str = "AIRLOCK_EGRESS_DNS";
/// Operator exceptions: exact CIDRs, comma-separated (default: none).
pub const ENV_ALLOW_CIDRS: &str = "AIRLOCK_EGRESS_ALLOW_CIDRS";
/// Infrastructure the operator adds: CIDRs no policy or exception may open, comma-separated
/// (default: none; the controller's list and the proxy's own interfaces are added anyway).
pub const ENV_DENY_CIDRS: &str = "AIRLOCK_EGRESS_DENY_CIDRS";
/// The default policy file (JSON); without it the built-in default policy applies.
pub const ENV_POLICY: &str = "AIRLOCK_EGRESS_POLICY";
/// `standalone` or `controlled`.
pub const ENV_MODE: &str = "AIRLOCK_EGRESS_MODE";
/// Default for [`ENV_MODE`].
pub const DEFAULT_MODE: &str = "standalone";
/// Largest request head (request line plus headers) accepted, in bytes.
pub const ENV_MAX_HEADER_BYTES: &str = "AIRLOCK_EGRESS_MAX_HEADER_BYTES";
/// Default for [`ENV_MAX_HEADER_BYTES`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Upstream connect timeout, e.g. `10s`.
pub const ENV_CONNECT_TIMEOUT: &str = "AIRLOCK_EGRESS_CONNECT_TIMEOUT";
/// Default for [`ENV_CONNECT_TIMEOUT`].
pub const DEFAULT_CONNECT_TIMEOUT: &str = "10s";
/// Idle timeout for client connections, tunnels and upstream responses, e.g. `300s`.
pub const ENV_IDLE_TIMEOUT: &str = "AIRLOCK_EGRESS_IDLE_TIMEOUT";
/// Default for [`ENV_IDLE_TIMEOUT`].
pub const DEFAULT_IDLE_TIMEOUT: &str = "300s";
/// Global cap on concurrent client connections; more wait in the listen backlog.
pub const ENV_MAX_CONNECTIONS: &str = "AIRLOCK_EGRESS_MAX_CONNECTIONS";
/// Default for [`ENV_MAX_CONNECTIONS`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// How long a graceful shutdown drains open connections before giving up, e.g. `10s`.
pub const ENV_SHUTDOWN_GRACE: &str = "AIRLOCK_EGRESS_SHUTDOWN_GRACE";
/// Default for [`ENV_SHUTDOWN_GRACE`].
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// Ledger spool capacity (events kept until the controller acks them).
pub const ENV_SPOOL_CAPACITY: &str = "AIRLOCK_EGRESS_SPOOL_CAPACITY";
/// Default for [`ENV_SPOOL_CAPACITY`].
pub const DEFAULT_SPOOL_CAPACITY: usize = 65_536;
/// Most unacknowledged ledger events one sandbox (or unattributed source) may hold.
pub const ENV_SPOOL_PER_SANDBOX: &str = "AIRLOCK_EGRESS_SPOOL_PER_SANDBOX";
/// Default for [`ENV_SPOOL_PER_SANDBOX`].
pub const DEFAULT_SPOOL_PER_SANDBOX: usize = crate::ledger::DEFAULT_PER_KEY;
/// Most open client connections per source address; more are answered `429 connection_limit`.
pub const ENV_MAX_CONNECTIONS_PER_SOURCE: &str = "AIRLOCK_EGRESS_MAX_CONNECTIONS_PER_SOURCE";
/// Default for [`ENV_MAX_CONNECTIONS_PER_SOURCE`].
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 256;
/// Most connections per source address still sending a request head; more are answered
/// `429 head_limit`.
pub const ENV_MAX_PENDING_HEADS_PER_SOURCE: &str = "AIRLOCK_EGRESS_MAX_PENDING_HEADS_PER_SOURCE";
/// Default for [`ENV_MAX_PENDING_HEADS_PER_SOURCE`].
pub const DEFAULT_MAX_PENDING_HEADS_PER_SOURCE: usize = 32;
/// Inspection CA certificate (PEM) for `terminate` endpoints.
pub const ENV_MITM_CA_CERT: &str = "AIRLOCK_EGRESS_MITM_CA_CERT";
/// Inspection CA key (PKCS#8 PEM).
pub const ENV_MITM_CA_KEY: &str = "AIRLOCK_EGRESS_MITM_CA_KEY";
/// Credentials the policy's endpoints bind: comma-separated `NAME=FILE`.
pub const ENV_CREDENTIALS: &str = "AIRLOCK_EGRESS_CREDENTIALS";
/// Extra roots (PEM) for verifying inspected upstreams.
pub const ENV_UPSTREAM_CA: &str = "AIRLOCK_EGRESS_UPSTREAM_CA";
/// Docker's embedded resolver: it knows the node's container names, so it is never used.
pub const DOCKER_EMBEDDED_DNS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11));

/// How clients are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Every client gets the `--policy` policy; no credential needed.
    Standalone,
    /// Clients must be registered through the admin API; unknown sources are denied.
    Controlled,
}

/// Where DNS queries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsServers {
    /// The nameservers listed in `/etc/resolv.conf`.
    System,
    /// Explicit servers.
    Explicit(Vec<SocketAddr>),
}

/// The proxy's typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy listen address.
    pub listen: SocketAddr,
    /// Admin API listen address.
    pub admin_listen: Option<SocketAddr>,
    /// mTLS material for the admin API.
    pub admin_tls_dir: Option<PathBuf>,
    /// DNS servers.
    pub dns: DnsServers,
    /// Operator exceptions (exact CIDRs).
    pub allow_cidrs: Vec<IpNet>,
    /// Infrastructure CIDRs the operator adds.
    pub deny_cidrs: Vec<IpNet>,
    /// Default policy file.
    pub policy: Option<PathBuf>,
    /// Identity mode.
    pub mode: ProxyMode,
    /// Largest accepted request head.
    pub max_header_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Global client connection cap.
    pub max_connections: usize,
    /// Drain deadline on shutdown.
    pub shutdown_grace: Duration,
    /// Ledger spool capacity.
    pub spool_capacity: usize,
    /// Ledger events one sandbox may hold.
    pub spool_per_sandbox: usize,
    /// Open client connections per source address.
    pub max_connections_per_source: usize,
    /// Connections per source address still sending a request head.
    pub max_pending_heads_per_source: usize,
    /// The standalone proxy's inspection files.
    pub inspection: InspectionFiles,
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable name.
    pub var: &'static str,
    /// The value found.
    pub value: String,
    /// What was expected instead.
    pub expected: &'static str,
}

/// Every bad variable found while parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in declaration order.
    pub problems: Vec<ConfigProblem>,
}

/// The policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The file could not be read.
    #[error("cannot read policy file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy object.
    #[error("policy file {path} is not a valid policy object")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The policy was refused (e.g. a wildcard broader than a registrable domain).
    #[error("policy file {path} was refused")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PolicyError,
    },
}

/// Reads variables and records every problem instead of stopping at the first.
struct Reader<F> {
    lookup: F,
    problems: Vec<ConfigProblem>,
}

// === impl Config ===

impl Config {
    /// Parses the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Parses the configuration from `lookup` (variable name → value), reporting every bad
    /// variable at once, in the order they are declared here.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
        };
        let mut config = Self::defaults();
        r.listeners(&mut config);
        r.destinations(&mut config);
        r.requests(&mut config);
        r.shares(&mut config);
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: r.problems,
            })
        }
    }

    /// The configuration with every default applied.
    pub fn defaults() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 3128)),
            admin_listen: None,
            admin_tls_dir: None,
            dns: DnsServers::System,
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            policy: None,
            mode: ProxyMode::Standalone,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(10),
            spool_capacity: DEFAULT_SPOOL_CAPACITY,
            spool_per_sandbox: DEFAULT_SPOOL_PER_SANDBOX,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_pending_heads_per_source: DEFAULT_MAX_PENDING_HEADS_PER_SOURCE,
            inspection: InspectionFiles::default(),
        }
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Where the proxy and its admin API listen.
    fn listeners(&mut self, c: &mut Config) {
        c.listen = self.parse(
            ENV_LISTEN,
            "a socket address like 0.0.0.0:3128",
            c.listen,
            |v| v.parse().ok(),
        );
        c.admin_listen = self.parse(
            ENV_ADMIN_LISTEN,
            "a socket address like 0.0.0.0:3129",
            None,
            |v| v.parse().ok().map(Some),
        );
        c.admin_tls_dir = self.parse(ENV_ADMIN_TLS_DIR, "a directory path", None, |v| {
            (!v.is_empty()).then(|| Some(PathBuf::from(v)))
        });
    }

    /// How destinations are found and judged: DNS, the operator's CIDRs, the policy, the mode.
    fn destinations(&mut self, c: &mut Config) {
        c.dns = self.parse(
            ENV_DNS,
            "comma-separated ADDR[:PORT] entries, never Docker's embedded 127.0.0.11",
            DnsServers::System,
            |v| parse_list(v, parse_dns_server).map(DnsServers::Explicit),
        );
        c.allow_cidrs = self.parse(
            ENV_ALLOW_CIDRS,
            "comma-separated CIDRs like 10.0.0.5/32",
            vec![],
            |v| parse_list(v, parse_cidr),
        );
        c.deny_cidrs = self.parse(
            ENV_DENY_CIDRS,
            "comma-separated CIDRs like 10.213.0.0/16",
            vec![],
            |v| parse_list(v, parse_cidr),
        );
        c.policy = self.parse(ENV_POLICY, "a file path", None, |v| {
            (!v.is_empty()).then(|| Some(PathBuf::from(v)))
        });
        c.mode = self.parse(ENV_MODE, "standalone or controlled", c.mode, parse_mode);
        let file = |v: &str| (!v.is_empty()).then(|| Some(PathBuf::from(v)));
        let i = &mut c.inspection;
        i.ca_cert = self.parse(ENV_MITM_CA_CERT, "a file path", None, file);
        i.ca_key = self.parse(ENV_MITM_CA_KEY, "a file path", None, file);
        i.upstream_ca = self.parse(ENV_UPSTREAM_CA, "a file path", None, file);
        i.credentials = self.parse(
            ENV_CREDENTIALS,
            "comma-separated NAME=FILE entries",
            vec![],
            |v| parse_list(v, parse_credential),
        );
    }

    /// Request heads, timeouts and the global connection cap.
    fn requests(&mut self, c: &mut Config) {
        c.max_header_bytes = self.parse(
            ENV_MAX_HEADER_BYTES,
            "an integer between 8192 and 1048576",
            c.max_header_bytes,
            |v| v.parse().ok().filter(|n| (8192..=1 << 20).contains(n)),
        );
        let duration = |v: &str| parse_duration(v).ok();
        let expected = "a duration like 10s or 500ms";
        c.connect_timeout = self.parse(ENV_CONNECT_TIMEOUT, expected, c.connect_timeout, duration);
        let expected = "a duration like 300s or 5m";
        c.idle_timeout = self.parse(ENV_IDLE_TIMEOUT, expected, c.idle_timeout, duration);
        c.max_connections = self.parse(
            ENV_MAX_CONNECTIONS,
            "a positive integer",
            c.max_connections,
            positive,
        );
        let expected = "a duration like 10s";
        c.shutdown_grace = self.parse(ENV_SHUTDOWN_GRACE, expected, c.shutdown_grace, duration);
    }

    /// How the ledger spool and the per-source caps are shared out.
    fn shares(&mut self, c: &mut Config) {
        let expected = "a positive integer";
        c.spool_capacity = self.parse(ENV_SPOOL_CAPACITY, expected, c.spool_capacity, positive);
        c.spool_per_sandbox = self.parse(
            ENV_SPOOL_PER_SANDBOX,
            expected,
            c.spool_per_sandbox,
            positive,
        );
        c.max_connections_per_source = self.parse(
            ENV_MAX_CONNECTIONS_PER_SOURCE,
            expected,
            c.max_connections_per_source,
            positive,
        );
        c.max_pending_heads_per_source = self.parse(
            ENV_MAX_PENDING_HEADS_PER_SOURCE,
            expected,
            c.max_pending_heads_per_source,
            positive,
        );
    }

    /// Parses `var` with `parse`, or returns `default` when unset. A bad value is recorded and
    /// the default is returned so parsing can go on.
    fn parse<T>(
        &mut self,
        var: &'static str,
        expected: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> T {
        let Some(raw) = (self.lookup)(var) else {
            return default;
        };
        let value = raw.trim();
        if value.is_empty() {
            return default;
        }
        match parse(value) {
            Some(parsed) => parsed,
            None => {
                self.problems.push(ConfigProblem {
                    var,
                    value: raw,
                    expected,
                });
                default
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  {}={:?}: expected {}", p.var, p.value, p.expected)?;
        }
        Ok(())
    }
}

/// Loads and compiles the policy file, or the built-in default policy when `path` is `None`.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, PolicyLoadError> {
    load_policy_spec(path).map(|(_, policy)| policy)
}

/// Like [`load_policy`], with the spec as read (its `endpoints` are compiled separately, by
/// [`crate::inspect::Inspection::load`]).
pub fn load_policy_spec(path: Option<&Path>) -> Result<(PolicySpec, Policy), PolicyLoadError> {
    let Some(path) = path else {
        return Ok((PolicySpec::default(), Policy::default()));
    };
    let text = std::fs::read_to_string(path).map_err(|source| PolicyLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let spec: PolicySpec = serde_json::from_str(&text).map_err(|source| PolicyLoadError::Json {
        path: path.to_owned(),
        source,
    })?;
    let policy = Policy::compile(&spec).map_err(|source| PolicyLoadError::Compile {
        path: path.to_owned(),
        source,
    })?;
    Ok((spec, policy))
}

/// `NAME=FILE`: a secret name without control characters, and a non-empty path.
fn parse_credential(value: &str) -> Option<(String, PathBuf)> {
    let (name, path) = value.split_once('=')?;
    let ok = !name.is_empty() && !path.is_empty() && !name.bytes().any(|b| b.is_ascii_control());
    ok.then(|| (name.to_owned(), PathBuf::from(path)))
}

/// Parses a comma-separated list; `None` if any entry is bad.
fn parse_list<T>(value: &str, item: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(item)
        .collect()
}

/// `ADDR` (port 53) or `ADDR:PORT` / `[V6]:PORT`; never Docker's embedded resolver.
pub(crate) fn parse_dns_server(value: &str) -> Option<SocketAddr> {
    let addr = value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })?;
    (addr.ip().to_canonical() != DOCKER_EMBEDDED_DNS).then_some(addr)
}

fn positive(value: &str) -> Option<usize> {
    value.parse().ok().filter(|n| *n > 0)
}

/// A CIDR, or a bare address meaning its host route.
pub(crate) fn parse_cidr(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .ok()
        .or_else(|| value.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_mode(value: &str) -> Option<ProxyMode> {
    match value {
        "standalone" => Some(ProxyMode::Standalone),
        "controlled" => Some(ProxyMode::Controlled),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
