//! The SQLite and Postgres migrations must describe the same schema: the same tables, the same
//! columns with the same nullability, and the same named indexes. Both flavours are migrated for
//! real (a file database and a fresh database on the test-support Postgres server) and their
//! catalogs compared, so a column added to one flavour only fails here, not in production.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use airlock::config::{DatabaseConfig, Secret};
use airlock::store::Store;
use sqlx::Row;

/// `(table, column, nullable)` for every column of every application table.
type Columns = BTreeSet<(String, String, bool)>;

/// Sorted names of the explicitly created indexes.
type Indexes = BTreeSet<String>;

async fn sqlite_schema() -> (Columns, Indexes) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let store = Store::connect(&DatabaseConfig::Sqlite { path: path.clone() })
        .await
        .unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let columns = sqlx::query(
        "SELECT m.name AS t, p.name AS c, p.\"notnull\" AS nn \
         FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        let not_null: i64 = row.get("nn");
        (row.get("t"), row.get("c"), not_null == 0)
    })
    .collect();
    let indexes = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
         AND tbl_name <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.get("name"))
    .collect();
    pool.close().await;
    (columns, indexes)
}

async fn postgres_schema() -> (Columns, Indexes) {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let store = Store::connect(&DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    })
    .await
    .unwrap();
    store.close().await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let columns = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, is_nullable::text AS n \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        let nullable: String = row.get("n");
        (row.get("t"), row.get("c"), nullable == "YES")
    })
    .collect();
    // Indexes that back a primary key or a named constraint exist implicitly on SQLite too
    // (as `sqlite_autoindex_*`, excluded there); compare only the ones made by CREATE INDEX.
    let indexes = sqlx::query(
        "SELECT i.indexname::text AS name FROM pg_indexes i \
         WHERE i.schemaname = current_schema() AND i.tablename <> '_sqlx_migrations' \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.get("name"))
    .collect();
    pool.close().await;
    drop(db);
    (columns, indexes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrations_build_the_same_schema() {
    let (sqlite_columns, sqlite_indexes) = sqlite_schema().await;
    let (pg_columns, pg_indexes) = postgres_schema().await;
    assert!(
        sqlite_columns.len() > 20,
        "the catalog query found too few columns: {sqlite_columns:?}"
    );
    let only_sqlite: Vec<_> = sqlite_columns.difference(&pg_columns).collect();
    let only_pg: Vec<_> = pg_columns.difference(&sqlite_columns).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "(table, column, nullable) differ between flavours:\n  only SQLite: {only_sqlite:?}\n  only Postgres: {only_pg:?}"
    );
    assert_eq!(
        sqlite_indexes, pg_indexes,
        "explicit indexes differ between flavours"
    );
}
