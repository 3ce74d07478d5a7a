//! Failed-login throttling, in memory: at most [`MAX_FAILURES`] failures per account and per
//! source address within [`WINDOW`]; past that, logins for that key answer 429 with
//! `Retry-After` until the oldest failure leaves the window. The maps are bounded by pruning
//! expired entries when they grow, and the lock is never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

/// Failures allowed per key within [`WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
/// The sliding window.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);
/// Entries kept before expired ones are pruned.
const PRUNE_AT: usize = 10_000;

/// What a failure is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Source(IpAddr),
}

/// The failure log.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

// === impl LoginThrottle ===

impl LoginThrottle {
    /// `Some(seconds)` to wait when the account or the source is locked out.
    pub(crate) fn retry_after(&self, email: &str, source: Option<IpAddr>) -> Option<u64> {
        self.retry_after_at(email, source, Instant::now())
    }

    /// Counts a failed login.
    pub(crate) fn failed(&self, email: &str, source: Option<IpAddr>) {
        self.failed_at(email, source, Instant::now());
    }

    fn retry_after_at(&self, email: &str, source: Option<IpAddr>, now: Instant) -> Option<u64> {
        let Ok(mut map) = self.failures.lock() else {
            return None;
        };
        keys(email, source)
            .filter_map(|key| {
                let log = map.get_mut(&key)?;
                trim(log, now);
                let oldest = *log.front()?;
                (log.len() >= MAX_FAILURES).then(|| wait_secs(oldest + WINDOW - now))
            })
            .max()
    }

    fn failed_at(&self, email: &str, source: Option<IpAddr>, now: Instant) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= PRUNE_AT {
            map.retain(|_, log| {
                trim(log, now);
                !log.is_empty()
            });
        }
        for key in keys(email, source) {
            let log = map.entry(key).or_default();
            trim(log, now);
            log.push_back(now);
        }
    }

    /// A successful login clears the account's failures (not the source's).
    pub(crate) fn succeeded(&self, email: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&Key::Account(normalize(email)));
        }
    }
}

fn keys(email: &str, source: Option<IpAddr>) -> impl Iterator<Item = Key> {
    std::iter::once(Key::Account(normalize(email))).chain(source.map(Key::Source))
}

fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

fn trim(log: &mut VecDeque<Instant>, now: Instant) {
    while log.front().is_some_and(|at| *at + WINDOW <= now) {
        log.pop_front();
    }
}

fn wait_secs(left: Duration) -> u64 {
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_five_failures_per_account_and_source() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..MAX_FAILURES {
            assert_eq!(throttle.retry_after_at("a@x", Some(ip), t0), None);
            throttle.failed_at("a@x", Some(ip), t0);
        }
        assert_eq!(throttle.retry_after_at("A@x ", None, t0), Some(300));
        // The source is locked for other accounts too; other sources are not.
        assert_eq!(throttle.retry_after_at("b@x", Some(ip), t0), Some(300));
        let other: IpAddr = [127, 0, 0, 2].into();
        assert_eq!(throttle.retry_after_at("b@x", Some(other), t0), None);
        let later = t0 + Duration::from_secs(120);
        assert_eq!(throttle.retry_after_at("a@x", None, later), Some(180));
        let after = t0 + WINDOW;
        assert_eq!(throttle.retry_after_at("a@x", Some(ip), after), None);
    }

    #[test]
    fn success_clears_the_account() {
        let throttle = LoginThrottle::default();
        for _ in 0..MAX_FAILURES {
            throttle.failed("a@x", None);
        }
        assert!(throttle.retry_after("a@x", None).is_some());
        throttle.succeeded("a@x");
        assert_eq!(throttle.retry_after("a@x", None), None);
    }
}
