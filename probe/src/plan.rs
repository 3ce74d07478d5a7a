//! The plan: which attempts the probe makes, and what each one should find. Pure.
//!
//! A [`Plan`] is what the controller sends (JSON in `AIRLOCK_PROBE_PLAN` or `--plan`).
//! [`Plan::standard`] builds the full isolation self-test from the addresses the controller
//! knows ([`Targets`]); the fixed parts (metadata endpoints, RFC 1918 samples, public-looking
//! resolvers) are written once here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Docker's plain API port, TLS API port and swarm port: nothing in a sandbox may reach them.
pub const DOCKER_PORTS: [u16; 3] = [2375, 2376, 2377];
/// The egress proxy's admin port when the plan does not name one.
pub const DEFAULT_ADMIN_PORT: u16 = 3129;
/// Default time each attempt may take, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 1500;
/// Largest accepted per-attempt timeout, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 10_000;
/// Most checks one plan may hold (each runs on its own thread).
pub const MAX_CHECKS: usize = 256;
/// Cloud metadata services (AWS/GCP/OpenStack link-local, AWS IPv6, Azure wire server,
/// Alibaba).
pub const METADATA_IPS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];
/// One sample of each RFC 1918 range, plus the most common home-router address.
pub const RFC1918_SAMPLES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(172, 16, 0, 1),
    Ipv4Addr::new(192, 168, 0, 1),
    Ipv4Addr::new(192, 168, 1, 1),
];
/// Well-known public resolvers: a DNS query to them must get no answer.
pub const PUBLIC_RESOLVERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(8, 8, 8, 8),
    Ipv4Addr::new(1, 1, 1, 1),
    Ipv4Addr::new(9, 9, 9, 9),
];
/// The name looked up through the container's resolver (IANA-reserved, resolvable publicly).
pub const LOOKUP_NAME: &str = "example.com";
/// Ports tried on another sandbox, directly and through the proxy.
pub const NEIGHBOUR_PORTS: [u16; 4] = [22, 80, 443, 8080];
/// Names of the deployment's own parts a sandbox may ask the proxy for: the proxy's container,
/// the compose services of the node and the controller, and the Docker host alias. Each must
/// not resolve, or resolve only to infrastructure, and the refusal must name no address. They
/// are asked on 443, which the default policy admits, so that the proxy really resolves them
/// (a port refusal comes before any lookup and would prove nothing about the name).
pub const NODE_NAMES: [(&str, &str); 4] = [
    ("proxy_name", "airlock-egress:443"),
    ("node_name", "dind:443"),
    ("controller_name", "airlock:443"),
    ("docker_host_name", "host.docker.internal:443"),
];
/// The proxy's refusal for an address of the deployment itself (DESIGN.md invariant 9).
pub const CODE_INFRASTRUCTURE: &str = "infrastructure";
/// Refusals that prove a name of the deployment got nowhere: it did not resolve, it resolved
/// only to infrastructure, or the sandbox's own policy refuses the name or port before any
/// lookup (an allow-list policy never resolves a name outside its list).
pub const NAME_REFUSALS: [&str; 5] = [
    CODE_INFRASTRUCTURE,
    "dns_no_answer",
    "dns_failed",
    "domain_not_allowed",
    "port_not_allowed",
];

