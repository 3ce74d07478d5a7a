//! The operator's ceilings document (migration 0007): one row, written by an admin's
//! `PUT /v1/policy/ceilings` or imported from `AIRLOCK_POLICY_FILE` at start when the file's
//! hash differs from the last import (so an operator's edit plus a restart applies, and an
//! admin's edit stays until the file changes).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{now, with_db, Store, StoreError};
use crate::accounts::user::UserId;

/// Replaces the document as an admin's edit; the last imported file's hash is kept.
const PUT_API: &str = "INSERT INTO policy_ceilings \
    (id, document, source, file_sha256, updated_by, updated_at) \
    VALUES (1, $1, 'api', NULL, $2, $3) \
    ON CONFLICT (id) DO UPDATE SET document = excluded.document, source = excluded.source, \
    updated_by = excluded.updated_by, updated_at = excluded.updated_at";

/// Imports a file's document unless that very file (by hash) was imported last.
const IMPORT_FILE: &str = "INSERT INTO policy_ceilings \
    (id, document, source, file_sha256, updated_by, updated_at) \
    VALUES (1, $1, 'file', $2, NULL, $3) \
    ON CONFLICT (id) DO UPDATE SET document = excluded.document, source = excluded.source, \
    file_sha256 = excluded.file_sha256, updated_by = NULL, updated_at = excluded.updated_at \
    WHERE policy_ceilings.file_sha256 IS NULL \
    OR policy_ceilings.file_sha256 <> excluded.file_sha256";

const SELECT: &str = "SELECT document, source, file_sha256, updated_by, updated_at \
    FROM policy_ceilings WHERE id = 1";

/// Who wrote the stored document last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeilingsSource {
    /// Imported from `AIRLOCK_POLICY_FILE`.
    File,
    /// An admin's `PUT /v1/policy/ceilings`.
    Api,
}

/// The stored document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCeilings {
    /// The document's JSON.
    pub document: String,
    /// Who wrote it.
    pub source: CeilingsSource,
    /// SHA-256 (hex) of the last imported file.
    pub file_sha256: Option<String>,
    /// The admin who wrote it (API writes only).
    pub updated_by: Option<UserId>,
    /// When.
    pub updated_at: OffsetDateTime,
}

type Row = (String, String, Option<String>, Option<Uuid>, OffsetDateTime);

// === impl CeilingsSource ===

impl CeilingsSource {
    /// `file` or `api`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

// === impl Store ===

impl Store {
    /// The stored ceilings document, if any was ever written.
    pub async fn ceilings(&self) -> Result<Option<StoredCeilings>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, Row>(SELECT)
                .fetch_optional(pool)
                .await?
        });
        row.map(into_stored).transpose()
    }

    /// Replaces the document as `by`'s edit and returns what it replaced, in one transaction.
    pub async fn replace_ceilings(
        &self,
        document: &str,
        by: UserId,
    ) -> Result<Option<StoredCeilings>, StoreError> {
        let at = now();
        let before = with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let before = sqlx::query_as::<_, Row>(SELECT)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(PUT_API)
                .bind(document)
                .bind(by.as_uuid())
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            before
        });
        before.map(into_stored).transpose()
    }

    /// Imports a policy file's document unless the file with `sha256` was imported last;
    /// returns whether it was imported.
    pub async fn import_ceilings_file(
        &self,
        document: &str,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        let at = now();
        let done = with_db!(self, |pool, _begin| {
            sqlx::query(IMPORT_FILE)
                .bind(document)
                .bind(sha256)
                .bind(at)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }
}

fn into_stored(row: Row) -> Result<StoredCeilings, StoreError> {
    let (document, source, file_sha256, updated_by, updated_at) = row;
    let source = match source.as_str() {
        "file" => CeilingsSource::File,
        "api" => CeilingsSource::Api,
        _ => return Err(StoreError::corrupt("policy_ceilings.source", &source)),
    };
    Ok(StoredCeilings {
        document,
        source,
        file_sha256,
        updated_by: updated_by.map(UserId::from_uuid),
        updated_at,
    })
}
