//! Keeping every table bounded (migration 0010): ledger retention, expired sessions, the
//! audit prune, and the per-table sizes `airlock doctor` prints.
//!
//! Every delete here runs in bounded batches (`LIMIT` in a subquery), so one pass never holds
//! the write lock for long. The audit prune is the one path the append-only trigger lets
//! through: it inserts the single `audit_prune_grants` row, deletes, removes the grant and
//! appends its own audit row in one transaction, so no other connection ever sees a grant.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{with_db, NewAuditRecord, Store, StoreError};

/// The observed states of a sandbox that is gone for retention (ended).
const ENDED_STATES: [&str; 3] = ["exited", "failed", "lost"];

/// One table's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSize {
    /// The table.
    pub name: String,
    /// Its rows.
    pub rows: i64,
    /// Its bytes on disk with indexes, when the backend can say.
    pub bytes: Option<i64>,
}

/// The result of one ledger retention batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerPrune {
    /// Rows deleted.
    pub deleted: u64,
    /// Where the next batch resumes (`None`: start over from the first sandbox).
    pub next: Option<String>,
}

// === impl Store ===

impl Store {
    /// One retention batch over the ledger: for up to `sandboxes` sandbox ids after `after`
    /// (in id order) that have rows older than `cutoff_ms`, deletes up to `batch` of those
    /// rows per sandbox when the sandbox is gone (deleted, or ended: exited, failed, lost).
    /// Rows of live sandboxes stay, however old.
    pub async fn prune_ledger(
        &self,
        cutoff_ms: i64,
        after: Option<&str>,
        sandboxes: u32,
        batch: u32,
    ) -> Result<LedgerPrune, StoreError> {
        let ids: Vec<String> = with_db!(self, |pool, _begin| {
            sqlx::query_scalar(
                "SELECT DISTINCT sandbox_id FROM egress_events WHERE start_ms < $1 \
                 AND sandbox_id > $2 ORDER BY sandbox_id LIMIT $3",
            )
            .bind(cutoff_ms)
            .bind(after.unwrap_or(""))
            .bind(i64::from(sandboxes))
            .fetch_all(pool)
            .await?
        });
        let mut deleted = 0;
        for id in &ids {
            if !self.sandbox_gone(id).await? {
                continue;
            }
            deleted += with_db!(self, |pool, _begin| {
                sqlx::query(
                    "DELETE FROM egress_events WHERE (boot_id, seq) IN (SELECT boot_id, seq \
                     FROM egress_events WHERE sandbox_id = $1 AND start_ms < $2 LIMIT $3)",
                )
                .bind(id)
                .bind(cutoff_ms)
                .bind(i64::from(batch))
                .execute(pool)
                .await?
                .rows_affected()
            });
        }
        let next = (ids.len() == sandboxes as usize)
            .then(|| ids.last().cloned())
            .flatten();
        Ok(LedgerPrune { deleted, next })
    }

    /// Whether the ledger's `sandbox_id` names no live sandbox (an id that is no UUID, like
    /// the unattributed `-`, names none).
    async fn sandbox_gone(&self, id: &str) -> Result<bool, StoreError> {
        let Ok(uuid) = id.parse::<Uuid>() else {
            return Ok(true);
        };
        let state: Option<String> = with_db!(self, |pool, _begin| {
            sqlx::query_scalar("SELECT observed_state FROM sandboxes WHERE id = $1")
                .bind(uuid)
                .fetch_optional(pool)
                .await?
        });
        Ok(state.is_none_or(|s| ENDED_STATES.contains(&s.as_str())))
    }

    /// Deletes up to `batch` sessions that expired before `at`; returns how many.
    pub async fn purge_expired_sessions(
        &self,
        at: OffsetDateTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        Ok(with_db!(self, |pool, _begin| {
            sqlx::query(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE expires_at < $1 LIMIT $2)",
            )
            .bind(at)
            .bind(i64::from(batch))
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Deletes every audit row written before `before` and appends `record` (with the count
    /// in its detail), in one transaction; returns how many rows were deleted.
    pub async fn prune_audit(
        &self,
        before: OffsetDateTime,
        record: &NewAuditRecord,
    ) -> Result<u64, StoreError> {
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            // The grant and the delete compare in the trail's one text form (SQLite).
            sqlx::query("INSERT INTO audit_prune_grants (id, before) VALUES (1, $1)")
                .bind(super::audit::AuditAt(before))
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM audit WHERE at < $1")
                .bind(super::audit::AuditAt(before))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM audit_prune_grants")
                .execute(&mut *tx)
                .await?;
            let detail = match &record.detail {
                Some(detail) => format!("{detail}; deleted {deleted}"),
                None => format!("deleted {deleted}"),
            };
            let record = NewAuditRecord {
                detail: Some(detail),
                ..record.clone()
            };
            super::audit::insert_audit_on!(&mut *tx, &record);
            tx.commit().await?;
            Ok(deleted)
        })
    }

    /// Every application table with its row count and (Postgres, or SQLite built with
    /// `dbstat`) its size in bytes, by name.
    pub async fn table_sizes(&self) -> Result<Vec<TableSize>, StoreError> {
        let mut sizes = Vec::new();
        match &self.db {
            super::Db::Sqlite(pool) => {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
                )
                .fetch_all(pool)
                .await?;
                for name in names {
                    let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{name}\""))
                        .fetch_one(pool)
                        .await?;
                    // `dbstat` is optional in SQLite builds; without it the size is unknown.
                    let bytes: Option<i64> = sqlx::query_scalar(
                        "SELECT CAST(SUM(pgsize) AS INTEGER) FROM dbstat WHERE name = $1 \
                         OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = $1)",
                    )
                    .bind(&name)
                    .fetch_one(pool)
                    .await
                    .ok()
                    .flatten();
                    sizes.push(TableSize { name, rows, bytes });
                }
            }
            super::Db::Postgres(pool) => {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema() \
                     AND tablename <> '_sqlx_migrations' ORDER BY tablename",
                )
                .fetch_all(pool)
                .await?;
                for name in names {
                    let (rows, bytes): (i64, i64) = sqlx::query_as(&format!(
                        "SELECT COUNT(*), pg_total_relation_size('\"{name}\"') FROM \"{name}\""
                    ))
                    .fetch_one(pool)
                    .await?;
                    sizes.push(TableSize {
                        name,
                        rows,
                        bytes: Some(bytes),
                    });
                }
            }
        }
        Ok(sizes)
    }

    /// The whole database's size in bytes (SQLite: pages × page size; Postgres:
    /// `pg_database_size`).
    pub async fn database_bytes(&self) -> Result<i64, StoreError> {
        Ok(match &self.db {
            super::Db::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(pool)
                .await?
            }
            super::Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await?
            }
        })
    }
}
