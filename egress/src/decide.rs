//! The decision path shared, line for line, by `serve` and `check`:
//! parse the request target → `precheck` (names only, no DNS) → resolve (every A and AAAA
//! answer) → `evaluate` on all answers, the infrastructure set first.
//!
//! Identity sits between parsing and judging in `serve`; `check` skips it and judges with the
//! policy file directly. Everything else is this module.
//!
//! What goes back to the client never holds an address it did not send: a denial for a name
//! says why without the address it resolved to, and DNS failures say nothing of the resolvers.
//! The ledger keeps the resolved address for the operator.

use std::net::IpAddr;
use std::time::Instant;

use airlock_egress_policy::{
    check_host_header, evaluate, parse_absolute, parse_connect, precheck, Decision, Denied, Host,
    Infrastructure, OperatorExceptions, ParseError, Policy, Target,
};

use crate::error::EgressError;
use crate::metrics::Metrics;
use crate::resolve::{Resolve, ResolveError};

/// A request line that parsed into a typed target.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    /// What kind of proxy request this is.
    pub kind: RequestKind,
    /// The destination.
    pub target: Target,
}

/// CONNECT tunnel or absolute-form forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `CONNECT host:port`.
    Connect,
    /// `METHOD http://host[:port]/path`, forwarded with this origin-form path and query.
    Forward {
        /// The path and query sent upstream.
        path_and_query: String,
    },
}

/// The outcome of judging a target.
#[derive(Debug)]
pub struct Judgement {
    /// The policy decision.
    pub decision: Decision,
    /// Every address the name resolved to (empty for IP literals and prechecked denials).
    pub resolved: Vec<IpAddr>,
}

// === impl ParsedRequest ===

/// Parses a request target the way `serve` receives it.
///
/// `target` is the request-target exactly as on the request line; `host_headers` are the values
/// of every `Host` header (absolute-form only: they must agree with the target). Methods are
/// case-sensitive (RFC 9110 9.1): `connect` is no CONNECT, and a proxy that read it as one
/// would route a request hyper forwards as something else.
pub fn parse_request(
    method: &str,
    target: &str,
    host_headers: &[&[u8]],
) -> Result<ParsedRequest, EgressError> {
    if method != "CONNECT" && method.eq_ignore_ascii_case("CONNECT") {
        return Err(bad_method_case());
    }
    if method == "CONNECT" {
        let target = parse_connect(target).map_err(malformed)?;
        return Ok(ParsedRequest {
            kind: RequestKind::Connect,
            target,
        });
    }
    if target.starts_with('/') || target == "*" {
        return Err(EgressError::client(
            "origin_form",
            "this is a forward proxy: send an absolute-form request (http://host/path) or CONNECT",
        ));
    }
    let form = parse_absolute(target).map_err(malformed)?;
    match host_headers {
        [] => {}
        [one] => {
            let value = std::str::from_utf8(one).map_err(|_not_utf8| {
                EgressError::client("host_mismatch", "Host header is not UTF-8")
            })?;
            check_host_header(&form.target, value).map_err(malformed)?;
        }
        _ => {
            return Err(EgressError::client(
                "host_mismatch",
                "more than one Host header",
            ))
        }
    }
    Ok(ParsedRequest {
        kind: RequestKind::Forward {
            path_and_query: form.path_and_query,
        },
        target: form.target,
    })
}

/// What `judge` needs besides the target: the policy, the operator's exceptions and the
/// infrastructure set.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The client's policy.
    pub policy: &'a Policy,
    /// The operator's exceptions.
    pub ops: &'a OperatorExceptions,
    /// The deployment's own addresses.
    pub infra: &'a Infrastructure,
}

/// Judges `target` under `rules`: precheck (names), resolve (names only), then evaluate every
/// answer. An IP literal goes straight to `evaluate`, so the infrastructure set decides before
/// any port or domain rule.
///
/// A DNS failure (timeout, SERVFAIL) is an upstream error; NXDOMAIN or an empty answer is a
/// policy denial (`dns_no_answer`) decided by `evaluate`.
pub async fn judge(
    rules: Rules<'_>,
    resolver: &dyn Resolve,
    metrics: Option<&Metrics>,
    target: &Target,
) -> Result<Judgement, EgressError> {
    let resolved = match &target.host {
        Host::Ip(_) => Vec::new(),
        Host::Name(name) => {
            if let Some(denied) = precheck(rules.policy, target) {
                return Ok(Judgement {
                    decision: Decision::Deny(denied),
                    resolved: Vec::new(),
                });
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
    Ok(Judgement { decision, resolved })
}

/// A DNS failure as the client sees it: the code and a fixed sentence. hickory's own text can
/// name the resolvers' addresses, so it only goes to the log.
fn dns_error(error: ResolveError) -> EgressError {
    match error {
        ResolveError::Timeout => {
            EgressError::upstream("dns_timeout", "the DNS lookup timed out", true)
        }
        ResolveError::Failed(detail) => {
            tracing::debug!(error.detail = %detail, "DNS lookup failed");
            EgressError::upstream("dns_failed", "the DNS lookup failed", false)
        }
        ResolveError::NotConfigured => {
            EgressError::upstream("dns_failed", ResolveError::NotConfigured.to_string(), false)
        }
    }
}

/// The client-facing error for a policy denial (400 for a malformed target, else 403). It names
/// the target as the client sent it and never the address a name resolved to: that would tell
/// a sandbox the deployment's internal addresses. The ledger keeps the address.
pub fn denial_error(denied: &Denied, target: &Target) -> EgressError {
    let code = denied.reason.code();
    let what = denied.reason.message();
    let message = format!("{}:{}: {what}", target.host_str(), target.port);
    if denied.reason.is_malformed() {
        EgressError::client(code, message)
    } else {
        EgressError::policy(code, message)
    }
}

/// The refusal for a CONNECT spelled in another case.
pub(crate) fn bad_method_case() -> EgressError {
    EgressError::client(
        "bad_method",
        "methods are case-sensitive: a tunnel is requested with CONNECT",
    )
}

/// A parse error is a client error carrying the parser's stable code.
fn malformed(error: ParseError) -> EgressError {
    EgressError::client(error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_malformed_inputs() {
        let ok = parse_request("CONNECT", "example.com:443", &[]).unwrap();
        assert_eq!(ok.kind, RequestKind::Connect);
        let ok = parse_request("GET", "http://example.com/a?b", &[b"example.com"]).unwrap();
        assert_eq!(
            ok.kind,
            RequestKind::Forward {
                path_and_query: "/a?b".into()
            }
        );
        for (method, target, hosts) in [
            ("GET", "/index.html", &[][..]),
            ("GET", "*", &[][..]),
            ("GET", "https://example.com/", &[][..]),
            ("GET", "http://user@example.com/", &[][..]),
            ("GET", "http://example.com/#frag", &[][..]),
            ("GET", "http://example.com/", &[&b"other.com"[..]][..]),
            (
                "GET",
                "http://example.com/",
                &[&b"example.com"[..], &b"example.com"[..]][..],
            ),
            ("CONNECT", "example.com", &[][..]),
            ("connect", "example.com:443", &[][..]),
            ("Connect", "example.com:443", &[][..]),
        ] {
            let err = parse_request(method, target, hosts).unwrap_err();
            assert_eq!(err.status(), 400, "{method} {target}: {err}");
        }
        let lower = parse_request("connect", "example.com:443", &[]).unwrap_err();
        assert_eq!(lower.code(), "bad_method");
    }

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