/// What the probe does: every check, and how long each attempt may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Per-attempt timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The checks, reported in this order.
    pub checks: Vec<Check>,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// A short name saying what is being proven (`gateway_port`, `metadata`, ...).
    pub check: String,
    /// How the attempt is made.
    pub kind: Kind,
    /// An `ip:port` (TCP, UDP, HTTP), an IP (ICMP), a name (lookup) or `-`.
    pub target: String,
    /// What must happen.
    pub expect: Expect,
    /// For a refusal by the proxy: the refusal codes that count as blocked. When set, a
    /// `blocked` check passes only on a refusal carrying one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// What the report shows instead of `target` (a role such as `neighbour-1:8080`), so
    /// that a report never tells a tenant another tenant's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// How an attempt is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A TCP connect to `ip:port`; reached when the handshake completes.
    Tcp,
    /// A DNS query over UDP to `ip:port`; reached when any reply comes back.
    UdpDns,
    /// An A query for a name to every nameserver in `/etc/resolv.conf`; reached when one
    /// answers with records.
    DnsLookup,
    /// An ICMP echo through an unprivileged ping socket; reached when a reply comes back.
    /// When no ping socket can be opened the attempt is `unavailable`.
    Icmp,
    /// Opening a raw ICMP socket (needs `CAP_NET_RAW`); reached when it opens.
    RawSocket,
    /// `GET http://ip:port/` through the proxy in `HTTP_PROXY`, with its credential; reached
    /// on a 2xx answer.
    HttpProxy,
    /// `CONNECT host:port` through the proxy in `HTTP_PROXY`, with its credential (the host
    /// may be a name: the proxy resolves it, the probe never does); reached on a 2xx, denied
    /// with the proxy's refusal code otherwise, `leaked` when the refusal names an address the
    /// probe did not send.
    ProxyConnect,
}

/// What a check must find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Nothing gets through: no connection, no answer.
    Blocked,
    /// The attempt succeeds.
    Reachable,
}

/// The addresses the controller knows about one sandbox's surroundings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// The sandbox network's gateway (the DinD's address on the sandbox bridge).
    pub gateway: Option<IpAddr>,
    /// The egress proxy's address on the sandbox network.
    pub proxy: Option<IpAddr>,
    /// The proxy's admin port ([`DEFAULT_ADMIN_PORT`] when `None`).
    pub admin_port: Option<u16>,
    /// The DinD's other addresses (its outer interface, `docker0`, ...).
    pub dind: Vec<IpAddr>,
    /// Other sandboxes' addresses.
    pub other_sandboxes: Vec<IpAddr>,
    /// The controller's API address as the node sees it.
    pub controller: Option<SocketAddr>,
    /// A test upstream ("the internet"): direct must fail, through the proxy must succeed.
    pub upstream: Option<SocketAddr>,
    /// The proxy's address on its own bridge, where its admin API listens.
    pub proxy_bridge: Option<IpAddr>,
    /// Other sandboxes' container names (the proxy must not reach them by name either).
    pub neighbour_names: Vec<String>,
    /// Whether the sandbox has an egress proxy to ask (the network plane is on): only then
    /// are the deployment's addresses and names asked of it.
    pub through_proxy: bool,
}

// === impl Plan ===

