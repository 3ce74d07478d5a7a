//! The retention loop beside the reconciler: keeps the tables that grow with use bounded.
//! Each pass removes, in bounded batches, ledger rows older than `AIRLOCK_LEDGER_RETENTION`
//! whose sandbox is gone (deleted or ended), and sessions that have expired. The ledger's
//! per-sandbox cap is enforced at insert (see `Store::store_egress_events_capped`), the
//! secrets quota at each put, and the audit trail only shrinks through
//! `airlock admin audit prune`.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::store::{Store, StoreError};

/// Time between passes.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// Rows one delete statement removes at most.
pub const BATCH: u32 = 1_000;
/// Sandbox ids one ledger batch looks at.
pub const SANDBOXES_PER_BATCH: u32 = 64;
/// Batches per table per pass, so a pass ends even on a huge backlog (the next one goes on).
pub const BATCHES_PER_PASS: u32 = 100;

/// What one pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Ledger rows.
    pub ledger: u64,
    /// Sessions.
    pub sessions: u64,
}

/// The retention loop.
#[derive(Clone, Debug)]
pub struct Retention {
    store: Store,
    ledger_retention: Duration,
}

// === impl Retention ===

impl Retention {
    /// Retention over `store`, keeping ledger rows of gone sandboxes for `ledger_retention`.
    pub fn new(store: Store, ledger_retention: Duration) -> Self {
        Self {
            store,
            ledger_retention,
        }
    }

    /// Runs a pass every [`INTERVAL`] (the first at once) until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => match self.pass(OffsetDateTime::now_utc()).await {
                    Ok(removed) if removed != Removed::default() => info!(
                        retention.ledger = removed.ledger,
                        retention.sessions = removed.sessions,
                        "Retention pass removed rows"
                    ),
                    Ok(_) => debug!("Retention pass: nothing to remove"),
                    Err(error) => warn!(%error, "Retention pass failed; retrying next interval"),
                },
            }
        }
    }

    /// One pass as of `now`: at most [`BATCHES_PER_PASS`] batches per table.
    pub async fn pass(&self, now: OffsetDateTime) -> Result<Removed, StoreError> {
        let mut removed = Removed::default();
        let retention = i64::try_from(self.ledger_retention.as_millis()).unwrap_or(i64::MAX);
        let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let cutoff_ms = now_ms.saturating_sub(retention);
        let mut after: Option<String> = None;
        for _ in 0..BATCHES_PER_PASS {
            let batch = self
                .store
                .prune_ledger(cutoff_ms, after.as_deref(), SANDBOXES_PER_BATCH, BATCH)
                .await?;
            removed.ledger += batch.deleted;
            match batch.next {
                Some(next) => after = Some(next),
                // The last sandbox ids: start over while the previous round deleted anything.
                None if batch.deleted > 0 => after = None,
                None => break,
            }
        }
        for _ in 0..BATCHES_PER_PASS {
            let purged = self.store.purge_expired_sessions(now, BATCH).await?;
            removed.sessions += purged;
            if purged < u64::from(BATCH) {
                break;
            }
        }
        Ok(removed)
    }
}
