//! `airlock-egress check`: the dry run operators use to test a policy.
//!
//! It runs exactly `serve`'s decision path: the request line (with `HTTP/1.1` added when it has
//! no version) and the `--header`s form a request head that goes through the gate's own checks
//! (hyper's parser and rules, the method-case rule), then `request::parse_request` and
//! `judge::judge` with the operator's exceptions and the infrastructure set (`--deny-cidr`).
//! A static resolver answers `--resolve` entries and, unless `--no-dns`, the system resolver
//! (Docker's embedded one left out) the rest. With `--no-dns` it does no network I/O: a name
//! without a `--resolve` entry has no answer and is denied as `dns_no_answer`.
//!
//! For a destination that is one of the policy's endpoints it adds `tls` and the `credential`
//! name; `--inner 'POST /v1/messages'` judges a request inside an inspected tunnel (canonical
//! path, rules), as `rule_denied`, a path code or `not_inspected` when it would be refused.
//!
//! It prints one JSON object and exits 0 (allow) or 1 (deny, a malformed request line
//! included); 2 is only for bad flags. It does not derive infrastructure from the interfaces of
//! the machine it runs on (that is rarely the proxy's): pass the proxy's with `--deny-cidr`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use airlock_egress_policy::{
    canonical_path, Decision, Endpoints, Infrastructure, OperatorExceptions, TlsMode,
};
use ipnet::IpNet;
use serde::Serialize;

use crate::config::{load_policy_spec, parse_cidr, DEFAULT_MAX_HEADER_BYTES};
use crate::gate::head_verdict;
use crate::judge::{judge, Rules};
use crate::record::REASON_ALLOWED;
use crate::request::parse_request;
use crate::resolve::{HickoryResolve, NoResolver, Resolve, ResolverSetupError, StaticResolve};

/// Arguments of `airlock-egress check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// The policy file (JSON); the built-in default policy without it.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Operator exception (exact CIDR), repeatable.
    #[arg(long = "allow-cidr")]
    pub allow_cidr: Vec<String>,
    /// Infrastructure CIDR no policy or exception opens, repeatable (as `serve --deny-cidr`).
    #[arg(long = "deny-cidr")]
    pub deny_cidr: Vec<String>,
    /// `NAME=ADDR[,ADDR...]`: answer NAME with these addresses instead of asking DNS.
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Never query DNS; names without a --resolve entry have no answer.
    #[arg(long)]
    pub no_dns: bool,
    /// A request header, `Name: value` (only Host matters to the decision).
    #[arg(long)]
    pub header: Vec<String>,
    /// For a CONNECT to an inspected endpoint: the request inside the tunnel, `'METHOD /path'`,
    /// judged by the endpoint's rules on its canonical path.
    #[arg(long)]
    pub inner: Option<String>,
    /// The request line: `'GET http://host/path'` or `'CONNECT host:port'` (a version such as
    /// `HTTP/1.0` may follow; `HTTP/1.1` is assumed).
    #[arg(last = true, required = true)]
    pub request: Vec<String>,
}

/// The JSON line `check` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The reason code (`allowed`, a deny code, or the report-mode would-deny code).
    pub reason: &'static str,
    /// The destination host, when the target parsed.
    pub host: Option<String>,
    /// The destination port, when the target parsed.
    pub port: Option<u16>,
    /// The address `serve` would dial first (allow), or the address that was denied.
    pub addr: Option<SocketAddr>,
    /// For a destination that is one of the policy's endpoints: `terminate`, `passthrough` or
    /// `http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// The name of the credential the proxy would add there (never its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// With `--inner`: the canonical path and the rule that admits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<InnerOutcome>,
}

/// What `--inner` found inside an inspected tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InnerOutcome {
    /// The path as the upstream would see it (no query).
    pub path: Option<String>,
    /// The admitting rule (`"*"` when the endpoint has no rules), absent on a denial.
    pub rule: Option<String>,
}

/// Bad command-line input (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckUsageError {
    /// A `--resolve` entry was malformed.
    #[error("bad --resolve {0:?}: expected NAME=ADDR[,ADDR...]")]
    Resolve(String),
    /// A `--allow-cidr` or `--deny-cidr` entry was malformed.
    #[error("bad --{flag} {value:?}: expected a CIDR like 10.0.0.5/32")]
    Cidr {
        /// `allow-cidr` or `deny-cidr`.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// A `--header` entry was malformed.
    #[error("bad --header {0:?}: expected 'Name: value'")]
    Header(String),
    /// The policy file could not be loaded.
    #[error("cannot load the policy: {0}")]
    Policy(String),
    /// The system resolver could not be set up.
    #[error("cannot set up DNS: {0}")]
    Dns(String),
}

/// Runs `check` and prints its outcome; returns the process exit status.
pub async fn main(args: CheckArgs) -> ExitCode {
    match run(&args).await {
        Ok(outcome) => {
            let mut line = serde_json::to_string(&outcome).unwrap_or_default();
            line.push('\n');
            if std::io::stdout().write_all(line.as_bytes()).is_err() {
                return ExitCode::from(2);
            }
            ExitCode::from(u8::from(outcome.decision != "allow"))
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "airlock-egress check: {error}");
            ExitCode::from(2)
        }
    }
}

