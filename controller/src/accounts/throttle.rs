//! Failed-login throttling, in memory, built so that it cannot be turned against an account's
//! owner: nothing locks an account; what slows down is a *source* that has already failed.
//!
//! - Per source address: at most [`SOURCE_MAX`] attempts not proven good within [`WINDOW`],
//!   whatever the accounts; past that, that address answers 429 until its oldest attempt
//!   leaves the window (password spraying from one address).
//! - Per account, a growing delay: after [`FREE_FAILURES`] failures within the window, each
//!   further failure pushes the account's next permitted attempt out by twice as long as the
//!   last (1 s, 2 s, 4 s, … up to [`MAX_DELAY`]). The delay binds only sources that have
//!   already failed against this account within the window: a source with no failure against
//!   it (the owner at their own machine while an attacker hammers from elsewhere) is never
//!   refused by it, so the right password from a new source always gets through.
//!
//! Every attempt counts as a failure when it begins (so a burst of parallel guesses meets the
//! limits too) and a successful login takes its own count back. The client address is the
//! one the API believes (`AIRLOCK_TRUSTED_PROXIES` decides whether `X-Forwarded-For` is).
//! The maps are pruned of expired entries when they grow, and the lock is never held across
//! an `.await`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The sliding window every count lives in.
pub(crate) const WINDOW: Duration = Duration::from_secs(900);
/// Attempts one source may have pending within [`WINDOW`], over all accounts.
pub(crate) const SOURCE_MAX: usize = 30;
/// Failures an account takes before the delay starts.
pub(crate) const FREE_FAILURES: usize = 3;
/// The first delay; each further failure doubles it.
const BASE_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(300);
/// Entries kept before expired ones are pruned.
const PRUNE_AT: usize = 10_000;

/// One account's failures and the earliest next attempt for the sources that caused them.
#[derive(Debug, Default)]
struct Account {
    failures: VecDeque<Instant>,
    next_at: Option<Instant>,
}

/// The failure logs.
#[derive(Debug, Default)]
struct Logs {
    accounts: HashMap<String, Account>,
    sources: HashMap<IpAddr, VecDeque<Instant>>,
    /// A source's pending failures against an account, and the last one's time.
    pairs: HashMap<(String, IpAddr), (u32, Instant)>,
}

/// The throttle.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    logs: Mutex<Logs>,
}

// === impl LoginThrottle ===

impl LoginThrottle {
    /// Counts one login attempt, unless the source is over its limit or has failed against
    /// this account and the account's delay has not passed: then `Err(seconds to wait)` and
    /// nothing is counted.
    pub(crate) fn attempt(&self, email: &str, source: Option<IpAddr>) -> Result<(), u64> {
        self.attempt_at(email, source, Instant::now())
    }

    /// A successful login takes back the count of its attempt (and only that: an attacker's
    /// failures against the account keep their delay). So does an attempt that was never
    /// judged (the argon2 gate was full).
    pub(crate) fn succeeded(&self, email: &str, source: Option<IpAddr>) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let email = normalize(email);
        if let Some(account) = logs.accounts.get_mut(&email) {
            account.failures.pop_back();
            if account.failures.is_empty() {
                logs.accounts.remove(&email);
            }
        }
        if let Some(source) = source {
            let key = (email, source);
            if let Some((count, _)) = logs.pairs.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    logs.pairs.remove(&key);
                }
            }
            if let Some(log) = logs.sources.get_mut(&source) {
                log.pop_back();
                if log.is_empty() {
                    logs.sources.remove(&source);
                }
            }
        }
    }

    fn attempt_at(&self, email: &str, source: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let mut guard = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let logs = &mut *guard;
        logs.prune(now);
        let email = normalize(email);
        if let Some(source) = source {
            let log = logs.sources.entry(source).or_default();
            trim(log, now);
            if log.len() >= SOURCE_MAX {
                let oldest = log.front().copied().unwrap_or(now);
                return Err(wait_secs(oldest + WINDOW - now));
            }
        }
        // An attempt with no address counts as coming from a source that failed before.
        let failed_before = source.is_none_or(|source| {
            logs.pairs
                .get(&(email.clone(), source))
                .is_some_and(|(_, at)| *at + WINDOW > now)
        });
        let account = logs.accounts.entry(email.clone()).or_default();
        trim(&mut account.failures, now);
        if failed_before {
            if let Some(next_at) = account.next_at.filter(|at| *at > now) {
                return Err(wait_secs(next_at - now));
            }
        }
        account.failures.push_back(now);
        account.next_at = Some(now + delay(account.failures.len()));
        if let Some(source) = source {
            logs.sources.entry(source).or_default().push_back(now);
            let pair = logs.pairs.entry((email, source)).or_insert((0, now));
            *pair = (pair.0 + 1, now);
        }
        Ok(())
    }
}

/// The delay after `failures` failures within the window.
pub(crate) fn delay(failures: usize) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - FREE_FAILURES)
        .unwrap_or(u32::MAX)
        .min(16);
    (BASE_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

// === impl Logs ===

impl Logs {
    fn prune(&mut self, now: Instant) {
        if self.accounts.len() >= PRUNE_AT {
            self.accounts.retain(|_, account| {
                trim(&mut account.failures, now);
                !account.failures.is_empty() || account.next_at.is_some_and(|at| at > now)
            });
        }
        if self.sources.len() >= PRUNE_AT {
            self.sources.retain(|_, log| {
                trim(log, now);
                !log.is_empty()
            });
        }
        if self.pairs.len() >= PRUNE_AT {
            self.pairs.retain(|_, (_, at)| *at + WINDOW > now);
        }
    }
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
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some([10, 0, 0, last].into())
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let delays: Vec<u64> = (0..14).map(|n| delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        );
    }

    #[test]
    fn a_hammered_account_still_admits_a_new_source() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        let attacker = ip(1);
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.attempt_at("admin@x", attacker, t0), Ok(()));
        }
        // The attacker waits a growing delay between guesses.
        assert_eq!(throttle.attempt_at("admin@x", attacker, t0), Err(1));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(throttle.attempt_at("admin@x", attacker, t1), Ok(()));
        assert_eq!(throttle.attempt_at("admin@x", attacker, t1), Err(2));
        // A source that never failed against the account is let through at once, and its
        // success takes its count back.
        assert_eq!(throttle.attempt_at("ADMIN@x ", ip(2), t1), Ok(()));
        throttle.succeeded("admin@x", ip(2));
        assert_eq!(throttle.attempt_at("admin@x", ip(2), t1), Ok(()));
        // The owner's success does not reset the attacker's delay.
        assert!(throttle.attempt_at("admin@x", attacker, t1).is_err());
        // Without an address, an attempt is treated as from a source that failed.
        assert!(throttle.attempt_at("admin@x", None, t1).is_err());
        // The window forgets everything.
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(throttle.attempt_at("admin@x", attacker, later), Ok(()));
    }

    #[test]
    fn one_source_spraying_many_accounts_is_cut_off() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for n in 0..SOURCE_MAX {
            assert_eq!(throttle.attempt_at(&format!("u{n}@x"), ip(1), t0), Ok(()));
        }
        assert_eq!(throttle.attempt_at("other@x", ip(1), t0), Err(900));
        assert_eq!(throttle.attempt_at("other@x", ip(2), t0), Ok(()));
    }
}
