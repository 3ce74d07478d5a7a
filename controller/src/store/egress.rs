//! Network-plane rows (migration 0004): each sandbox's proxy entry (what the controller pushes
//! to the egress proxy, kept so a restarted proxy gets it again), the egress ledger, and the
//! ledger puller's cursor.
//!
//! Ledger inserts are idempotent by `(boot_id, seq)` and run in the same transaction as the
//! cursor update, so an event is stored exactly once however often a page is fetched again.
//! A page is inserted with multi-row statements (see [`event_batch`]), which keeps the drain
//! far ahead of what one flooding sandbox can produce (measured in `tests/policy_store.rs`).

use std::net::IpAddr;

use airlock_wire::Outcome;
use time::OffsetDateTime;

use super::{with_db, Store, StoreError};
use crate::sandbox::SandboxId;

/// Replaces the sandbox's entry (same SQL text on both backends).
const UPSERT_ENTRY: &str = "INSERT INTO sandbox_egress \
    (sandbox_id, policy, policy_hash, generation, credential_hash, source_addr, updated_at, \
    ceiling) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (sandbox_id) DO UPDATE SET policy = excluded.policy, \
    policy_hash = excluded.policy_hash, generation = excluded.generation, \
    credential_hash = excluded.credential_hash, source_addr = excluded.source_addr, \
    updated_at = excluded.updated_at, ceiling = excluded.ceiling";

const ENTRY_COLUMNS: &str = "sandbox_id, policy, policy_hash, generation, credential_hash, \
    source_addr, ceiling";

/// Rows per multi-row ledger insert on Postgres: one round trip per 500 rows, 11,000 binds
/// (500 × 22 binds per row; the limit is 65,535).
pub const POSTGRES_EVENT_BATCH: usize = 500;
/// Rows per multi-row ledger insert on SQLite. Small on purpose: SQLite finds a `$N`
/// parameter's slot by a linear scan of the statement's parameter list, so binding costs
/// grow with the square of the binds per statement (500 rows ran at ~2,000 rows/s, 32
/// rows runs 5-6 times faster; 8 to 40 rows measure the same).
pub const SQLITE_EVENT_BATCH: usize = 32;

pub(super) const UPSERT_CURSOR: &str =
    "INSERT INTO egress_cursors (node, boot_id, seq) VALUES ($1, $2, $3) \
    ON CONFLICT (node) DO UPDATE SET boot_id = excluded.boot_id, seq = excluded.seq";

pub(super) const EVENT_COLUMNS: &str =
    "boot_id, seq, sandbox_id, generation, method, host, port, addr, \
    decision, reason, rule, bytes_up, bytes_down, start_ms, duration_ms, ceiling, count, \
    tunnel, path, status, credential, mode";

/// Binds per ledger row (the columns of [`EVENT_COLUMNS`]).
pub(super) const EVENT_BINDS: usize = 22;

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
    /// The label of the ceiling the policy was checked against (none before ceilings).
    pub ceiling: Option<String>,
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
    /// What happened; stored as [`Outcome::as_str`] and read back with its `FromStr`.
    pub decision: Outcome,
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
    /// The label of the ceiling the sandbox's policy was checked against.
    pub ceiling: Option<String>,
    /// How many refusals the row stands for (1 but for a proxy's summary row).
    pub count: i64,
    /// The inspected tunnel (with `boot_id`, one tunnel) of a tunnel row or a request row.
    pub tunnel: Option<i64>,
    /// A request row's canonical path (no query string).
    pub path: Option<String>,
    /// A request row's status (0: none was sent); `None` on every other row.
    pub status: Option<i64>,
    /// The name of the secret whose credential was added to the request.
    pub credential: Option<String>,
    /// `terminate` (or `gateway`) on inspected tunnels and their requests.
    pub mode: Option<String>,
}