/// Evaluates the request described by `args`, the way `serve` would.
pub async fn run(args: &CheckArgs) -> Result<CheckOutcome, CheckUsageError> {
    let (spec, policy) = load_policy_spec(args.policy.as_deref())
        .map_err(|e| CheckUsageError::Policy(e.to_string()))?;
    let ops = OperatorExceptions::new(cidrs("allow-cidr", &args.allow_cidr)?);
    let infra = Infrastructure::new(cidrs("deny-cidr", &args.deny_cidr)?);
    let hosts = host_headers(&args.header)?;
    let resolver = build_resolver(args)?;
    let rules = Rules {
        policy: &policy,
        ops: &ops,
        infra: &infra,
    };
    let line = args.request.join(" ");
    let outcome = decide(rules, resolver.as_ref(), &line, &args.header, &hosts).await;
    let endpoints = spec.endpoints.as_deref().unwrap_or_default();
    // A dry run: the CA is assumed present, as `serve` needs it for any `terminate` endpoint.
    let endpoints = Endpoints::compile(endpoints, &policy, true)
        .map_err(|e| CheckUsageError::Policy(format!("{} ({})", e, e.code())))?;
    Ok(inspect(outcome, &endpoints, args.inner.as_deref()))
}

/// Adds what the policy's endpoints say about an allowed destination, and judges `--inner`.
fn inspect(mut outcome: CheckOutcome, endpoints: &Endpoints, inner: Option<&str>) -> CheckOutcome {
    let (Some(host), Some(port)) = (&outcome.host, outcome.port) else {
        return outcome;
    };
    let Some(endpoint) = endpoints.find(host, port) else {
        return outcome;
    };
    outcome.tls = Some(endpoint.tls);
    outcome.credential = endpoint.credential.as_ref().map(|c| c.secret.clone());
    let Some(inner) = inner.filter(|_| outcome.decision == "allow") else {
        return outcome;
    };
    if endpoint.tls != TlsMode::Terminate {
        outcome.decision = "deny";
        outcome.reason = "not_inspected";
        return outcome;
    }
    let (method, target) = inner.split_once(' ').unwrap_or((inner, "/"));
    match canonical_path(target.trim()) {
        Err(e) => {
            outcome.decision = "deny";
            outcome.reason = e.code();
            outcome.inner = Some(InnerOutcome {
                path: None,
                rule: None,
            });
        }
        Ok(canonical) => {
            let rule = endpoint.rules.check(method.trim(), &canonical.path);
            if rule.is_none() {
                outcome.decision = "deny";
                outcome.reason = "rule_denied";
            }
            outcome.inner = Some(InnerOutcome {
                path: Some(canonical.path),
                rule,
            });
        }
    }
    outcome
}

fn cidrs(flag: &'static str, values: &[String]) -> Result<Vec<IpNet>, CheckUsageError> {
    values
        .iter()
        .map(|value| {
            parse_cidr(value).ok_or_else(|| CheckUsageError::Cidr {
                flag,
                value: value.clone(),
            })
        })
        .collect()
}

/// The request head `serve` would receive for this line and these headers.
fn request_head(line: &str, headers: &[String]) -> String {
    let has_version = line
        .rsplit(' ')
        .next()
        .is_some_and(|last| last.starts_with("HTTP/"))
        && line.split(' ').count() == 3;
    let mut head = match has_version {
        true => format!("{line}\r\n"),
        false => format!("{line} HTTP/1.1\r\n"),
    };
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The shared decision path, folded into one outcome.
async fn decide(
    rules: Rules<'_>,
    resolver: &dyn Resolve,
    line: &str,
    headers: &[String],
    hosts: &[String],
) -> CheckOutcome {
    let deny = |reason, host, port, addr| CheckOutcome {
        decision: "deny",
        reason,
        host,
        port,
        addr,
        tls: None,
        credential: None,
        inner: None,
    };
    let head = request_head(line, headers);
    if let Err(error) = head_verdict(head.as_bytes(), DEFAULT_MAX_HEADER_BYTES) {
        return deny(error.code(), None, None, None);
    }
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let hosts: Vec<&[u8]> = hosts.iter().map(String::as_bytes).collect();
    let parsed = match parse_request(method, target, &hosts) {
        Ok(parsed) => parsed,
        Err(error) => return deny(error.code(), None, None, None),
    };
    let t = &parsed.target;
    let (host, port) = (Some(t.host_str()), Some(t.port));
    match judge(rules, resolver, None, t).await {
        Err(error) => deny(error.code(), host, port, None),
        Ok(decision) => match decision {
            Decision::Deny(denied) => deny(denied.reason.code(), host, port, denied.addr),
            Decision::Allow(allowed) => CheckOutcome {
                decision: "allow",
                reason: allowed
                    .would_deny
                    .as_ref()
                    .map_or(REASON_ALLOWED, |r| r.code()),
                host,
                port,
                addr: Some(allowed.addr()),
                tls: None,
                credential: None,
                inner: None,
            },
        },
    }
}

fn host_headers(headers: &[String]) -> Result<Vec<String>, CheckUsageError> {
    let mut hosts = Vec::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| CheckUsageError::Header(header.clone()))?;
        if name.trim().is_empty() || header.contains(['\r', '\n']) {
            return Err(CheckUsageError::Header(header.clone()));
        }
        if name.trim().eq_ignore_ascii_case("host") {
            hosts.push(value.trim().to_owned());
        }
    }
    Ok(hosts)
}

