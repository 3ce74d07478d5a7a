//! Aggregated rows for the noise a hostile client can make: failed and throttled logins, and
//! refused bearer tokens. Each event is counted in memory under (action, source, account,
//! minute); a bucket becomes ONE row, with its count and a breakdown by status, once its
//! minute is over ([`Tally::due`]) or at shutdown ([`Tally::drain`]). A flood therefore
//! writes at most one row per source and account a minute, and the table cannot be grown by
//! guessing.
//!
//! The buckets are bounded: past [`MAX_BUCKETS`] in one minute, further keys are counted into
//! one overflow bucket for that minute (source and account `*`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::accounts::user::UserId;
use crate::store::NewAuditRecord;

/// Buckets kept at once before new keys are folded into the overflow bucket.
pub const MAX_BUCKETS: usize = 10_000;

/// What one bucket is counted under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    minute: i64,
    action: &'static str,
    source: Option<IpAddr>,
    account: Option<String>,
}

/// One bucket's counts.
#[derive(Clone, Debug, Default)]
struct Bucket {
    by_status: BTreeMap<u16, u64>,
    user: Option<UserId>,
    last_status: u16,
}

/// The open buckets.
#[derive(Debug, Default)]
pub struct Tally {
    buckets: Mutex<HashMap<Key, Bucket>>,
}

/// One event to count.
#[derive(Clone, Debug)]
pub struct Noise<'a> {
    /// The action, e.g. `auth.login.failed`.
    pub action: &'static str,
    /// The client's address.
    pub source: Option<IpAddr>,
    /// The account named (an email), if any.
    pub account: Option<&'a str>,
    /// The account's id, when it exists.
    pub user: Option<UserId>,
    /// The status answered.
    pub status: u16,
}

// === impl Tally ===

impl Tally {
    /// Counts `noise` at `at`.
    pub fn count(&self, noise: &Noise<'_>, at: OffsetDateTime) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = Key {
            minute: minute(at),
            action: noise.action,
            source: noise.source,
            account: noise.account.map(str::to_owned),
        };
        if !buckets.contains_key(&key) && buckets.len() >= MAX_BUCKETS {
            key.source = None;
            key.account = Some("*".to_owned());
        }
        let bucket = buckets.entry(key).or_default();
        *bucket.by_status.entry(noise.status).or_default() += 1;
        bucket.user = bucket.user.or(noise.user);
        bucket.last_status = noise.status;
    }

    /// The rows of every bucket whose minute ended before `now`, removed from the tally.
    pub fn due(&self, now: OffsetDateTime) -> Vec<NewAuditRecord> {
        let current = minute(now);
        self.take(|key| key.minute < current)
    }

    /// The rows of every bucket, removed from the tally (at shutdown).
    pub fn drain(&self) -> Vec<NewAuditRecord> {
        self.take(|_| true)
    }

    fn take(&self, due: impl Fn(&Key) -> bool) -> Vec<NewAuditRecord> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<Key> = buckets.keys().filter(|key| due(key)).cloned().collect();
        let mut rows: Vec<(Key, Bucket)> = keys
            .into_iter()
            .filter_map(|key| buckets.remove_entry(&key))
            .collect();
        drop(buckets);
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter()
            .map(|(key, bucket)| row(key, bucket))
            .collect()
    }
}

fn row(key: Key, bucket: Bucket) -> NewAuditRecord {
    let count = bucket.by_status.values().sum();
    let breakdown: Vec<String> = bucket
        .by_status
        .iter()
        .map(|(status, n)| format!("{status}x{n}"))
        .collect();
    let start = OffsetDateTime::from_unix_timestamp(key.minute * 60)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    NewAuditRecord {
        user: bucket.user,
        token: None,
        action: key.action.to_owned(),
        object: key.account,
        source_ip: key.source.map(|ip| ip.to_string()),
        status: bucket.last_status,
        detail: Some(format!("minute {start}: {}", breakdown.join(", "))),
        count,
    }
}

fn minute(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(60)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn one_row_per_source_account_and_minute() {
        let tally = Tally::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let a: IpAddr = [10, 0, 0, 1].into();
        let noise = |status, source| Noise {
            action: "auth.login.failed",
            source: Some(source),
            account: Some("admin@x"),
            user: None,
            status,
        };
        for _ in 0..40 {
            tally.count(&noise(401, a), t0);
        }
        for _ in 0..60 {
            tally.count(&noise(429, a), t0);
        }
        tally.count(&noise(401, [10, 0, 0, 2].into()), t0);
        // Nothing is due while the minute runs.
        assert!(tally.due(t0).is_empty());
        let later = t0 + time::Duration::minutes(1);
        tally.count(&noise(401, a), later);
        let rows = tally.due(later);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].count, 100);
        assert_eq!(rows[0].source_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(rows[0].object.as_deref(), Some("admin@x"));
        assert!(rows[0]
            .detail
            .as_deref()
            .unwrap()
            .ends_with("401x40, 429x60"));
        assert_eq!(rows[1].count, 1);
        // The next minute's bucket waits for its minute, or for shutdown.
        assert_eq!(tally.drain().len(), 1);
    }

    #[test]
    fn buckets_are_bounded() {
        let tally = Tally::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for n in 0..(MAX_BUCKETS + 500) {
            let account = format!("u{n}@x");
            let noise = Noise {
                action: "auth.login.failed",
                source: None,
                account: Some(&account),
                user: None,
                status: 401,
            };
            tally.count(&noise, t0);
        }
        let rows = tally.drain();
        assert_eq!(rows.len(), MAX_BUCKETS + 1);
        let overflow = rows
            .iter()
            .find(|r| r.object.as_deref() == Some("*"))
            .unwrap();
        assert_eq!(overflow.count, 500);
    }
}
