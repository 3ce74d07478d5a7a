//! Name resolution behind the `Resolve` trait.
//!
//! `HickoryResolve` asks the configured servers for A and AAAA records at once and caches answers
//! by TTL. It never consults `/etc/hosts` and applies no search domains: a name is looked up as
//! the fully-qualified name the client asked for. `StaticResolve` answers from a fixed table; it
//! backs `airlock-egress check --resolve/--no-dns` and tests. `NoResolver` stands in when no
//! server is configured: every lookup fails, so every name is refused.
//!
//! Docker's embedded resolver (`127.0.0.11`) is never asked: it answers the node's container
//! names (`airlock-<id>`, the proxy, compose services), which is exactly what a sandbox must not
//! learn. It is dropped from `/etc/resolv.conf` and refused in `--dns`.
//!
//! Invariant: a resolver returns *every* answer. The caller judges all of them and dials only a
//! checked `SocketAddr`; nothing resolves a name twice for one request.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use airlock_egress_policy::DnsName;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::TokioResolver;

use crate::config::DOCKER_EMBEDDED_DNS;

/// Where the proxy's resolvers came from, reported on `/healthz`.
pub use airlock_wire::DnsStatus;

/// A boxed, sendable resolution future.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, ResolveError>> + Send + 'a>>;

/// Resolves a validated DNS name to every address it has.
///
/// `Ok(vec![])` means the name exists nowhere (NXDOMAIN or no A/AAAA records); the policy turns
/// that into `dns_no_answer`.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// Looks up A and AAAA records for `name`.
    fn resolve<'a>(&'a self, name: &'a DnsName) -> ResolveFuture<'a>;
}

/// A lookup that failed for a reason other than "no such name".
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No server answered in time.
    #[error("DNS lookup timed out")]
    Timeout,
    /// The servers failed (SERVFAIL, refused, unreachable, ...). The detail may name a
    /// resolver's address: it is for the log, never for a client.
    #[error("DNS lookup failed: {0}")]
    Failed(String),
    /// The proxy has no resolver to ask.
    #[error("no DNS resolver is configured for the proxy (set AIRLOCK_EGRESS_DNS)")]
    NotConfigured,
}

/// The resolver used when none is configured: every lookup fails with
/// [`ResolveError::NotConfigured`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

