//! What a backup needs from the store: the schema version (the newest applied migration),
//! the newest version this binary knows, and SQLite's `VACUUM INTO` (a consistent copy of a
//! live database, taken inside one read transaction).

use std::path::Path;

use super::{Backend, Db, Store, StoreError, POSTGRES_MIGRATOR, SQLITE_MIGRATOR};

// === impl Store ===

impl Store {
    /// The newest migration applied to this database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let version: Option<i64> = super::with_db!(self, |pool, _begin| {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        Ok(version.unwrap_or(0))
    }

    /// The newest migration this binary knows for `backend`.
    pub fn known_schema(backend: Backend) -> i64 {
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Writes a consistent copy of the SQLite database to `path` (which must not exist);
    /// `Ok(false)` on Postgres, which has no such statement.
    pub async fn vacuum_into(&self, path: &Path) -> Result<bool, StoreError> {
        let Db::Sqlite(pool) = &self.db else {
            return Ok(false);
        };
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::corrupt("backup path", "the path is not UTF-8"))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(pool)
            .await?;
        Ok(true)
    }

    /// Whether the Postgres database at `url` has no table in its current schema (what a
    /// restore may fill without `--force`). Connects without migrating.
    pub async fn postgres_is_empty(url: &str) -> Result<bool, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(StoreError::Open)?;
        let tables: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&pool)
        .await;
        pool.close().await;
        Ok(tables? == 0)
    }
}
