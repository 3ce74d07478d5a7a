//! Judge: is the target allowed under the client's policy, and at which addresses? The same
//! path, line for line, for `serve` and `check`: `precheck` (names only, no DNS) → resolve
//! (every A and AAAA answer) → `evaluate` on all answers, the infrastructure set first.
//!
//! What goes back to the client never holds an address it did not send: a denial for a name
//! says why without the address it resolved to, and DNS failures say nothing of the resolvers.
//! The ledger keeps the resolved address for the operator.

use std::net::SocketAddr;
use std::time::Instant;

use airlock_egress_policy::{
    evaluate, precheck, Decision, Denied, Host, Infrastructure, OperatorExceptions, Policy, Target,
};

use crate::error::EgressError;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::record::Exchange;
use crate::registry::ClientCtx;
use crate::resolve::{Resolve, ResolveError};

/// What `judge` needs besides the target: the policy, the operator's exceptions and the
/// infrastructure set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The client's policy.
    pub(crate) policy: &'a Policy,
    /// The operator's exceptions.
    pub(crate) ops: &'a OperatorExceptions,
    /// The deployment's own addresses.
    pub(crate) infra: &'a Infrastructure,
}

/// Judges `target` under `rules`: precheck (names), resolve (names only, every answer), then
/// evaluate every answer. An IP literal goes straight to `evaluate`, so the infrastructure set decides before
/// any port or domain rule.
///
/// A DNS failure (timeout, SERVFAIL) is an upstream error; NXDOMAIN or an empty answer is a
/// policy denial (`dns_no_answer`) decided by `evaluate`.
pub(crate) async fn judge(
    rules: Rules<'_>,
    resolver: &dyn Resolve,
    metrics: Option<&Metrics>,
    target: &Target,
) -> Result<Decision, EgressError> {
    let resolved = match &target.host {
        Host::Ip(_) => Vec::new(),
        Host::Name(name) => {
            if let Some(denied) = precheck(rules.policy, target) {
                return Ok(Decision::Deny(denied));
            }
            let started = Instant::now();
            let answer = resolver.resolve(name).await;
            if let Some(metrics) = metrics {
                metrics.observe_dns(started.elapsed());
            }
            answer.map_err(dns_error)?
        }
    };
    let decision = evaluate(rules.policy, rules.ops, rules.infra, target, &resolved);
    Ok(decision)
}

/// The judge step of `serve`: judges the target under the client's policy, records the
/// decision and its rule in the exchange, and returns every address allowed for dialling (in
/// answer order), or the refusal.
pub(crate) async fn allowed_addrs(
    proxy: &Proxy,
    ctx: &ClientCtx,
    target: &Target,
    exchange: &mut Exchange,
) -> Result<Vec<SocketAddr>, EgressError> {
    let services = proxy.services();
    let infra = services.infra.current();
    let rules = Rules {
        policy: &ctx.policy,
        ops: proxy.operator_exceptions(),
        infra: &infra,
    };
    let resolver = services.resolver.as_ref();
    match judge(rules, resolver, Some(&services.metrics), target).await? {
        Decision::Allow(allowed) => {
            exchange.set_allowed(
                allowed.would_deny.as_ref().map(|r| r.code()),
                allowed.rule.clone(),
            );
            Ok(allowed.addrs)
        }
        Decision::Deny(denied) => {
            exchange.set_rule(denied.rule.clone());
            exchange.set_addr(denied.addr);
            Err(denial_error(&denied, target))
        }
    }
}

/// A DNS failure as the client sees it: the code and a fixed sentence. hickory's own text can
/// name the resolvers' addresses, so it only goes to the log.
fn dns_error(error: ResolveError) -> EgressError {
    match error {
        ResolveError::Timeout => {
            EgressError::upstream_timeout("dns_timeout", "the DNS lookup timed out")
        }
        ResolveError::Failed(detail) => {
            tracing::debug!(error.detail = %detail, "DNS lookup failed");
            EgressError::upstream("dns_failed", "the DNS lookup failed")
        }
        ResolveError::NotConfigured => {
            EgressError::upstream("dns_failed", ResolveError::NotConfigured.to_string())
        }
    }
}

/// The client-facing error for a policy denial (400 for a malformed target, else 403). It names
/// the target as the client sent it and never the address a name resolved to: that would tell
/// a sandbox the deployment's internal addresses. The ledger keeps the address.
pub(crate) fn denial_error(denied: &Denied, target: &Target) -> EgressError {
    let code = denied.reason.code();
    let what = denied.reason.message();
    let message = format!("{}:{}: {what}", target.host_str(), target.port);
    if denied.reason.is_malformed() {
        EgressError::client(code, message)
    } else {
        EgressError::policy(code, message)
    }
}

#[cfg(test)]
mod tests {
    use airlock_egress_policy::parse_connect;

    use super::*;

    #[test]
    fn a_denial_for_a_name_never_names_the_resolved_address() {
        let target = parse_connect("internal.test:8080").unwrap();
        let denied = Denied {
            reason: airlock_egress_policy::DenyReason::Infrastructure,
            rule: Some("infrastructure:10.213.0.0/16".into()),
            addr: Some("10.213.0.3:8080".parse().unwrap()),
        };
        let message = denial_error(&denied, &target).public_message();
        assert_eq!(
            message,
            "internal.test:8080: the destination is part of the Airlock deployment"
        );
    }
}
