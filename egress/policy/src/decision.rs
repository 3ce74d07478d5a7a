//! The decision: name rules, domain and port rules, then every resolved address.
//!
//! Order: `localhost`, `*.localhost` and metadata names are refused first, in every mode. Then
//! `deny_domains` (beats allow), `allow_domains`, and `allow_ports`; in `report` mode these three
//! only set [`Allowed::would_deny`]. Then every address is checked, in every mode: the target's
//! IP literal, or every resolved answer for a name. One non-global address that no exception
//! covers denies the whole request, and an empty answer denies as `dns_no_answer`.
//!
//! IP-literal targets: domain rules cannot match them. When `allow_domains` is non-empty (an
//! allow-list policy) an IP literal is refused as `ip_literal_not_allowed` unless one of the
//! policy's `allow_cidrs` contains it, so a literal cannot bypass the allow-list. With no
//! allow-list, literals are judged by their address alone.
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

/// The full decision: [`precheck`], then every address checked. For [`Host::Ip`], `resolved`
/// is ignored and the literal is checked. An empty `resolved` for a name denies as
/// `dns_no_answer`.
pub fn evaluate(
    policy: &Policy,
    ops: &OperatorExceptions,
    target: &Target,
    resolved: &[IpAddr],
) -> Decision {
    let verdict = match rule_verdict(policy, target) {
        Ok(verdict) => verdict,
        Err(denied) => return Decision::Deny(denied),
    };
    let addrs = match &target.host {
        Host::Ip(ip) => std::slice::from_ref(ip),
        Host::Name(_) => resolved,
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

/// `deny_domains` then `allow_domains`; returns the matching allow rule.
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
    match policy.allow_domains() {
        None => Ok(None),
        Some(allow) => match allow.find(name) {
            Some(hit) => Ok(Some(hit.rule())),
            None => Err(Denied::new(DenyReason::DomainNotAllowed)),
        },
    }
}

/// Under an allow-list, an IP literal must be inside one of the policy's CIDRs.
fn literal_rules(policy: &Policy, ip: IpAddr) -> Result<Option<String>, Denied> {
    if policy.allow_domains().is_none() {
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