fn build_resolver(args: &CheckArgs) -> Result<Box<dyn Resolve>, CheckUsageError> {
    let mut table = StaticResolve::new();
    for entry in &args.resolve {
        let bad = || CheckUsageError::Resolve(entry.clone());
        let (name, addrs) = entry.split_once('=').ok_or_else(bad)?;
        let addrs: Vec<IpAddr> = addrs
            .split(',')
            .map(|a| a.trim().parse().map_err(|_bad_addr| bad()))
            .collect::<Result<_, _>>()?;
        if name.is_empty() || addrs.is_empty() {
            return Err(bad());
        }
        table.insert(name, addrs);
    }
    if args.no_dns {
        return Ok(Box::new(table));
    }
    // As `serve`: without a usable nameserver, names that need DNS are refused, not a usage
    // error.
    let system: Box<dyn Resolve> = match HickoryResolve::from_system(Duration::from_secs(5)) {
        Ok(system) => Box::new(system),
        Err(ResolverSetupError::NoServers | ResolverSetupError::ResolvConf(_)) => {
            Box::new(NoResolver)
        }
        Err(error) => return Err(CheckUsageError::Dns(error.to_string())),
    };
    Ok(Box::new(table.with_fallback(system)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(request: &str, extra: impl FnOnce(&mut CheckArgs)) -> CheckArgs {
        let mut a = CheckArgs {
            no_dns: true,
            request: vec![request.to_owned()],
            ..CheckArgs::default()
        };
        extra(&mut a);
        a
    }

    #[tokio::test]
    async fn decisions() {
        let cases: Vec<(CheckArgs, &str, &str)> = vec![
            (
                args("GET http://example.com/", |a| {
                    a.resolve = vec!["example.com=93.184.216.34".into()]
                }),
                "allow",
                "allowed",
            ),
            (
                args("GET http://example.com/", |_| {}),
                "deny",
                "dns_no_answer",
            ),
            (args("CONNECT 10.0.0.1:443", |_| {}), "deny", "private"),
            (
                args("CONNECT 10.0.0.1:443", |a| {
                    a.allow_cidr = vec!["10.0.0.1/32".into()]
                }),
                "allow",
                "allowed",
            ),
            (args("GET /relative", |_| {}), "deny", "origin_form"),
            (
                args("connect example.com:443", |_| {}),
                "deny",
                "bad_method",
            ),
            (args("GET http://a/ extra", |_| {}), "deny", "bad_version"),
            (
                args("GET http://a.test/ HTTP/1.0", |a| {
                    a.resolve = vec!["a.test=93.184.216.34".into()]
                }),
                "allow",
                "allowed",
            ),
            (
                args("GET http://a.test/", |a| {
                    a.header = vec!["Bad Header: x".into()]
                }),
                "deny",
                "bad_header",
            ),
            (
                args("CONNECT 10.213.0.3:22", |a| {
                    a.deny_cidr = vec!["10.213.0.0/16".into()];
                    a.allow_cidr = vec!["10.0.0.0/8".into()];
                }),
                "deny",
                "infrastructure",
            ),
            (
                args("CONNECT localhost:443", |_| {}),
                "deny",
                "localhost_name",
            ),
            (
                args("GET http://example.com/", |a| {
                    a.resolve = vec!["example.com=93.184.216.34,10.1.1.1".into()];
                }),
                "deny",
                "private",
            ),
        ];
        for (a, decision, reason) in cases {
            let out = run(&a).await.unwrap();
            assert_eq!(
                (out.decision, out.reason),
                (decision, reason),
                "{:?}",
                a.request
            );
        }
    }

    #[tokio::test]
    async fn usage_errors() {
        for a in [
            args("GET http://a/", |a| a.resolve = vec!["a".into()]),
            args("GET http://a/", |a| a.deny_cidr = vec!["nope".into()]),
            args("GET http://a/", |a| {
                a.header = vec!["X: a\r\nHost: b".into()]
            }),
            args("GET http://a/", |a| a.resolve = vec!["a=not-an-ip".into()]),
            args("GET http://a/", |a| {
                a.allow_cidr = vec!["10.0.0.0/40".into()]
            }),
            args("GET http://a/", |a| a.header = vec!["no colon".into()]),
        ] {
            assert!(run(&a).await.is_err(), "{a:?}");
        }
    }
}
