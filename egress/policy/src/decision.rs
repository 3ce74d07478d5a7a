//! The decision: infrastructure first, then name rules, domain and port rules, then every
//! resolved address.
//!
//! Order: every address (the IP literal, or every resolved answer, and the IPv4 address an IPv6
//! one embeds) is checked against the [`Infrastructure`] set first: a hit denies as
//! `infrastructure` in every mode, whatever the port and whatever any exception says. Then
//! `localhost`, `*.localhost` and metadata names are refused, in every mode. Then `deny_domains`
//! (beats allow), `allow_domains` / `allow_public`, and `allow_ports`; in `report` mode these
//! three only set [`Allowed::would_deny`]. Then every address is checked, in every mode. One
//! non-global address that no exception covers denies the whole request, and an empty answer
//! denies as `dns_no_answer`.
//!
//! Names and literals: a name listed in `allow_domains` passes and names that rule. Any other
//! name passes only when the policy sets `allow_public` (its addresses must then be global or
//! excepted); otherwise it is `domain_not_allowed`. Domain rules cannot match an IP literal:
//! with `allow_public` it is judged by its address alone, without it it must lie inside one of
//! the policy's `allow_cidrs` (else `ip_literal_not_allowed`), so a literal cannot bypass an
//! allow-list.
//!
//! Exceptions: an operator CIDR admits any class. A policy CIDR admits only classes for which
//! [`IpClass::policy_admissible`] holds, never loopback, link-local, metadata or unspecified.
//! Embedded IPv4 needs an operator CIDR covering the IPv6 address, and then the inner IPv4
//! address must pass on its own.
//!
//! Invariant: every address in [`Allowed::addrs`] was checked, and is returned canonical
//! (IPv4-mapped IPv6 unwrapped) so the proxy dials exactly what was checked.

use std::net::{IpAddr, SocketAddr};

use crate::host::{DnsName, Host, ParseError, Target};
use crate::infra::Infrastructure;
use crate::ip::{canonical, classify, IpClass};
use crate::rules::{OperatorExceptions, Policy};
use crate::spec::Mode;

mod reason;

pub use reason::DenyReason;

/// Names that resolve to the local host on common systems, denied before any lookup.
const LOOPBACK_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// Instance-metadata host names, denied before any lookup.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// The outcome of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Dial one of `addrs`, and only those.
    Allow(Allowed),
    /// Refuse before any upstream byte.
    Deny(Denied),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// `"allow"` or `"deny"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::Deny(_) => "deny",
        }
    }
}

/// An allowed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// Every resolved answer (or the literal), canonical, in answer order; never empty.
    pub addrs: Vec<SocketAddr>,
    /// The rule that admitted it: an exception CIDR (`operator:<cidr>` or
    /// `allow_cidrs:<cidr>`) if one was needed, else the matching `allow_domains` entry.
    pub rule: Option<String>,
    /// In report mode, the domain or port rule that would have denied.
    pub would_deny: Option<DenyReason>,
}

impl Allowed {
    /// The first address. [`evaluate`] never returns an empty list; for a hand-built empty one
    /// this returns `[::]:0`, which no connect succeeds on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0u16; 8], 0)))
    }
}

/// A denied request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Why; `reason.code()` is the 403/400 error code.
    pub reason: DenyReason,
    /// The `deny_domains` entry that matched, when one did.
    pub rule: Option<String>,
    /// The offending address, for address denials.
    pub addr: Option<SocketAddr>,
}

impl Denied {
    fn new(reason: DenyReason) -> Denied {
        Denied {
            reason,
            rule: None,
            addr: None,
        }
    }
}

impl From<ParseError> for Denied {
    fn from(error: ParseError) -> Denied {
        Denied::new(DenyReason::Malformed(error))
    }
}

/// Checks that need no DNS: name deny (localhost, `*.localhost`, metadata names), domain
/// allow/deny and port. Returns `Some` to refuse before any lookup; `None` means "resolve,
/// then call [`evaluate`]" (for an IP literal, call [`evaluate`] directly).
pub fn precheck(policy: &Policy, target: &Target) -> Option<Denied> {
    rule_verdict(policy, target).err()
}

/// The full decision: the infrastructure set, [`precheck`], then every address checked. For
/// [`Host::Ip`], `resolved` is ignored and the literal is checked. An empty `resolved` for a
/// name denies as `dns_no_answer`.
pub fn evaluate(
    policy: &Policy,
    ops: &OperatorExceptions,
    infra: &Infrastructure,
    target: &Target,
    resolved: &[IpAddr],
) -> Decision {
    let addrs = match &target.host {
        Host::Ip(ip) => std::slice::from_ref(ip),
        Host::Name(_) => resolved,
    };
    if let Some(denied) = infrastructure_hit(infra, addrs, target.port) {
        return Decision::Deny(denied);
    }
    let verdict = match rule_verdict(policy, target) {
        Ok(verdict) => verdict,
        Err(denied) => return Decision::Deny(denied),
    };
    if addrs.is_empty() {
        return Decision::Deny(Denied::new(DenyReason::DnsNoAnswer));
    }
    let mut checked = Vec::with_capacity(addrs.len());
    let mut exception = None;
    for &ip in addrs {
        let addr = SocketAddr::new(canonical(ip), target.port);
        match check_addr(policy, ops, ip) {
            Ok(rule) => exception = exception.or(rule),
            Err(reason) => {
                return Decision::Deny(Denied {
                    reason,
                    rule: None,
                    addr: Some(addr),
                })
            }
        }
        checked.push(addr);
    }
    Decision::Allow(Allowed {
        addrs: checked,
        rule: exception.or(verdict.rule),
        would_deny: verdict.would_deny,
    })
}

