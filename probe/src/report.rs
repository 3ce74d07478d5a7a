//! The report: what each attempt found and whether that is what the plan expected. Pure.
//!
//! An attempt ends in one [`Outcome`]. Only [`Outcome::Reached`] means a packet got somewhere
//! and something answered (a TCP handshake, a DNS reply, an ICMP echo reply, a raw socket
//! opened, a 2xx through the proxy). A `blocked` check passes on every other outcome except
//! [`Outcome::Error`] and [`Outcome::Leaked`], which always fail: a probe that could not try
//! proves nothing, and a refusal that names an address the sandbox did not send is a leak. A
//! check that names refusal `codes` passes only on a proxy refusal carrying one of them.

use serde::{Deserialize, Serialize};

use crate::plan::{Check, Expect, Kind};

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The path is open: something answered.
    Reached,
    /// The peer refused (TCP RST, ICMP port unreachable): no connection was made.
    Refused,
    /// Nothing came back in time.
    TimedOut,
    /// No route, or the network stack refused to send.
    Unreachable,
    /// An answer came back that carries nothing usable (a DNS error, a non-2xx from the
    /// proxy).
    Denied,
    /// The facility is not available to the sandbox (no ping socket, no raw socket).
    Unavailable,
    /// The probe could not make the attempt (bad input, missing `HTTP_PROXY`).
    Error,
    /// The proxy refused, but its answer named an address the probe did not send.
    Leaked,
}

/// Whether a check found what it expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// As expected.
    Pass,
    /// Not as expected: for a `blocked` check, a hole.
    Fail,
}

/// One attempt as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub check: String,
    /// How it was attempted.
    pub kind: Kind,
    /// What was tried: the check's label when it has one (a role, never another tenant's
    /// address), else its target.
    pub target: String,
    /// What had to happen.
    pub expect: Expect,
    /// Whether it did.
    pub result: Verdict,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The proxy's refusal code, for attempts through the proxy that it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A human-readable detail (the OS error, the DNS rcode, the HTTP status).
    pub detail: String,
    /// How long the attempt took.
    pub elapsed_ms: u64,
}

/// Every attempt of one run, in plan order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Whether every check passed.
    pub passed: bool,
    /// How many checks passed.
    pub pass_count: usize,
    /// How many checks failed.
    pub fail_count: usize,
    /// The attempts.
    pub checks: Vec<CheckResult>,
}

/// What an attempt found, before it is judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// How it ended.
    pub outcome: Outcome,
    /// Why, in words.
    pub detail: String,
    /// The proxy's refusal code, when the proxy refused.
    pub code: Option<String>,
    /// How long it took.
    pub elapsed_ms: u64,
}

// === impl Outcome ===

impl Outcome {
    /// The verdict for a check expecting `expect` with no refusal codes.
    pub fn judge(self, expect: Expect) -> Verdict {
        self.judge_refusal(expect, &[], None)
    }

