//! Sandbox timeouts, decided purely from the clock and the stored sandbox.
//!
//! The absolute `timeout_s` counts from the create request (the row's `created_at`; the
//! container starts about 0.3 s later). It is enforced by the reconciler's timeout tick
//! ([`crate::reconcile::ReconcileSettings::timeout_poll`], 1 s by default; no environment
//! variable yet), so a sandbox ends at most one tick after its deadline. The end is recorded
//! *before* the container is stopped, so a concurrent `wait` or `stop` sees `timeout`, not
//! `stopped`; a container that survives a failed stop is stopped again by the next full pass
//! (an ended sandbox's container must not run).
//!
//! `idle_timeout_s` is not enforced yet: it needs the last output/exec time from the logs and
//! exec paths.

use std::time::Duration;

use time::OffsetDateTime;

use crate::reconcile::plan::SandboxView;
use crate::sandbox::EndReason;

/// When a sandbox created at `created_at` with `timeout` must end.
pub fn deadline(created_at: OffsetDateTime, timeout: Duration) -> OffsetDateTime {
    created_at.saturating_add(time::Duration::try_from(timeout).unwrap_or(time::Duration::MAX))
}

/// The end reason, when the sandbox's absolute deadline has passed at `now`.
pub fn expired(sandbox: &SandboxView, now: OffsetDateTime) -> Option<EndReason> {
    (now >= sandbox.deadline).then_some(EndReason::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_adds_the_timeout_and_saturates() {
        let at = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            deadline(at, Duration::from_secs(2)),
            at + time::Duration::seconds(2)
        );
        assert!(deadline(at, Duration::MAX) > at + time::Duration::days(365 * 1000));
    }
}