/// A filter and page of the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressQuery {
    /// Only this decision.
    pub decision: Option<Outcome>,
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
    ceiling: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
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
    ceiling: Option<String>,
    count: i64,
    tunnel: Option<i64>,
    path: Option<String>,
    status: Option<i64>,
    credential: Option<String>,
    mode: Option<String>,
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
                .bind(entry.ceiling.as_deref())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The sandbox's proxy entry, if it has one.
    pub async fn get_egress_entry(&self, id: SandboxId) -> Result<Option<EgressEntry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM sandbox_egress WHERE sandbox_id = $1");
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EntryRow>(&sql)
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
                 e.credential_hash, e.source_addr, e.ceiling FROM sandbox_egress e \
                 JOIN sandboxes s ON s.id = e.sandbox_id \
                 WHERE s.observed_state IN ('creating', 'running', 'stopping')",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(EntryRow::into_entry).collect()
    }

    /// The entries of `owner`'s live sandboxes that have inspection material (bound
    /// credentials): the ones a change to one of `owner`'s secrets may concern.
    pub async fn live_inspected_entries(
        &self,
        owner: crate::accounts::user::UserId,
    ) -> Result<Vec<EgressEntry>, StoreError> {
        let rows = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EntryRow>(
                "SELECT e.sandbox_id, e.policy, e.policy_hash, e.generation, \
                 e.credential_hash, e.source_addr, e.ceiling FROM sandbox_egress e \
                 JOIN sandboxes s ON s.id = e.sandbox_id \
                 JOIN sandbox_inspection i ON i.sandbox_id = e.sandbox_id \
                 WHERE s.owner_id = $1 AND s.observed_state IN ('creating', 'running', 'stopping')",
            )
            .bind(owner.as_uuid())
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
        ceiling: Option<&str>,
    ) -> Result<Option<EgressEntry>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let sql = format!(
            "UPDATE sandbox_egress SET policy = $2, policy_hash = $3, \
             generation = generation + 1, updated_at = $4, ceiling = $5 WHERE sandbox_id = $1 \
             RETURNING {ENTRY_COLUMNS}"
        );
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, EntryRow>(&sql)
                .bind(id.as_uuid())
                .bind(policy)
                .bind(policy_hash)
                .bind(now)
                .bind(ceiling)
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
    /// Events already stored are skipped. No per-sandbox cap (see
    /// [`Store::store_egress_events_capped`]).
    pub async fn store_egress_events(
        &self,
        node: &str,
        events: &[EgressEvent],
        boot_id: &str,
        seq: i64,
    ) -> Result<(), StoreError> {
        self.store_egress_events_capped(node, events, boot_id, seq, u64::MAX)
            .await
    }

    /// Rows per multi-row ledger insert on this backend.
    pub fn event_batch(&self) -> usize {
        match self.backend() {
            super::Backend::Sqlite => SQLITE_EVENT_BATCH,
            super::Backend::Postgres => POSTGRES_EVENT_BATCH,
        }
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
                .bind(query.decision.as_ref().map(Outcome::as_str))
                .bind(query.host.as_deref())
                .bind(after_ms)
                .bind(&after_boot)
                .bind(after_seq)
                .bind(i64::from(query.limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// Per-host totals of `sandbox`'s ledger, busiest first. Every row counts as events, but
    /// bytes are summed over rows without a `status` only: a request row inside an inspected
    /// tunnel carries its own body bytes, and its tunnel's row already carries the tunnel's
    /// total (TLS included), so counting both would count the same bytes twice.
    pub async fn egress_summary(&self, sandbox: SandboxId) -> Result<Vec<HostSummary>, StoreError> {
        Ok(with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, HostSummary>(
                "SELECT host, CAST(SUM(count) AS BIGINT) AS total, \
                 CAST(SUM(CASE WHEN decision = 'allow' THEN count ELSE 0 END) AS BIGINT) \
                 AS allowed, \
                 CAST(SUM(CASE WHEN decision = 'deny' THEN count ELSE 0 END) AS BIGINT) \
                 AS denied, \
                 CAST(SUM(CASE WHEN decision = 'would_deny' THEN count ELSE 0 END) AS BIGINT) \
                 AS would_deny, \
                 CAST(SUM(CASE WHEN status IS NULL THEN bytes_up ELSE 0 END) AS BIGINT) \
                 AS bytes_up, \
                 CAST(SUM(CASE WHEN status IS NULL THEN bytes_down ELSE 0 END) AS BIGINT) \
                 AS bytes_down \
                 FROM egress_events WHERE sandbox_id = $1 GROUP BY host \
                 ORDER BY SUM(count) DESC, host",
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
            ceiling: self.ceiling,
        })
    }
}

// === impl EventRow ===

impl EventRow {
    fn into_event(self) -> Result<EgressEvent, StoreError> {
        let decision = self
            .decision
            .parse()
            .map_err(|_unknown| StoreError::corrupt("egress_events.decision", &self.decision))?;
        Ok(EgressEvent {
            boot_id: self.boot_id,
            seq: self.seq,
            sandbox_id: self.sandbox_id,
            generation: self.generation,
            method: self.method,
            host: self.host,
            port: self.port,
            addr: self.addr,
            decision,
            reason: self.reason,
            rule: self.rule,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            start_ms: self.start_ms,
            duration_ms: self.duration_ms,
            ceiling: self.ceiling,
            count: self.count,
            tunnel: self.tunnel,
            path: self.path,
            status: self.status,
            credential: self.credential,
            mode: self.mode,
        })
    }
}

/// `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING` for `rows` ledger rows.
pub(super) fn insert_events_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO egress_events ({EVENT_COLUMNS}) VALUES ");
    for row in 0..rows {
        let first = row * EVENT_BINDS + 1;
        let binds: Vec<String> = (first..first + EVENT_BINDS)
            .map(|n| format!("${n}"))
            .collect();
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&binds.join(", "));
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (boot_id, seq) DO NOTHING");
    sql
}