    /// The verdict for a check expecting `expect`; when `codes` is not empty, `blocked` passes
    /// only on a refusal whose `code` is one of them.
    pub fn judge_refusal(self, expect: Expect, codes: &[String], code: Option<&str>) -> Verdict {
        let pass = match (expect, self) {
            (_, Outcome::Error | Outcome::Leaked) => false,
            (Expect::Blocked, Outcome::Denied) if !codes.is_empty() => {
                code.is_some_and(|code| codes.iter().any(|c| c == code))
            }
            (Expect::Blocked, _) if !codes.is_empty() => false,
            (Expect::Blocked, outcome) => outcome != Outcome::Reached,
            (Expect::Reachable, outcome) => outcome == Outcome::Reached,
        };
        if pass {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

// === impl Report ===

impl Report {
    /// Judges each attempt against its check; `attempts` pairs with `checks` by position.
    pub fn new(checks: &[Check], attempts: Vec<Attempt>) -> Report {
        let checks: Vec<CheckResult> = checks
            .iter()
            .zip(attempts)
            .map(|(check, attempt)| CheckResult {
                check: check.check.clone(),
                kind: check.kind,
                target: check.shown_target().to_owned(),
                expect: check.expect,
                result: attempt.outcome.judge_refusal(
                    check.expect,
                    &check.codes,
                    attempt.code.as_deref(),
                ),
                outcome: attempt.outcome,
                code: attempt.code,
                detail: attempt.detail,
                elapsed_ms: attempt.elapsed_ms,
            })
            .collect();
        let fail_count = checks.iter().filter(|c| c.result == Verdict::Fail).count();
        Report {
            passed: fail_count == 0 && !checks.is_empty(),
            pass_count: checks.len() - fail_count,
            fail_count,
            checks,
        }
    }

    /// Parses a report the probe printed.
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.result == Verdict::Fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Kind;

    #[test]
    fn judge_table() {
        use Expect::{Blocked, Reachable};
        use Outcome::*;
        use Verdict::{Fail, Pass};
        let table = [
            (Blocked, Reached, Fail),
            (Blocked, Refused, Pass),
            (Blocked, TimedOut, Pass),
            (Blocked, Unreachable, Pass),
            (Blocked, Denied, Pass),
            (Blocked, Unavailable, Pass),
            (Blocked, Error, Fail),
            (Reachable, Reached, Pass),
            (Reachable, Refused, Fail),
            (Reachable, TimedOut, Fail),
            (Reachable, Denied, Fail),
            (Reachable, Unavailable, Fail),
            (Reachable, Error, Fail),
        ];
        for (expect, outcome, want) in table {
            assert_eq!(outcome.judge(expect), want, "{expect:?} {outcome:?}");
        }
    }

    fn attempt(outcome: Outcome) -> Attempt {
        Attempt {
            outcome,
            detail: format!("{outcome:?}"),
            code: None,
            elapsed_ms: 3,
        }
    }

    #[test]
    fn report_counts_and_round_trips() {
        let checks = [
            Check::blocked("metadata", Kind::Tcp, "169.254.169.254:80"),
            Check::blocked("gateway_port", Kind::Tcp, "10.213.0.1:2376"),
            Check::new("up", Kind::HttpProxy, "192.0.2.7:80", Expect::Reachable),
        ];
        let attempts = vec![
            attempt(Outcome::TimedOut),
            attempt(Outcome::Reached),
            attempt(Outcome::Reached),
        ];
        let report = Report::new(&checks, attempts);
        assert!(!report.passed);
        assert_eq!((report.pass_count, report.fail_count), (2, 1));
        let failed: Vec<_> = report.failures().map(|c| c.target.as_str()).collect();
        assert_eq!(failed, ["10.213.0.1:2376"]);
        let json = report.to_json();
        assert!(json.contains(r#""check":"gateway_port""#), "{json}");
        assert!(json.contains(r#""expect":"blocked""#), "{json}");
        assert!(json.contains(r#""result":"fail""#), "{json}");
        assert_eq!(Report::from_json(&json).unwrap(), report);
    }

    #[test]
    fn refusal_codes_decide_proxy_checks() {
        use Outcome::*;
        use Verdict::{Fail, Pass};
        let codes = vec!["infrastructure".to_owned(), "dns_failed".to_owned()];
        let table = [
            (Denied, Some("infrastructure"), Pass),
            (Denied, Some("dns_failed"), Pass),
            (Denied, Some("private"), Fail),
            (Denied, None, Fail),
            (Reached, None, Fail),
            (TimedOut, None, Fail),
            (Refused, None, Fail),
            (Leaked, Some("infrastructure"), Fail),
            (Error, None, Fail),
        ];
        for (outcome, code, want) in table {
            let got = outcome.judge_refusal(Expect::Blocked, &codes, code);
            assert_eq!(got, want, "{outcome:?} {code:?}");
        }
        assert_eq!(
            Leaked.judge(Expect::Blocked),
            Fail,
            "a leak fails any check"
        );
    }

    #[test]
    fn labels_replace_targets_in_the_report() {
        let check = Check::refused(
            "proxy_to_neighbour",
            "10.213.0.11:8080",
            &["infrastructure"],
        )
        .labelled("neighbour-1:8080");
        let mut denied = attempt(Outcome::Denied);
        denied.code = Some("infrastructure".to_owned());
        let report = Report::new(&[check], vec![denied]);
        assert!(report.passed);
        let json = report.to_json();
        assert!(!json.contains("10.213.0.11"), "{json}");
        assert!(json.contains(r#""target":"neighbour-1:8080""#), "{json}");
        assert!(json.contains(r#""code":"infrastructure""#), "{json}");
    }

    #[test]
    fn an_empty_report_does_not_pass() {
        let report = Report::new(&[], Vec::new());
        assert!(!report.passed);
    }
}