impl Plan {
    /// Parses and checks a plan.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| PlanError::Json(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// The plan as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Refuses plans the probe cannot run: bad targets, too many checks, absurd timeouts.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(PlanError::Timeout(self.timeout_ms));
        }
        if self.checks.len() > MAX_CHECKS {
            return Err(PlanError::TooMany(self.checks.len()));
        }
        for check in &self.checks {
            if !check.target_is_valid() {
                return Err(PlanError::Target {
                    check: check.check.clone(),
                    target: check.target.clone(),
                });
            }
        }
        Ok(())
    }

    /// The full isolation self-test for a sandbox surrounded by `targets`: every forbidden
    /// path tried directly, the deployment's addresses and names asked of the proxy with the
    /// sandbox's own credential (each must be refused as infrastructure), the fixed targets,
    /// and the test upstream when there is one.
    pub fn standard(targets: &Targets) -> Plan {
        let mut checks = Vec::new();
        Self::push_direct(&mut checks, targets);
        if targets.through_proxy {
            Self::push_via_proxy(&mut checks, targets);
        }
        Self::push_fixed(&mut checks);
        if let Some(upstream) = targets.upstream {
            checks.push(Check::blocked("upstream_direct", Kind::Tcp, upstream));
            checks.push(Check::new(
                "upstream_via_proxy",
                Kind::HttpProxy,
                upstream,
                Expect::Reachable,
            ));
        }
        Plan {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            checks,
        }
    }

    /// Direct attempts at the node, the proxy's admin port, neighbours and the controller.
    fn push_direct(checks: &mut Vec<Check>, targets: &Targets) {
        let admin = targets.admin_port.unwrap_or(DEFAULT_ADMIN_PORT);
        if let Some(gateway) = targets.gateway {
            for port in DOCKER_PORTS.iter().copied().chain([admin]) {
                checks.push(Check::blocked(
                    "gateway_port",
                    Kind::Tcp,
                    sock(gateway, port),
                ));
            }
            checks.push(Check::blocked(
                "dns_gateway",
                Kind::UdpDns,
                sock(gateway, 53),
            ));
            checks.push(Check::blocked("icmp_gateway", Kind::Icmp, gateway));
        }
        if let Some(proxy) = targets.proxy {
            checks.push(Check::blocked("proxy_admin", Kind::Tcp, sock(proxy, admin)));
        }
        for (n, ip) in targets.dind.iter().enumerate() {
            for port in DOCKER_PORTS.iter().copied().chain([admin]) {
                let check = Check::blocked("dind_port", Kind::Tcp, sock(*ip, port));
                checks.push(check.labelled(format!("node-{}:{port}", n + 1)));
            }
            let check = Check::blocked("icmp_dind", Kind::Icmp, ip);
            checks.push(check.labelled(format!("node-{}", n + 1)));
        }
        for (n, ip) in targets.other_sandboxes.iter().enumerate() {
            for port in NEIGHBOUR_PORTS {
                let check = Check::blocked("other_sandbox", Kind::Tcp, sock(*ip, port));
                checks.push(check.labelled(format!("neighbour-{}:{port}", n + 1)));
            }
        }
        if let Some(controller) = targets.controller {
            let check = Check::blocked("controller", Kind::Tcp, controller);
            checks.push(check.labelled("controller"));
        }
    }

    /// The deployment's own addresses and names, asked of the proxy: each must be refused as
    /// `infrastructure` (names may also fail to resolve), whatever the sandbox's policy says.
    fn push_via_proxy(checks: &mut Vec<Check>, targets: &Targets) {
        let admin = targets.admin_port.unwrap_or(DEFAULT_ADMIN_PORT);
        let mut infra = |check: &str, target: SocketAddr, label: String| {
            checks.push(Check::refused(check, target, &[CODE_INFRASTRUCTURE]).labelled(label));
        };
        if let Some(gateway) = targets.gateway {
            for port in DOCKER_PORTS.iter().copied().chain([admin]) {
                infra(
                    "proxy_to_gateway",
                    sock(gateway, port),
                    format!("gateway:{port}"),
                );
            }
        }
        for proxy in targets.proxy.iter().chain(&targets.proxy_bridge) {
            infra(
                "proxy_to_admin",
                sock(*proxy, admin),
                format!("proxy:{admin}"),
            );
        }
        for (n, ip) in targets.dind.iter().enumerate() {
            for port in DOCKER_PORTS {
                infra(
                    "proxy_to_node",
                    sock(*ip, port),
                    format!("node-{}:{port}", n + 1),
                );
            }
        }
        for (n, ip) in targets.other_sandboxes.iter().enumerate() {
            for port in NEIGHBOUR_PORTS {
                infra(
                    "proxy_to_neighbour",
                    sock(*ip, port),
                    format!("neighbour-{}:{port}", n + 1),
                );
            }
        }
        if let Some(controller) = targets.controller {
            infra("proxy_to_controller", controller, "controller".to_owned());
        }
        for (n, name) in targets.neighbour_names.iter().enumerate() {
            let check = Check::refused(
                "proxy_to_neighbour_name",
                format!("{name}:443"),
                &NAME_REFUSALS,
            );
            checks.push(check.labelled(format!("neighbour-{}-name:443", n + 1)));
        }
        for (check, target) in NODE_NAMES {
            checks.push(Check::refused(check, target, &NAME_REFUSALS));
        }
    }
    /// The checks that need no knowledge of the node: metadata, private ranges, public DNS,
    /// the container's resolver and raw sockets.
    fn push_fixed(checks: &mut Vec<Check>) {
        for ip in METADATA_IPS {
            checks.push(Check::blocked("metadata", Kind::Tcp, sock(ip, 80)));
        }
        checks.push(Check::blocked("icmp_metadata", Kind::Icmp, METADATA_IPS[0]));
        for ip in RFC1918_SAMPLES {
            checks.push(Check::blocked(
                "private_range",
                Kind::Tcp,
                sock(ip.into(), 80),
            ));
        }
        for ip in PUBLIC_RESOLVERS {
            checks.push(Check::blocked(
                "dns_public",
                Kind::UdpDns,
                sock(ip.into(), 53),
            ));
        }
        checks.push(Check::blocked("dns_lookup", Kind::DnsLookup, LOOKUP_NAME));
        checks.push(Check::blocked("icmp_raw_socket", Kind::RawSocket, "-"));
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

// === impl Check ===

impl Check {
    /// A check of `kind` against `target`.
    pub fn new(check: &str, kind: Kind, target: impl ToString, expect: Expect) -> Check {
        Check {
            check: check.to_owned(),
            kind,
            target: target.to_string(),
            expect,
            codes: Vec::new(),
            label: None,
        }
    }

    /// A check that must find the path closed.
    pub fn blocked(check: &str, kind: Kind, target: impl ToString) -> Check {
        Self::new(check, kind, target, Expect::Blocked)
    }

    /// A `CONNECT` through the proxy that the proxy must refuse with one of `codes`.
    pub fn refused(check: &str, target: impl ToString, codes: &[&str]) -> Check {
        let mut check = Self::new(check, Kind::ProxyConnect, target, Expect::Blocked);
        check.codes = codes.iter().map(|c| (*c).to_owned()).collect();
        check
    }

    /// The same check, reported under `label` instead of its target.
    pub fn labelled(mut self, label: impl Into<String>) -> Check {
        self.label = Some(label.into());
        self
    }

    /// What a report shows for this check: its label, else its target.
    pub fn shown_target(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.target)
    }

    /// The target as a socket address (TCP, UDP and HTTP checks).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.target.parse().ok()
    }

    fn target_is_valid(&self) -> bool {
        match self.kind {
            Kind::Tcp | Kind::UdpDns | Kind::HttpProxy => self.socket_addr().is_some(),
            Kind::ProxyConnect => valid_authority(&self.target),
            Kind::Icmp => self.target.parse::<IpAddr>().is_ok(),
            Kind::DnsLookup => valid_name(&self.target),
            Kind::RawSocket => true,
        }
    }
}

/// A DNS name the probe can encode: dot-separated labels of 1 to 63 letters, digits or `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A `host:port` the probe can send in a `CONNECT`: an IP socket address, or a valid name and
/// a port.
pub fn valid_authority(target: &str) -> bool {
    if target.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match target.rsplit_once(':') {
        Some((host, port)) => valid_name(host) && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Why a plan was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Not a plan.
    Json(String),
    /// A timeout of zero or above [`MAX_TIMEOUT_MS`].
    Timeout(u64),
    /// More than [`MAX_CHECKS`] checks.
    TooMany(usize),
    /// A target that does not fit its check's kind.
    Target {
        /// The check's name.
        check: String,
        /// The target given.
        target: String,
    },
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(error) => write!(f, "invalid plan: {error}"),
            Self::Timeout(ms) => write!(f, "timeout_ms {ms} is not within 1..={MAX_TIMEOUT_MS}"),
            Self::TooMany(n) => write!(f, "{n} checks (at most {MAX_CHECKS})"),
            Self::Target { check, target } => {
                write!(f, "check {check}: target `{target}` does not fit its kind")
            }
        }
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests;
