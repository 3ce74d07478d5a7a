//! Failed-login throttling, in memory: at most [`MAX_FAILURES`] failures per account and per
//! source address within [`WINDOW`]; past that, logins for that key answer 429 with
//! `Retry-After` until the oldest failure leaves the window. Every attempt counts as a failure
//! until it succeeds, so a burst of parallel guesses is cut off at the limit too. The maps are
//! bounded by pruning expired entries when they grow, and the lock is never held across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
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
    /// Counts one login attempt against the account and the source, unless either is locked
    /// out: then `Err(seconds to wait)` and nothing is counted. The check and the count are
    /// one step under the lock, so parallel guesses cannot all slip past the check while the
    /// first ones are still being verified; a successful login takes its count back
    /// ([`LoginThrottle::succeeded`]).
    pub(crate) fn attempt(&self, email: &str, source: Option<IpAddr>) -> Result<(), u64> {
        self.attempt_at(email, source, Instant::now())
    }

    /// A successful login: clears the account's failures and takes back the source's count
    /// for this attempt.
    pub(crate) fn succeeded(&self, email: &str, source: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&Key::Account(normalize(email)));
        if let Some(source) = source {
            let key = Key::Source(source);
            if let Some(log) = map.get_mut(&key) {
                log.pop_back();
                if log.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }

    fn attempt_at(&self, email: &str, source: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= PRUNE_AT {
            map.retain(|_, log| {
                trim(log, now);
                !log.is_empty()
            });
        }
        let wait = keys(email, source)
            .filter_map(|key| {
                let log = map.get_mut(&key)?;
                trim(log, now);
                let oldest = *log.front()?;
                (log.len() >= MAX_FAILURES).then(|| wait_secs(oldest + WINDOW - now))
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for key in keys(email, source) {
            map.entry(key).or_default().push_back(now);
        }
        Ok(())
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
            assert_eq!(throttle.attempt_at("a@x", Some(ip), t0), Ok(()));
        }
        assert_eq!(throttle.attempt_at("A@x ", None, t0), Err(300));
        // The source is locked for other accounts too; other sources are not.
        assert_eq!(throttle.attempt_at("b@x", Some(ip), t0), Err(300));
        let other: IpAddr = [127, 0, 0, 2].into();
        assert_eq!(throttle.attempt_at("b@x", Some(other), t0), Ok(()));
        let later = t0 + Duration::from_secs(120);
        assert_eq!(throttle.attempt_at("a@x", None, later), Err(180));
        let after = t0 + WINDOW;
        assert_eq!(throttle.attempt_at("a@x", Some(ip), after), Ok(()));
    }

    #[test]
    fn success_takes_the_attempt_back() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(throttle.attempt("a@x", Some(ip)), Ok(()));
        }
        // Successful logins from the same source never lock it.
        for _ in 0..10 {
            assert_eq!(throttle.attempt("b@x", Some(ip)), Ok(()));
            throttle.succeeded("b@x", Some(ip));
        }
        assert_eq!(throttle.attempt("a@x", Some(ip)), Ok(()));
        assert!(throttle.attempt("a@x", None).is_err());
        throttle.succeeded("a@x", None);
        assert_eq!(throttle.attempt("a@x", None), Ok(()));
    }
}
