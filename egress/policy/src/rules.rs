//! Compiled policy: domain rule sets, allowed ports, policy CIDRs and operator exceptions.
//!
//! Domain rules are exact names and `*.suffix` wildcards. `*.github.com` matches
//! `a.github.com` and `a.b.github.com` but NOT `github.com` itself; list both to allow both. A
//! wildcard must sit under a registrable domain: `*.github.com` is fine, while `*`, `*.com`,
//! `*.co.uk` and `*.localhost` are refused at compile time using the embedded public suffix
//! list. Private-section suffixes (`*.githubusercontent.com`, `*.github.io`) are accepted.
//! Matching hashes the name and each of its parent suffixes, so a lookup costs one hash probe
//! per label, whatever the number of rules.
//!
//! Invariant: a compiled [`Policy`] only holds normalised names (lower-case punycode, no
//! trailing dot), ports in 1..=65535 and truncated CIDRs with IPv4-mapped prefixes unwrapped.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::host::{parse_host, Host};
use crate::ip::{canonical, IpClass};
use crate::spec::{Mode, PolicySpec};

/// The ports allowed when a policy names none.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// Why a policy spec was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A domain pattern that is not a DNS name or `*.` followed by one.
    #[error("domain pattern {pattern:?} is not a DNS name or a `*.name` wildcard")]
    BadDomainPattern {
        /// The pattern as written.
        pattern: String,
    },
    /// A wildcard broader than a registrable domain, such as `*`, `*.com` or `*.co.uk`.
    #[error("wildcard {pattern:?} is broader than a registrable domain")]
    WildcardTooBroad {
        /// The pattern as written.
        pattern: String,
    },
    /// An IP address in a domain list; addresses belong in `allow_cidrs`.
    #[error("domain pattern {pattern:?} is an IP address; use allow_cidrs")]
    IpPattern {
        /// The pattern as written.
        pattern: String,
    },
    /// Port 0 in `allow_ports`.
    #[error("port 0 is not a valid destination port")]
    PortZero,
}

impl PolicyError {
    /// A stable snake_case code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::BadDomainPattern { .. } => "bad_domain_pattern",
            PolicyError::WildcardTooBroad { .. } => "wildcard_too_broad",
            PolicyError::IpPattern { .. } => "ip_domain_pattern",
            PolicyError::PortZero => "port_zero",
        }
    }
}

/// Which rule in a [`DomainSet`] matched a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DomainMatch<'a> {
    /// The exact name was listed.
    Exact(&'a str),
    /// `*.<suffix>` was listed.
    Wildcard(&'a str),
}

impl DomainMatch<'_> {
    /// The rule as written in normalised form, for the ledger.
    pub(crate) fn rule(&self) -> String {
        match self {
            DomainMatch::Exact(name) => (*name).to_owned(),
            DomainMatch::Wildcard(suffix) => format!("*.{suffix}"),
        }
    }
}

/// A set of exact names and wildcard suffixes.
#[derive(Clone, Debug, Default)]
pub(crate) struct DomainSet {
    exact: HashSet<Box<str>>,
    wildcard: HashSet<Box<str>>,
}

impl DomainSet {
    fn compile(patterns: &[String]) -> Result<DomainSet, PolicyError> {
        let mut set = DomainSet::default();
        for pattern in patterns {
            match compile_pattern(pattern)? {
                (false, name) => set.exact.insert(name),
                (true, suffix) => set.wildcard.insert(suffix),
            };
        }
        Ok(set)
    }

    /// Whether every name under `*.suffix` matches: the wildcard itself or a broader one.
    fn covers_wildcard(&self, suffix: &str) -> bool {
        self.wildcard.contains(suffix)
            || matches!(self.find(suffix), Some(DomainMatch::Wildcard(_)))
    }

