//! A node's pool document (migration 0020): one row per node, written by an admin's
//! `PUT /v1/pools` (or `airlock pools set`) or imported from `AIRLOCK_POOLS` at start when
//! the variable's document differs from the last import (so an operator's edit plus a restart
//! applies, and an admin's edit stays until the variable changes). The same rule as the
//! ceilings document (`store::ceilings`).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{now, with_db, Store, StoreError};
use crate::accounts::user::UserId;

/// Replaces a node's document as an admin's edit; the last import's hash is kept.
const PUT_API: &str = "INSERT INTO pool_configs \
    (node, document, source, env_sha256, updated_by, updated_at) \
    VALUES ($1, $2, 'api', NULL, $3, $4) \
    ON CONFLICT (node) DO UPDATE SET document = excluded.document, source = excluded.source, \
    updated_by = excluded.updated_by, updated_at = excluded.updated_at";

/// Imports the variable's document unless that very document (by hash) was imported last.
const IMPORT_ENV: &str = "INSERT INTO pool_configs \
    (node, document, source, env_sha256, updated_by, updated_at) \
    VALUES ($1, $2, 'env', $3, NULL, $4) \
    ON CONFLICT (node) DO UPDATE SET document = excluded.document, source = excluded.source, \
    env_sha256 = excluded.env_sha256, updated_by = NULL, updated_at = excluded.updated_at \
    WHERE pool_configs.env_sha256 IS NULL \
    OR pool_configs.env_sha256 <> excluded.env_sha256";

const SELECT: &str = "SELECT document, source, env_sha256, updated_by, updated_at \
    FROM pool_configs WHERE node = $1";

/// Who wrote a node's document last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolConfigSource {
    /// Imported from `AIRLOCK_POOLS`.
    Env,
    /// An admin's `PUT /v1/pools` or `airlock pools set`.
    Api,
}

/// A node's stored document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPoolConfig {
    /// The canonical JSON array of pools.
    pub document: String,
    /// Who wrote it.
    pub source: PoolConfigSource,
    /// SHA-256 (hex) of the last imported `AIRLOCK_POOLS` document.
    pub env_sha256: Option<String>,
    /// The admin who wrote it (API writes by an account only).
    pub updated_by: Option<UserId>,
    /// When.
    pub updated_at: OffsetDateTime,
}

type Row = (String, String, Option<String>, Option<Uuid>, OffsetDateTime);

// === impl PoolConfigSource ===

impl PoolConfigSource {
    /// `env` or `api`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::Api => "api",
        }
    }
}

// === impl Store ===

impl Store {
    /// `node`'s stored pool document, if any was ever written.
    pub async fn pool_config(&self, node: &str) -> Result<Option<StoredPoolConfig>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, Row>(SELECT)
                .bind(node)
                .fetch_optional(pool)
                .await?
        });
        row.map(into_stored).transpose()
    }

    /// Replaces `node`'s document as an edit by `by` (`None`: the offline CLI) and returns
    /// what it replaced, in one transaction.
    pub async fn replace_pool_config(
        &self,
        node: &str,
        document: &str,
        by: Option<UserId>,
    ) -> Result<Option<StoredPoolConfig>, StoreError> {
        let at = now();
        let before = with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let before = sqlx::query_as::<_, Row>(SELECT)
                .bind(node)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(PUT_API)
                .bind(node)
                .bind(document)
                .bind(by.map(|id| id.as_uuid()))
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            before
        });
        before.map(into_stored).transpose()
    }

    /// Imports `AIRLOCK_POOLS`' document for `node` unless the document with `sha256` was
    /// imported last; returns whether it was imported.
    pub async fn import_pool_env(
        &self,
        node: &str,
        document: &str,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        let at = now();
        let done = with_db!(self, |pool, _begin| {
            sqlx::query(IMPORT_ENV)
                .bind(node)
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

fn into_stored(row: Row) -> Result<StoredPoolConfig, StoreError> {
    let (document, source, env_sha256, updated_by, updated_at) = row;
    let source = match source.as_str() {
        "env" => PoolConfigSource::Env,
        "api" => PoolConfigSource::Api,
        _ => return Err(StoreError::corrupt("pool_configs.source", &source)),
    };
    Ok(StoredPoolConfig {
        document,
        source,
        env_sha256,
        updated_by: updated_by.map(UserId::from_uuid),
        updated_at,
    })
}
