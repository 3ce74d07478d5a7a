//! `airlock-probe`: the isolation self-test. It runs inside a sandbox's network namespace
//! (the controller starts it with `network_mode: container:<sandbox>`) and tries every path
//! out that DESIGN.md invariants 1, 2 and 5 forbid, plus the one path that must work (the
//! upstream through the egress proxy), and reports each attempt.
//!
//! Layout: [`plan`] (what to try, pure), [`report`] (how each attempt is judged, pure),
//! [`attempt`] (the only network code). The binary (`main.rs`) reads a plan from `--plan` or
//! `AIRLOCK_PROBE_PLAN`, runs it and prints one JSON report on stdout.
//!
//! Invariants:
//! - A `blocked` check passes only when nothing answered; a `reachable` check only when the
//!   attempt succeeded; an attempt that could not be made fails either way.
//! - The probe never resolves a name except in the `dns_lookup` check, and never retries.
//! - Run it only where a packet that gets out has nowhere to go (a real sandbox, or a sealed
//!   test network): its plan asks for metadata and private addresses on purpose.

pub mod attempt;
pub mod plan;
pub mod report;

pub use plan::{Check, Expect, Kind, Plan, PlanError, Targets};
pub use report::{CheckResult, Outcome, Report, Verdict};

/// The environment variable holding the plan (JSON).
pub const ENV_PLAN: &str = "AIRLOCK_PROBE_PLAN";