    /// The most specific rule matching `name`: the exact name first, then the longest suffix.
    pub(crate) fn find<'a>(&self, name: &'a str) -> Option<DomainMatch<'a>> {
        if self.exact.contains(name) {
            return Some(DomainMatch::Exact(name));
        }
        if self.wildcard.is_empty() {
            return None;
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if self.wildcard.contains(parent) {
                return Some(DomainMatch::Wildcard(parent));
            }
            rest = parent;
        }
        None
    }
}

/// Normalises one pattern into `(is_wildcard, name)`.
fn compile_pattern(pattern: &str) -> Result<(bool, Box<str>), PolicyError> {
    let bad = || PolicyError::BadDomainPattern {
        pattern: pattern.to_owned(),
    };
    if pattern == "*" || pattern == "*." {
        return Err(PolicyError::WildcardTooBroad {
            pattern: pattern.to_owned(),
        });
    }
    let (wildcard, body) = match pattern.strip_prefix("*.") {
        Some(body) => (true, body),
        None => (false, pattern),
    };
    if body.contains('*') {
        return Err(bad());
    }
    let name = match parse_host(body) {
        Ok(Host::Name(name)) => name,
        Ok(Host::Ip(_)) => {
            return Err(PolicyError::IpPattern {
                pattern: pattern.to_owned(),
            })
        }
        Err(_) => return Err(bad()),
    };
    if wildcard && is_public_suffix(name.as_str()) {
        return Err(PolicyError::WildcardTooBroad {
            pattern: pattern.to_owned(),
        });
    }
    Ok((wildcard, name.as_str().into()))
}

/// Whether `name` is itself an ICANN public suffix (`com`, `co.uk`) or an unknown top-level
/// name (the list's implicit `*` rule). Private-section suffixes such as
/// `githubusercontent.com` or `github.io` are not refused: `*.githubusercontent.com` is a common
/// and deliberate allow rule, and the policy author names that suffix explicitly.
fn is_public_suffix(name: &str) -> bool {
    match psl::suffix(name.as_bytes()) {
        Some(suffix) => {
            suffix.as_bytes() == name.as_bytes() && suffix.typ() != Some(psl::Type::Private)
        }
        None => true,
    }
}

/// Truncates a CIDR and rewrites an IPv4-mapped IPv6 prefix as the IPv4 prefix it denotes, so
/// that it matches canonical addresses.
pub(crate) fn normalize_net(net: IpNet) -> IpNet {
    let net = net.trunc();
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net);
            }
        }
    }
    net
}

fn covering(nets: &[IpNet], ip: IpAddr) -> Option<&IpNet> {
    let ip = canonical(ip);
    nets.iter().find(|net| net.contains(&ip))
}

/// A compiled sandbox policy. Build it once with [`Policy::compile`] and share it behind an `Arc`;
/// a domain lookup costs one hash probe per label of the name, whatever the number of rules.
#[derive(Clone, Debug)]
pub struct Policy {
    mode: Mode,
    /// Any name or literal whose every address is global passes the domain rules.
    allow_public: bool,
    allow: DomainSet,
    deny: DomainSet,
    ports: Box<[u16]>,
    cidrs: Box<[IpNet]>,
    max_bytes: Option<u64>,
    max_connections: Option<u32>,
}

impl Policy {
    /// Validates and compiles a spec. Refuses bad or over-broad domain patterns, IP addresses in
    /// domain lists and port 0. `allow_public` takes its default from `allow_domains`
    /// ([`PolicySpec::effective_allow_public`]).
    pub fn compile(spec: &PolicySpec) -> Result<Policy, PolicyError> {
        let allow = DomainSet::compile(spec.allow_domains.as_deref().unwrap_or_default())?;
        let deny = DomainSet::compile(spec.deny_domains.as_deref().unwrap_or_default())?;
        let mut ports: Vec<u16> = match spec.allow_ports.as_deref() {
            None | Some([]) => DEFAULT_PORTS.to_vec(),
            Some(ports) => ports.to_vec(),
        };
        if ports.contains(&0) {
            return Err(PolicyError::PortZero);
        }
        ports.sort_unstable();
        ports.dedup();
        let cidrs = spec
            .allow_cidrs
            .iter()
            .flatten()
            .copied()
            .map(normalize_net);
        Ok(Policy {
            mode: spec.mode.unwrap_or_default(),
            allow_public: spec.effective_allow_public(),
            allow,
            deny,
            ports: ports.into(),
            cidrs: cidrs.collect(),
            max_bytes: spec.max_bytes,
            max_connections: spec.max_connections,
        })
    }

