//! The decision path shared, line for line, by `serve` and `check`:
//! parse the request target → `precheck` (no DNS) → resolve (every A and AAAA answer) →
//! `evaluate` on all answers.
//!
//! Identity sits between parsing and judging in `serve`; `check` skips it and judges with the
//! policy file directly. Everything else is this module.

use std::net::IpAddr;
use std::time::Instant;

use airlock_egress_policy::{
    check_host_header, evaluate, parse_absolute, parse_connect, precheck, Decision, Denied, Host,
    OperatorExceptions, ParseError, Policy, Target,
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
/// of every `Host` header (absolute-form only: they must agree with the target).
pub fn parse_request(
    method: &str,
    target: &str,
    host_headers: &[&[u8]],
) -> Result<ParsedRequest, EgressError> {
    if method.eq_ignore_ascii_case("CONNECT") {
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

/// Judges `target` under `policy`: precheck, resolve (names only), then evaluate every answer.
///
/// A DNS failure (timeout, SERVFAIL) is an upstream error; NXDOMAIN or an empty answer is a
/// policy denial (`dns_no_answer`) decided by `evaluate`.
pub async fn judge(
    policy: &Policy,
    ops: &OperatorExceptions,
    resolver: &dyn Resolve,
    metrics: Option<&Metrics>,
    target: &Target,
) -> Result<Judgement, EgressError> {
    if let Some(denied) = precheck(policy, target) {
        return Ok(Judgement {
            decision: Decision::Deny(denied),
            resolved: Vec::new(),
        });
    }
    let resolved = match &target.host {
        Host::Ip(_) => Vec::new(),
        Host::Name(name) => {
            let started = Instant::now();
            let answer = resolver.resolve(name).await;
            if let Some(metrics) = metrics {
                metrics.observe_dns(started.elapsed());
            }
            answer.map_err(|e| match e {
                ResolveError::Timeout => EgressError::upstream("dns_timeout", e.to_string(), true),
                ResolveError::Failed(_) => {
                    EgressError::upstream("dns_failed", e.to_string(), false)
                }
            })?
        }
    };
    let decision = evaluate(policy, ops, target, &resolved);
    Ok(Judgement { decision, resolved })
}

/// The client-facing error for a policy denial (400 for a malformed target, else 403).
pub fn denial_error(denied: &Denied, target: &Target) -> EgressError {
    let code = denied.reason.code();
    let what = denied.reason.message();
    let message = match denied.addr {
        Some(addr) => format!(
            "{}:{}: {what} ({})",
            target.host_str(),
            target.port,
            addr.ip()
        ),
        None => format!("{}:{}: {what}", target.host_str(), target.port),
    };
    if denied.reason.is_malformed() {
        EgressError::client(code, message)
    } else {
        EgressError::policy(code, message)
    }
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
        ] {
            let err = parse_request(method, target, hosts).unwrap_err();
            assert_eq!(err.status(), 400, "{method} {target}: {err}");
        }
    }
}
