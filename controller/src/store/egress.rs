//! Network-plane rows (migration 0004): each sandbox's proxy entry (what the controller pushes
//! to the egress proxy, kept so a restarted proxy gets it again), the egress ledger, and the
//! ledger puller's cursor.
//!
//! Ledger inserts are idempotent by `(boot_id, seq)` and run in the same transaction as the
//! cursor update, so an event is stored exactly once however often a page is fetched again.

use std::net::IpAddr;

use time::OffsetDateTime;

use super::{with_db, Store, StoreError};
use crate::sandbox::SandboxId;

/// Replaces the sandbox's entry (same SQL text on both backends).
const UPSERT_ENTRY: &str = "INSERT INTO sandbox_egress \
    (sandbox_id, policy, policy_hash, generation, credential_hash, source_addr, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (sandbox_id) DO UPDATE SET policy = excluded.policy, \
    policy_hash = excluded.policy_hash, generation = excluded.generation, \
    credential_hash = excluded.credential_hash, source_addr = excluded.source_addr, \
    updated_at = excluded.updated_at";

const INSERT_EVENT: &str = "INSERT INTO egress_events (boot_id, seq, sandbox_id, generation, \
    method, host, port, addr, decision, reason, rule, bytes_up, bytes_down, start_ms, \
    duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
    ON CONFLICT (boot_id, seq) DO NOTHING";

const UPSERT_CURSOR: &str = "INSERT INTO egress_cursors (node, boot_id, seq) VALUES ($1, $2, $3) \
    ON CONFLICT (node) DO UPDATE SET boot_id = excluded.boot_id, seq = excluded.seq";

const EVENT_COLUMNS: &str = "boot_id, seq, sandbox_id, generation, method, host, port, addr, \
    decision, reason, rule, bytes_up, bytes_down, start_ms, duration_ms";

/// A sandbox's proxy entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressEntry {
    /// The sandbox.
    pub sandbox_id: SandboxId,
    /// The policy JSON (`None`: the default policy).
    pub policy: Option<String>,
    /// SHA-256 (hex) of the policy JSON as stored (of `null` for the default).
    pub policy_hash: String,
    /// The proxy-side generation; every policy update bumps it.
    pub generation: i64,
    /// SHA-256 (hex) of the sandbox's proxy token.
    pub credential_hash: String,
    /// The sandbox's source address.
    pub source_addr: IpAddr,
}

/// One ledger event, as stored and served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressEvent {
    /// The proxy process that recorded it.
    pub boot_id: String,
    /// Its sequence number in that process.
    pub seq: i64,
    /// The sandbox id as the proxy saw it.
    pub sandbox_id: String,
    /// The policy generation it was decided under.
    pub generation: i64,
    /// `CONNECT`, `GET`, ...
    pub method: String,
    /// The host as requested.
    pub host: String,
    /// The requested port.
    pub port: i64,
    /// The resolved address dialled or denied.
    pub addr: Option<String>,
    /// `allow`, `deny` or `would_deny`.
    pub decision: String,
    /// The reason code.
    pub reason: String,
    /// The rule that matched.
    pub rule: Option<String>,
    /// Bytes from the sandbox.
    pub bytes_up: i64,
    /// Bytes to the sandbox.
    pub bytes_down: i64,
    /// Start, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: i64,
}

/// A filter and page of the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressQuery {
    /// Only this decision.
    pub decision: Option<String>,
    /// Only this host (as requested).
    pub host: Option<String>,
    /// Events after this cursor `(start_ms, boot_id, seq)`.
    pub after: Option<(i64, String, i64)>,
    /// Page size.
    pub limit: u32,
}

/// Per-host totals of a sandbox's ledger.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HostSummary {
    /// The host as requested.
    pub host: String,
    /// Events.
    pub total: i64,
    /// Allowed.
    pub allowed: i64,
    /// Denied.
    pub denied: i64,
    /// Allowed in report mode although a rule would deny.
    pub would_deny: i64,
    /// Bytes from the sandbox.
    pub bytes_up: i64,
    /// Bytes to the sandbox.
    pub bytes_down: i64,
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    sandbox_id: uuid::Uuid,
    policy: Option<String>,
    policy_hash: String,
    generation: i64,
    credential_hash: String,
    source_addr: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    boot_id: String,
    seq: i64,
    sandbox_id: String,
    generation: i64,
    method: String,
    host: String,
    port: i64,
    addr: Option<String>,
    decision: String,
    reason: String,
    rule: Option<String>,
    bytes_up: i64,
    bytes_down: i64,
    start_ms: i64,
    duration_ms: i64,
}

// === impl Store ===

