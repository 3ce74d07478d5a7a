//! The audit trail: append-only rows (triggers in both dialects refuse UPDATE and DELETE),
//! read newest first in id pages, or in (time, id) order within a time range
//! ([`AuditRange`]), either way, after a position (the API's opaque cursor).
//!
//! Every instant the trail writes or compares goes through [`AuditAt`]: on SQLite, where the
//! column is text and compares as text, a fixed-width UTC form (nine fraction digits), so text
//! order is time order (sqlx's own RFC 3339 text trims the fraction, and `…00.12Z` sorts after
//! `…00.123Z`). Rows written before this form compare correctly to the second.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{with_db, Store, StoreError};
use crate::accounts::user::UserId;

/// One audit record to append.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAuditRecord {
    /// Who acted (none: an anonymous login attempt, or the offline CLI).
    pub user: Option<UserId>,
    /// Which credential: `session:<id>`, `token:<id>`, `admin-token` or `cli`.
    pub token: Option<String>,
    /// What was done, e.g. `POST /v1/sandboxes/{id}/stop` or `auth.login`.
    pub action: String,
    /// The object acted on (an id, a secret name, an email).
    pub object: Option<String>,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The HTTP status of the answer (0 for the CLI's own records).
    pub status: u16,
    /// Anything else worth keeping (never a secret value).
    pub detail: Option<String>,
    /// How many events the row stands for (0 is stored as 1): failed logins and refused
    /// bearer tokens are aggregated per source, account and minute.
    pub count: u64,
}

/// One audit record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its id (increasing).
    pub id: i64,
    /// When it was written.
    pub at: OffsetDateTime,
    /// The rest.
    pub record: NewAuditRecord,
}

/// Which rows [`Store::page_audit`] reads, and where it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditRange {
    /// Rows written at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Rows written strictly before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only rows strictly after this (time, id) position in the reading order.
    pub after: Option<(OffsetDateTime, i64)>,
    /// Oldest first (an export); newest first otherwise.
    pub oldest_first: bool,
}

/// An instant as the audit table stores and compares it (see the module doc).
#[derive(Clone, Copy, Debug)]
pub(super) struct AuditAt(pub(super) OffsetDateTime);

/// The fixed-width text form of [`AuditAt`] on SQLite.
const SQLITE_AT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
);

impl sqlx::Type<sqlx::Sqlite> for AuditAt {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for AuditAt {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        let text = self.0.to_offset(time::UtcOffset::UTC).format(SQLITE_AT)?;
        <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(text, buf)
    }
}

impl sqlx::Type<sqlx::Postgres> for AuditAt {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <OffsetDateTime as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for AuditAt {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <OffsetDateTime as sqlx::Encode<'_, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

type AuditRow = (
    i64,
    OffsetDateTime,
    Option<Uuid>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i32,
    Option<String>,
    i64,
);

/// Appends `$record` (a [`NewAuditRecord`]) through `$exec`, a pool or a transaction: one
/// statement, so a caller's transaction can hold the row with the action it describes.
macro_rules! insert_audit_on {
    ($exec:expr, $record:expr) => {{
        let record: &$crate::store::NewAuditRecord = $record;
        sqlx::query(
            "INSERT INTO audit (at, actor_user_id, actor_token, action, object, source_ip, \
             status, detail, count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind($crate::store::audit::AuditAt($crate::store::now()))
        .bind(record.user.map(|u| u.as_uuid()))
        .bind(record.token.as_deref())
        .bind(&record.action)
        .bind(record.object.as_deref())
        .bind(record.source_ip.as_deref())
        .bind(i32::from(record.status))
        .bind(record.detail.as_deref())
        .bind(i64::try_from(record.count.max(1)).unwrap_or(i64::MAX))
        .execute($exec)
        .await?;
    }};
}
pub(crate) use insert_audit_on;

// === impl Store ===

impl Store {
    /// Appends a record.
    pub async fn append_audit(&self, record: &NewAuditRecord) -> Result<(), StoreError> {
        with_db!(self, |pool, _begin| {
            insert_audit_on!(pool, record);
        });
        Ok(())
    }

    /// Up to `limit` records older than `before` (all when `None`), newest first.
    pub async fn list_audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows: Vec<AuditRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT id, at, actor_user_id, actor_token, action, object, source_ip, status, \
                 detail, count FROM audit WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(record).collect())
    }

    /// Up to `limit` records of `range`, in (time, id) order: newest first unless the range
    /// asks for oldest first.
    pub async fn page_audit(
        &self,
        range: &AuditRange,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let (after_at, after_id) = match range.after {
            Some((at, id)) => (Some(AuditAt(at)), Some(id)),
            None => (None, None),
        };
        let sql = if range.oldest_first {
            "SELECT id, at, actor_user_id, actor_token, action, object, source_ip, status, \
             detail, count FROM audit WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR at < $2) \
             AND ($3 IS NULL OR at > $3 OR (at = $3 AND id > $4)) ORDER BY at, id LIMIT $5"
        } else {
            "SELECT id, at, actor_user_id, actor_token, action, object, source_ip, status, \
             detail, count FROM audit WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR at < $2) \
             AND ($3 IS NULL OR at < $3 OR (at = $3 AND id < $4)) \
             ORDER BY at DESC, id DESC LIMIT $5"
        };
        let rows: Vec<AuditRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(sql)
                .bind(range.since.map(AuditAt))
                .bind(range.until.map(AuditAt))
                .bind(after_at)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(record).collect())
    }
}

fn record(row: AuditRow) -> AuditRecord {
    let (id, at, user, token, action, object, source_ip, status, detail, count) = row;
    AuditRecord {
        id,
        at,
        record: NewAuditRecord {
            user: user.map(UserId::from_uuid),
            token,
            action,
            object,
            source_ip,
            status: u16::try_from(status).unwrap_or(0),
            detail,
            count: u64::try_from(count).unwrap_or(1),
        },
    }
}
