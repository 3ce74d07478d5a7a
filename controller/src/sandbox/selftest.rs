//! The isolation self-test's result and how a probe run is judged (DESIGN.md invariants 1, 2
//! and 5, proven from inside a sandbox). Running the probe is the sandbox service's
//! ([`crate::sandboxes::selftest`]); this module only decides what its output means.
//!
//! Invariant: only a report in which every check passed, from a probe that exited 0 or 1,
//! counts as `passed`; anything else the probe printed or did is `error`.

use std::str::FromStr;

use airlock_probe::Report;
use time::OffsetDateTime;

/// When the self-test runs at create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelftestMode {
    /// Run it and record the result; the sandbox keeps running whatever it says.
    Record,
    /// Run it; a result other than `passed` fails the create.
    Required,
}

/// How a self-test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelftestStatus {
    /// Every check passed.
    Passed,
    /// At least one check failed: a hole.
    Failed,
    /// The probe could not run or printed no report.
    Error,
}

/// A self-test result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selftest {
    /// How it ended.
    pub status: SelftestStatus,
    /// The sandbox generation it ran against.
    pub generation: i64,
    /// The probe's report, when it printed one.
    pub report: Option<Report>,
    /// Why it could not run, for [`SelftestStatus::Error`].
    pub message: Option<String>,
    /// When it ran.
    pub ran_at: OffsetDateTime,
}

// === impl SelftestStatus ===

impl SelftestStatus {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Error => "error",
        }
    }
}

impl FromStr for SelftestStatus {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "passed" => Ok(Self::Passed),
            "failed" => Ok(Self::Failed),
            "error" => Ok(Self::Error),
            _ => Err(()),
        }
    }
}

// === impl Selftest ===

impl Selftest {
    /// Judges what the probe printed and how it exited.
    pub fn from_output(
        generation: i64,
        exit_code: Option<i64>,
        output: (&[u8], &[u8]),
        ran_at: OffsetDateTime,
    ) -> Self {
        let (stdout, stderr) = output;
        let report = String::from_utf8_lossy(stdout)
            .lines()
            .rev()
            .find_map(|line| Report::from_json(line.trim()).ok());
        let (status, message) = match (&report, exit_code) {
            (Some(report), Some(0 | 1)) if report.passed => (SelftestStatus::Passed, None),
            (Some(_), Some(0 | 1)) => (SelftestStatus::Failed, None),
            (_, code) => {
                let stderr = String::from_utf8_lossy(stderr);
                let tail: String = stderr.chars().take(300).collect();
                let code = code.map_or_else(|| "none (killed)".to_owned(), |c| c.to_string());
                let message = format!("the probe printed no report (exit code {code}): {tail}");
                (SelftestStatus::Error, Some(message))
            }
        };
        Self {
            status,
            generation,
            report,
            message,
            ran_at,
        }
    }

    /// A run that could not happen or report, for `message`.
    pub fn error(generation: i64, message: String, ran_at: OffsetDateTime) -> Self {
        Self {
            status: SelftestStatus::Error,
            generation,
            report: None,
            message: Some(message),
            ran_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use airlock_probe::report::Attempt;
    use airlock_probe::{Check, Kind, Outcome};

    use super::*;

    fn report(outcome: Outcome) -> String {
        let checks = [Check::blocked("metadata", Kind::Tcp, "169.254.169.254:80")];
        let attempt = Attempt {
            outcome,
            detail: String::new(),
            code: None,
            elapsed_ms: 1,
        };
        Report::new(&checks, vec![attempt]).to_json()
    }

    #[test]
    fn probe_output_is_judged() {
        let passed = format!("{}\n", report(Outcome::TimedOut));
        let failed = format!("{}\n", report(Outcome::Reached));
        let table: [(Option<i64>, &str, SelftestStatus); 6] = [
            (Some(0), &passed, SelftestStatus::Passed),
            (Some(1), &failed, SelftestStatus::Failed),
            // A report that says it passed with a failing exit, or no exit at all, is not
            // trusted.
            (Some(137), &passed, SelftestStatus::Error),
            (None, &passed, SelftestStatus::Error),
            (Some(2), "", SelftestStatus::Error),
            (Some(0), "garbage\n", SelftestStatus::Error),
        ];
        let now = OffsetDateTime::now_utc();
        for (code, stdout, want) in table {
            let got = Selftest::from_output(3, code, (stdout.as_bytes(), b"usage"), now);
            assert_eq!(got.status, want, "{code:?} {stdout}");
            assert_eq!(got.generation, 3);
            assert_eq!(got.message.is_some(), want == SelftestStatus::Error);
        }
    }
}