impl Store {
    /// Stores `entry` as the sandbox's proxy entry.
    pub async fn save_egress_entry(&self, entry: &EgressEntry) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        with_db!(self, |pool, _begin| {
            sqlx::query(UPSERT_ENTRY)
                .bind(entry.sandbox_id.as_uuid())
                .bind(entry.policy.as_deref())
                .bind(&entry.policy_hash)
                .bind(entry.generation)
                .bind(&entry.credential_hash)
                .bind(entry.source_addr.to_string())
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The sandbox's proxy entry, if it has one.
    pub async fn get_egress_entry(&self, id: SandboxId) -> Result<Option<EgressEntry>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EntryRow>(
                "SELECT sandbox_id, policy, policy_hash, generation, credential_hash, \
                 source_addr FROM sandbox_egress WHERE sandbox_id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        row.map(EntryRow::into_entry).transpose()
    }

    /// The entries of every sandbox that is not ended: what a restarted proxy must get back.
    pub async fn live_egress_entries(&self) -> Result<Vec<EgressEntry>, StoreError> {
        let rows = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EntryRow>(
                "SELECT e.sandbox_id, e.policy, e.policy_hash, e.generation, \
                 e.credential_hash, e.source_addr FROM sandbox_egress e \
                 JOIN sandboxes s ON s.id = e.sandbox_id \
                 WHERE s.observed_state IN ('creating', 'running', 'stopping')",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(EntryRow::into_entry).collect()
    }

    /// Replaces the sandbox's policy and bumps its generation; returns the new entry, or
    /// `None` when the sandbox has no entry.
    pub async fn update_egress_policy(
        &self,
        id: SandboxId,
        policy: Option<&str>,
        policy_hash: &str,
    ) -> Result<Option<EgressEntry>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EntryRow>(
                "UPDATE sandbox_egress SET policy = $2, policy_hash = $3, \
                 generation = generation + 1, updated_at = $4 WHERE sandbox_id = $1 \
                 RETURNING sandbox_id, policy, policy_hash, generation, credential_hash, \
                 source_addr",
            )
            .bind(id.as_uuid())
            .bind(policy)
            .bind(policy_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        row.map(EntryRow::into_entry).transpose()
    }

    /// The puller's cursor for `node`: the proxy boot id and the last stored seq.
    pub async fn egress_cursor(&self, node: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT boot_id, seq FROM egress_cursors WHERE node = $1",
            )
            .bind(node)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Stores a page of events and moves the cursor to `(boot_id, seq)`, in one transaction.
    /// Events already stored are skipped.
    pub async fn store_egress_events(
        &self,
        node: &str,
        events: &[EgressEvent],
        boot_id: &str,
        seq: i64,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            for e in events {
                sqlx::query(INSERT_EVENT)
                    .bind(&e.boot_id)
                    .bind(e.seq)
                    .bind(&e.sandbox_id)
                    .bind(e.generation)
                    .bind(&e.method)
                    .bind(&e.host)
                    .bind(e.port)
                    .bind(e.addr.as_deref())
                    .bind(&e.decision)
                    .bind(&e.reason)
                    .bind(e.rule.as_deref())
                    .bind(e.bytes_up)
                    .bind(e.bytes_down)
                    .bind(e.start_ms)
                    .bind(e.duration_ms)
                    .execute(&mut *tx)
                    .await?;
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

    /// One page of `sandbox`'s ledger, oldest first.
    pub async fn list_egress_events(
        &self,
        sandbox: SandboxId,
        query: &EgressQuery,
    ) -> Result<Vec<EgressEvent>, StoreError> {
        let (after_ms, after_boot, after_seq) =
            query
                .after
                .clone()
                .unwrap_or((i64::MIN, String::new(), i64::MIN));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM egress_events WHERE sandbox_id = $1 \
             AND ($2 IS NULL OR decision = $2) AND ($3 IS NULL OR host = $3) \
             AND (start_ms > $4 OR (start_ms = $4 AND (boot_id > $5 \
             OR (boot_id = $5 AND seq > $6)))) \
             ORDER BY start_ms, boot_id, seq LIMIT $7"
        );
        let rows = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EventRow>(&sql)
                .bind(sandbox.to_string())
                .bind(query.decision.as_deref())
                .bind(query.host.as_deref())
                .bind(after_ms)
                .bind(&after_boot)
                .bind(after_seq)
                .bind(i64::from(query.limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(EventRow::into_event).collect())
    }

    /// Per-host totals of `sandbox`'s ledger, busiest first.
    pub async fn egress_summary(&self, sandbox: SandboxId) -> Result<Vec<HostSummary>, StoreError> {
        Ok(with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, HostSummary>(
                "SELECT host, COUNT(*) AS total, \
                 SUM(CASE WHEN decision = 'allow' THEN 1 ELSE 0 END) AS allowed, \
                 SUM(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denied, \
                 SUM(CASE WHEN decision = 'would_deny' THEN 1 ELSE 0 END) AS would_deny, \
                 CAST(SUM(bytes_up) AS BIGINT) AS bytes_up, \
                 CAST(SUM(bytes_down) AS BIGINT) AS bytes_down \
                 FROM egress_events WHERE sandbox_id = $1 GROUP BY host \
                 ORDER BY COUNT(*) DESC, host",
            )
            .bind(sandbox.to_string())
            .fetch_all(pool)
            .await?
        }))
    }
}

// === impl EntryRow ===

impl EntryRow {
    fn into_entry(self) -> Result<EgressEntry, StoreError> {
        let source_addr = self.source_addr.parse().map_err(|_invalid| {
            StoreError::corrupt("sandbox_egress.source_addr", &self.source_addr)
        })?;
        Ok(EgressEntry {
            sandbox_id: SandboxId::from_uuid(self.sandbox_id),
            policy: self.policy,
            policy_hash: self.policy_hash,
            generation: self.generation,
            credential_hash: self.credential_hash,
            source_addr,
        })
    }
}

// === impl EventRow ===

impl EventRow {
    fn into_event(self) -> EgressEvent {
        EgressEvent {
            boot_id: self.boot_id,
            seq: self.seq,
            sandbox_id: self.sandbox_id,
            generation: self.generation,
            method: self.method,
            host: self.host,
            port: self.port,
            addr: self.addr,
            decision: self.decision,
            reason: self.reason,
            rule: self.rule,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            start_ms: self.start_ms,
            duration_ms: self.duration_ms,
        }
    }
}
