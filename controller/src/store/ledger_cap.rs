//! The per-sandbox ledger cap. A sandbox keeps at most `cap` individual ledger rows; the
//! events past the cap are folded into *summary rows* (the `count` column a proxy's own
//! summary rows use), one per `(method, host, port, decision, reason)`, whose `count`,
//! `bytes_up` and `bytes_down` add up exactly. A sandbox gets at most [`MAX_SUMMARY_ROWS`]
//! such keys; past them events fold into one row per decision (host `*`), so one sandbox
//! holds at most `cap + MAX_SUMMARY_ROWS + 3` rows however many distinct hosts it tries.
//! A request row of an inspected tunnel folds its count but not its bytes, which its tunnel's
//! row carries (see `Store::egress_summary`).
//!
//! Summary rows carry the boot id [`SUMMARY_BOOT`] and a sequence number of their own; the
//! cap check, the inserts and the folding run in the page's transaction, so they are as
//! exactly-once as the page itself.

use std::collections::BTreeMap;

use super::egress::{insert_events_sql, EgressEvent, UPSERT_CURSOR};
use super::{with_db, Store, StoreError};

/// The boot id of the controller's summary rows (a proxy's boot ids are random hex).
pub const SUMMARY_BOOT: &str = "summary";
/// Most distinct summary keys per sandbox before events fold per decision only.
pub const MAX_SUMMARY_ROWS: i64 = 1_000;

/// The fold key of an event past the cap.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FoldKey {
    method: String,
    host: String,
    port: i64,
    decision: &'static str,
    reason: String,
}

/// What the folded events of one key add up to.
#[derive(Clone, Debug)]
struct Folded {
    first: EgressEvent,
    count: i64,
    bytes_up: i64,
    bytes_down: i64,
    end_ms: i64,
}

// === impl Store ===