/// The first address inside the infrastructure set, as a denial naming the member it hit.
fn infrastructure_hit(infra: &Infrastructure, addrs: &[IpAddr], port: u16) -> Option<Denied> {
    addrs.iter().find_map(|&ip| {
        infra.contains(ip).map(|net| Denied {
            reason: DenyReason::Infrastructure,
            rule: Some(format!("infrastructure:{net}")),
            addr: Some(SocketAddr::new(canonical(ip), port)),
        })
    })
}

/// What the name, domain and port rules concluded for an allowed target.
struct Verdict {
    /// The `allow_domains` (or, for a literal, `allow_cidrs`) rule that matched.
    rule: Option<String>,
    /// Report mode: the rule that would have denied.
    would_deny: Option<DenyReason>,
}

/// Name, domain and port rules. In report mode domain and port failures become `would_deny`.
fn rule_verdict(policy: &Policy, target: &Target) -> Result<Verdict, Denied> {
    if let Host::Name(name) = &target.host {
        if let Some(reason) = name_deny(name) {
            return Err(Denied::new(reason));
        }
    }
    let (rule, failure) = match domain_rules(policy, &target.host) {
        Ok(rule) if policy.allows_port(target.port) => (rule, None),
        Ok(rule) => (rule, Some(Denied::new(DenyReason::PortNotAllowed))),
        Err(denied) => (None, Some(denied)),
    };
    match (failure, policy.mode()) {
        (None, _) => Ok(Verdict {
            rule,
            would_deny: None,
        }),
        (Some(denied), Mode::Enforce) => Err(denied),
        (Some(denied), Mode::Report) => Ok(Verdict {
            rule,
            would_deny: Some(denied.reason),
        }),
    }
}

/// Refuses loopback and metadata names in every mode.
fn name_deny(name: &DnsName) -> Option<DenyReason> {
    let name = name.as_str();
    if LOOPBACK_NAMES.contains(&name) || name.ends_with(".localhost") {
        return Some(DenyReason::LocalhostName);
    }
    METADATA_NAMES
        .contains(&name)
        .then_some(DenyReason::MetadataName)
}

/// `deny_domains`, then `allow_domains`, then `allow_public`; returns the matching allow rule.
fn domain_rules(policy: &Policy, host: &Host) -> Result<Option<String>, Denied> {
    let name = match host {
        Host::Name(name) => name.as_str(),
        Host::Ip(ip) => return literal_rules(policy, *ip),
    };
    if let Some(hit) = policy.deny_domains().find(name) {
        return Err(Denied {
            reason: DenyReason::DomainDenied,
            rule: Some(hit.rule()),
            addr: None,
        });
    }
    match policy.allow_domains().find(name) {
        Some(hit) => Ok(Some(hit.rule())),
        None if policy.allow_public() => Ok(None),
        None => Err(Denied::new(DenyReason::DomainNotAllowed)),
    }
}

/// Without `allow_public`, an IP literal must be inside one of the policy's CIDRs.
fn literal_rules(policy: &Policy, ip: IpAddr) -> Result<Option<String>, Denied> {
    if policy.allow_public() {
        return Ok(None);
    }
    match policy.cidr_covering(ip) {
        Some(net) => Ok(Some(format!("allow_cidrs:{net}"))),
        None => Err(Denied::new(DenyReason::IpLiteralNotAllowed)),
    }
}

/// Checks one address. `Ok(Some(rule))` names the exception that admitted a non-global address.
fn check_addr(
    policy: &Policy,
    ops: &OperatorExceptions,
    ip: IpAddr,
) -> Result<Option<String>, DenyReason> {
    let ip = canonical(ip);
    match classify(ip) {
        IpClass::Global => Ok(None),
        IpClass::V6Embedded(inner) => {
            let Some(outer) = ops.covering(ip) else {
                return Err(embedded_reason(inner.into()));
            };
            let inner_rule = check_addr(policy, ops, inner.into())?;
            Ok(inner_rule.or_else(|| Some(format!("operator:{outer}"))))
        }
        class => {
            if let Some(net) = ops.admitting(ip, class) {
                return Ok(Some(format!("operator:{net}")));
            }
            match policy.cidr_covering(ip) {
                Some(net) if class.policy_admissible() => Ok(Some(format!("allow_cidrs:{net}"))),
                _ => Err(DenyReason::from_class(class)),
            }
        }
    }
}

/// The reason for an embedded IPv4 address whose outer range no operator exception covers: the
/// inner address's own class when that is not global, so that `64:ff9b::7f00:1` reports
/// `loopback`.
fn embedded_reason(inner: IpAddr) -> DenyReason {
    match classify(inner) {
        IpClass::Global => DenyReason::EmbeddedIpv4,
        class => DenyReason::from_class(class),
    }
}

#[cfg(test)]
mod tests;
