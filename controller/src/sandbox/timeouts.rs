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
//! `idle_timeout_s` ends a sandbox with reason `idle` when it has shown no activity (new log
//! output or an exec) for that long. How activity is observed, and why:
//! - Exec is seen in-process: the service stamps the sandbox's
//!   [`crate::sandboxes::Activity`] when an exec
//!   starts and when it ends.
//! - Output is *not* watched continuously (the log follower stays lazy, so a sandbox nobody
//!   reads costs no open stream). Instead the timeout tick, when the in-memory last activity
//!   says a sandbox's idle deadline has passed, asks Docker for the newest log line since that
//!   time (`since` + `tail=1` + `timestamps`) and moves the activity forward to that line's
//!   timestamp. So a silent sandbox costs one cheap Docker call per tick once it is due, and a
//!   chatty one about one call per `idle_timeout_s`.
//! - Docker's json-file driver logs a line when it ends with a newline (or fills 16 KiB): a
//!   process that prints a partial line without a newline does not count as active.
//! - Activity lives in memory. After a controller restart every sandbox's idle clock starts
//!   again from the process start (`Activity::floor`), so a restart never ends a sandbox
//!   early; it may only end one up to one idle period late.

use std::time::Duration;

use time::OffsetDateTime;

use super::EndReason;

/// When a sandbox created at `created_at` with `timeout` must end.
pub fn deadline(created_at: OffsetDateTime, timeout: Duration) -> OffsetDateTime {
    created_at.saturating_add(time::Duration::try_from(timeout).unwrap_or(time::Duration::MAX))
}

/// The end reason, when the sandbox's absolute deadline has passed at `now`.
pub fn expired(deadline: OffsetDateTime, now: OffsetDateTime) -> Option<EndReason> {
    (now >= deadline).then_some(EndReason::Timeout)
}

/// `idle` when a sandbox whose last activity was at `last` and whose idle timeout is `idle`
/// has been idle too long at `now`; never without an idle timeout.
pub fn idle_expired(
    last: OffsetDateTime,
    idle: Option<Duration>,
    now: OffsetDateTime,
) -> Option<EndReason> {
    let idle = idle?;
    (now >= deadline(last, idle)).then_some(EndReason::Idle)
}

/// The latest of the sandbox's create time, the activity seen so far and the activity floor.
pub fn last_activity(
    created_at: OffsetDateTime,
    seen: Option<OffsetDateTime>,
    floor: OffsetDateTime,
) -> OffsetDateTime {
    seen.into_iter()
        .chain([floor])
        .fold(created_at, OffsetDateTime::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s)
    }

    #[test]
    fn deadline_adds_the_timeout_and_saturates() {
        let at = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            deadline(at, Duration::from_secs(2)),
            at + time::Duration::seconds(2)
        );
        assert!(deadline(at, Duration::MAX) > at + time::Duration::days(365 * 1000));
    }

    #[test]
    fn idle_ends_exactly_at_the_idle_deadline() {
        let two = Some(Duration::from_secs(2));
        let cases = [
            (at(0), two, at(1), None),
            (at(0), two, at(2) - time::Duration::milliseconds(1), None),
            (at(0), two, at(2), Some(EndReason::Idle)),
            (at(0), two, at(100), Some(EndReason::Idle)),
            (at(10), two, at(11), None),
            (at(0), None, at(1_000_000), None),
            (at(0), Some(Duration::MAX), at(1_000_000), None),
        ];
        for (last, idle, now, want) in cases {
            assert_eq!(idle_expired(last, idle, now), want, "{last} {idle:?} {now}");
        }
    }

    #[test]
    fn last_activity_is_the_latest_of_create_seen_and_floor() {
        assert_eq!(last_activity(at(5), None, at(1)), at(5));
        assert_eq!(last_activity(at(5), Some(at(9)), at(1)), at(9));
        assert_eq!(last_activity(at(5), Some(at(3)), at(1)), at(5));
        // After a restart, the floor (process start) wins over older activity.
        assert_eq!(last_activity(at(5), Some(at(9)), at(20)), at(20));
    }
}