/// Building the resolver failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    /// No DNS servers were configured or found in `/etc/resolv.conf`.
    #[error("no DNS servers configured (set --dns or list a nameserver in /etc/resolv.conf)")]
    NoServers,
    /// `/etc/resolv.conf` could not be read.
    #[error("cannot read /etc/resolv.conf")]
    ResolvConf(#[source] std::io::Error),
    /// hickory refused the configuration.
    #[error("cannot build the DNS resolver")]
    Build(#[source] NetError),
}

/// The hickory-backed resolver.
#[derive(Debug, Clone)]
pub struct HickoryResolve {
    inner: TokioResolver,
}

/// A fixed name → addresses table. Names without an entry resolve to no answer, or go to a
/// fallback resolver when one is set.
#[derive(Debug, Default)]
pub struct StaticResolve {
    table: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Box<dyn Resolve>>,
}

// === impl HickoryResolve ===

impl HickoryResolve {
    /// A resolver that queries `servers` over UDP (falling back to TCP on truncation).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self, ResolverSetupError> {
        if servers.is_empty() {
            return Err(ResolverSetupError::NoServers);
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.timeout = timeout;
        opts.attempts = 2;
        let inner = builder.build().map_err(ResolverSetupError::Build)?;
        Ok(Self { inner })
    }

    /// A resolver using the nameservers listed in `/etc/resolv.conf`, Docker's embedded
    /// resolver left out (`NoServers` when none remains).
    pub fn from_system(timeout: Duration) -> Result<Self, ResolverSetupError> {
        Self::new(&system_nameservers()?, timeout)
    }
}

/// The nameservers of `/etc/resolv.conf`, without Docker's embedded resolver.
pub fn system_nameservers() -> Result<Vec<SocketAddr>, ResolverSetupError> {
    let text =
        std::fs::read_to_string("/etc/resolv.conf").map_err(ResolverSetupError::ResolvConf)?;
    Ok(nameservers_from_resolv_conf(&text))
}

// === impl NoResolver ===

impl Resolve for NoResolver {
    fn resolve<'a>(&'a self, _name: &'a DnsName) -> ResolveFuture<'a> {
        Box::pin(async { Err(ResolveError::NotConfigured) })
    }
}

impl Resolve for HickoryResolve {
    fn resolve<'a>(&'a self, name: &'a DnsName) -> ResolveFuture<'a> {
        Box::pin(async move {
            // The trailing dot makes the name fully qualified: no search-domain expansion.
            let fqdn = format!("{}.", name.as_str());
            match self.inner.lookup_ip(fqdn.as_str()).await {
                Ok(lookup) => Ok(lookup.iter().collect()),
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
                Err(NetError::Timeout) => Err(ResolveError::Timeout),
                Err(e) => Err(ResolveError::Failed(e.to_string())),
            }
        })
    }
}

// === impl StaticResolve ===

impl StaticResolve {
    /// An empty table: every name has no answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or extends) the entry for `name` (lower-cased, one trailing dot ignored).
    pub fn insert(&mut self, name: &str, addrs: impl IntoIterator<Item = IpAddr>) {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.table.entry(key).or_default().extend(addrs);
    }

    /// Names not in the table go to `fallback` instead of getting no answer.
    pub fn with_fallback(mut self, fallback: Box<dyn Resolve>) -> Self {
        self.fallback = Some(fallback);
        self
    }
}

impl Resolve for StaticResolve {
    fn resolve<'a>(&'a self, name: &'a DnsName) -> ResolveFuture<'a> {
        Box::pin(async move {
            match (self.table.get(name.as_str()), &self.fallback) {
                (Some(addrs), _) => Ok(addrs.clone()),
                (None, Some(fallback)) => fallback.resolve(name).await,
                (None, None) => Ok(Vec::new()),
            }
        })
    }
}

/// The `nameserver` entries of a resolv.conf, on port 53, without Docker's embedded resolver.
pub(crate) fn nameservers_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .filter(|ip| ip.to_canonical() != DOCKER_EMBEDDED_DNS)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver ::1\n\
                    nameserver 127.0.0.11\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            nameservers_from_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn static_table_and_fallback() {
        let mut inner = StaticResolve::new();
        inner.insert("b.test", ["192.0.2.2".parse().unwrap()]);
        let mut table = StaticResolve::new().with_fallback(Box::new(inner));
        table.insert("A.test.", ["192.0.2.1".parse().unwrap()]);
        let a = airlock_egress_policy::parse_connect("a.test:443").unwrap();
        let b = airlock_egress_policy::parse_connect("b.test:443").unwrap();
        let c = airlock_egress_policy::parse_connect("c.test:443").unwrap();
        for (target, want) in [(a, vec!["192.0.2.1"]), (b, vec!["192.0.2.2"]), (c, vec![])] {
            let airlock_egress_policy::Host::Name(name) = &target.host else {
                panic!("not a name")
            };
            let got = table.resolve(name).await.unwrap();
            let want: Vec<IpAddr> = want.iter().map(|s| s.parse().unwrap()).collect();
            assert_eq!(got, want);
        }
    }

    #[tokio::test]
    async fn no_resolver_refuses_every_name() {
        let target = airlock_egress_policy::parse_connect("a.test:443").unwrap();
        let airlock_egress_policy::Host::Name(name) = &target.host else {
            panic!("not a name")
        };
        let error = NoResolver.resolve(name).await.unwrap_err();
        assert!(matches!(error, ResolveError::NotConfigured), "{error}");
        assert!(error.to_string().contains("AIRLOCK_EGRESS_DNS"));
    }

    #[test]
    fn hickory_needs_servers() {
        assert!(matches!(
            HickoryResolve::new(&[], Duration::from_secs(1)),
            Err(ResolverSetupError::NoServers)
        ));
    }
}