    /// Whether the domain rules admit `host`, a normalised name or `*.suffix` (every name under
    /// it): not denied, and either `allow_public` or a matching allow rule.
    pub(crate) fn admits_domain(&self, host: &str) -> bool {
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(suffix) => (true, suffix),
            None => (false, host),
        };
        if self.deny.find(name).is_some() || (wildcard && self.deny.wildcard.contains(name)) {
            return false;
        }
        if self.allow_public {
            return true;
        }
        if wildcard {
            self.allow.covers_wildcard(name)
        } else {
            self.allow.find(name).is_some()
        }
    }

    /// The byte budget, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// The concurrent connection budget, if any.
    pub fn max_connections(&self) -> Option<u32> {
        self.max_connections
    }

    /// Enforce or report.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether names and literals outside `allow_domains` pass when every address is global.
    pub fn allow_public(&self) -> bool {
        self.allow_public
    }

    /// Whether `port` is in `allow_ports`.
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports.binary_search(&port).is_ok()
    }

    /// The allowed ports, sorted.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub(crate) fn allow_domains(&self) -> &DomainSet {
        &self.allow
    }

    pub(crate) fn deny_domains(&self) -> &DomainSet {
        &self.deny
    }

    /// The first policy CIDR containing `ip` (after unwrapping IPv4-mapped IPv6).
    pub(crate) fn cidr_covering(&self, ip: IpAddr) -> Option<&IpNet> {
        covering(&self.cidrs, ip)
    }
}

impl Default for Policy {
    /// Every public destination on ports 80 and 443.
    fn default() -> Self {
        Policy {
            mode: Mode::Enforce,
            allow_public: true,
            allow: DomainSet::default(),
            deny: DomainSet::default(),
            ports: DEFAULT_PORTS.into(),
            cidrs: Box::default(),
            max_bytes: None,
            max_connections: None,
        }
    }
}

/// The operator's exact exception CIDRs (`--allow-cidr`). They may admit any address class,
/// loopback and metadata included, and are the only way to admit those. A metadata or
/// unspecified address is admitted only by a host route naming it (`/32` or `/128`), so a broad
/// exception such as `0.0.0.0/0` or `169.254.0.0/16` never opens a metadata service by accident.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorExceptions {
    nets: Vec<IpNet>,
}

impl OperatorExceptions {
    /// Exceptions for exactly these CIDRs (truncated; IPv4-mapped prefixes unwrapped).
    pub fn new(cidrs: Vec<IpNet>) -> Self {
        let nets = cidrs.into_iter().map(normalize_net).collect();
        OperatorExceptions { nets }
    }

    /// No exceptions.
    pub fn none() -> Self {
        OperatorExceptions::default()
    }

    /// The exception CIDRs, normalised.
    pub fn cidrs(&self) -> &[IpNet] {
        &self.nets
    }

    /// The first exception containing `ip` (after unwrapping IPv4-mapped IPv6).
    pub fn covering(&self, ip: IpAddr) -> Option<&IpNet> {
        covering(&self.nets, ip)
    }

    /// The exception that admits `ip` of class `class`: any covering CIDR, except that
    /// metadata and unspecified addresses need a host route naming exactly that address.
    pub fn admitting(&self, ip: IpAddr, class: IpClass) -> Option<&IpNet> {
        let ip = canonical(ip);
        let exact_only = matches!(class, IpClass::Metadata | IpClass::Unspecified);
        self.nets.iter().find(|net| {
            net.contains(&ip) && (!exact_only || net.prefix_len() == net.max_prefix_len())
        })
    }
}

#[cfg(test)]
mod tests;