impl Store {
    /// Stores a page of events and moves the cursor, like [`Store::store_egress_events`],
    /// keeping each sandbox within `cap` individual rows (see the module doc).
    pub async fn store_egress_events_capped(
        &self,
        node: &str,
        events: &[EgressEvent],
        boot_id: &str,
        seq: i64,
        cap: u64,
    ) -> Result<(), StoreError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let batch = self.event_batch();
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let mut keep: Vec<&EgressEvent> = Vec::with_capacity(events.len());
            let mut past: BTreeMap<String, Vec<&EgressEvent>> = BTreeMap::new();
            let mut room: BTreeMap<&str, i64> = BTreeMap::new();
            for event in events {
                let left = match room.get_mut(event.sandbox_id.as_str()) {
                    Some(left) => left,
                    None => {
                        let used: i64 = if cap == i64::MAX {
                            0
                        } else {
                            sqlx::query_scalar(
                                "SELECT COUNT(*) FROM egress_events WHERE sandbox_id = $1 \
                                 AND boot_id <> $2",
                            )
                            .bind(&event.sandbox_id)
                            .bind(SUMMARY_BOOT)
                            .fetch_one(&mut *tx)
                            .await?
                        };
                        room.entry(event.sandbox_id.as_str())
                            .or_insert(cap.saturating_sub(used))
                    }
                };
                if *left > 0 {
                    *left -= 1;
                    keep.push(event);
                } else {
                    past.entry(event.sandbox_id.clone())
                        .or_default()
                        .push(event);
                }
            }
            for chunk in keep.chunks(batch) {
                let sql = insert_events_sql(chunk.len());
                let mut query = sqlx::query(&sql);
                for e in chunk {
                    query = query
                        .bind(&e.boot_id)
                        .bind(e.seq)
                        .bind(&e.sandbox_id)
                        .bind(e.generation)
                        .bind(&e.method)
                        .bind(&e.host)
                        .bind(e.port)
                        .bind(e.addr.as_deref())
                        .bind(e.decision.as_str())
                        .bind(&e.reason)
                        .bind(e.rule.as_deref())
                        .bind(e.bytes_up)
                        .bind(e.bytes_down)
                        .bind(e.start_ms)
                        .bind(e.duration_ms)
                        .bind(e.ceiling.as_deref())
                        .bind(e.count)
                        .bind(e.tunnel)
                        .bind(e.path.as_deref())
                        .bind(e.status)
                        .bind(e.credential.as_deref())
                        .bind(e.mode.as_deref());
                }
                query.execute(&mut *tx).await?;
            }
            for (sandbox, folded) in past {
                let mut keys: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM egress_events WHERE sandbox_id = $1 AND boot_id = $2",
                )
                .bind(&sandbox)
                .bind(SUMMARY_BOOT)
                .fetch_one(&mut *tx)
                .await?;
                for (key, sum) in fold(&folded) {
                    let mut key = key;
                    let updated = loop {
                        let updated = sqlx::query(
                            "UPDATE egress_events SET count = count + $1, \
                             bytes_up = bytes_up + $2, bytes_down = bytes_down + $3, \
                             duration_ms = CASE WHEN $4 - start_ms > duration_ms \
                             THEN $4 - start_ms ELSE duration_ms END \
                             WHERE boot_id = $5 AND sandbox_id = $6 AND method = $7 \
                             AND host = $8 AND port = $9 AND decision = $10 AND reason = $11",
                        )
                        .bind(sum.count)
                        .bind(sum.bytes_up)
                        .bind(sum.bytes_down)
                        .bind(sum.end_ms)
                        .bind(SUMMARY_BOOT)
                        .bind(&sandbox)
                        .bind(&key.method)
                        .bind(&key.host)
                        .bind(key.port)
                        .bind(key.decision)
                        .bind(&key.reason)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if updated > 0 || keys < MAX_SUMMARY_ROWS || key.host == "*" {
                            break updated;
                        }
                        key = overflow_key(key.decision);
                    };
                    if updated > 0 {
                        continue;
                    }
                    let next: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM egress_events WHERE boot_id = $1",
                    )
                    .bind(SUMMARY_BOOT)
                    .fetch_one(&mut *tx)
                    .await?;
                    let first = &sum.first;
                    let detail = key.host != "*";
                    sqlx::query(&insert_events_sql(1))
                        .bind(SUMMARY_BOOT)
                        .bind(next)
                        .bind(&sandbox)
                        .bind(first.generation)
                        .bind(&key.method)
                        .bind(&key.host)
                        .bind(key.port)
                        .bind(first.addr.as_deref().filter(|_| detail))
                        .bind(key.decision)
                        .bind(&key.reason)
                        .bind(first.rule.as_deref().filter(|_| detail))
                        .bind(sum.bytes_up)
                        .bind(sum.bytes_down)
                        .bind(first.start_ms)
                        .bind(sum.end_ms - first.start_ms)
                        .bind(first.ceiling.as_deref())
                        .bind(sum.count)
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(None::<&str>)
                        .execute(&mut *tx)
                        .await?;
                    keys += 1;
                }
            }
            sqlx::query(UPSERT_CURSOR)
                .bind(node)
                .bind(boot_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// The key every event folds into once a sandbox has [`MAX_SUMMARY_ROWS`] keys.
fn overflow_key(decision: &'static str) -> FoldKey {
    FoldKey {
        method: "*".to_owned(),
        host: "*".to_owned(),
        port: 0,
        decision,
        reason: "*".to_owned(),
    }
}

/// Sums `events` per fold key, in key order.
fn fold(events: &[&EgressEvent]) -> BTreeMap<FoldKey, Folded> {
    let mut sums: BTreeMap<FoldKey, Folded> = BTreeMap::new();
    for e in events {
        let key = FoldKey {
            method: e.method.clone(),
            host: e.host.clone(),
            port: e.port,
            decision: e.decision.as_str(),
            reason: e.reason.clone(),
        };
        let end = e.start_ms.saturating_add(e.duration_ms);
        let sum = sums.entry(key).or_insert_with(|| Folded {
            first: (*e).clone(),
            count: 0,
            bytes_up: 0,
            bytes_down: 0,
            end_ms: end,
        });
        sum.count = sum.count.saturating_add(e.count);
        sum.end_ms = sum.end_ms.max(end);
        // A request row inside an inspected tunnel: its bytes are in its tunnel's row.
        if e.status.is_none() {
            sum.bytes_up = sum.bytes_up.saturating_add(e.bytes_up);
            sum.bytes_down = sum.bytes_down.saturating_add(e.bytes_down);
        }
    }
    sums
}
