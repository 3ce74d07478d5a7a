//! Migration 0018 keeps every subnet allocation: on both backends a database is migrated to
//! 0017 from the shipped files, a sandbox holding a /29 is written the old way, and opening
//! the store (which applies 0018; on SQLite it rebuilds `subnet_allocations`) still lists the
//! allocation as the sandbox's. The new CHECK wants exactly one holder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock::config::{DatabaseConfig, Secret};
use airlock::sandbox::SandboxId;
use airlock::store::Store;
use time::OffsetDateTime;
use uuid::Uuid;

use common::upgrade::migrations_up_to;

/// The last migration before pool members.
const BEFORE: i64 = 17;

/// Writes a user, a sandbox and its allocation through `$pool` the way a 0017 controller did;
/// evaluates to the sandbox's id.
macro_rules! old_allocation {
    ($pool:expr) => {{
        let (user, sandbox, at) = (Uuid::now_v7(), Uuid::now_v7(), OffsetDateTime::now_utc());
        sqlx::query(
            "INSERT INTO users (id, email, display_name, role, created_at) \
             VALUES ($1, $2, 'Old', 'member', $3)",
        )
        .bind(user)
        .bind(format!("{}@example.org", user.simple()))
        .bind(at)
        .execute($pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO sandboxes (id, owner_id, image, spec, desired_state, observed_state, \
             created_at, updated_at) VALUES ($1, $2, 'alpine:3', $3, 'running', 'running', $4, $4)",
        )
        .bind(sandbox)
        .bind(user)
        .bind(sqlx::types::Json(serde_json::json!({})))
        .bind(at)
        .execute($pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO subnet_allocations (subnet, sandbox_id, allocated_at) \
             VALUES ('10.213.0.8/29', $1, $2)",
        )
        .bind(sandbox)
        .bind(at)
        .execute($pool)
        .await
        .unwrap();
        SandboxId::from_uuid(sandbox)
    }};
}

/// After the upgrade: the allocation is still the sandbox's, and a row with no holder (or
/// two) is refused.
macro_rules! check_upgraded {
    ($config:expr, $pool:expr, $sandbox:expr) => {{
        let store = Store::connect($config).await.unwrap();
        let listed = store.subnet_allocations().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.to_string(), "10.213.0.8/29");
        assert_eq!(listed[0].1, $sandbox);
        store.close().await;
        let orphan = sqlx::query(
            "INSERT INTO subnet_allocations (subnet, allocated_at) VALUES ('10.213.0.16/29', $1)",
        )
        .bind(OffsetDateTime::now_utc())
        .execute($pool)
        .await;
        assert!(orphan.is_err(), "an allocation needs a holder");
    }};
}

#[tokio::test]
async fn sqlite_allocations_survive_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&pool)
        .await
        .unwrap();
    migrations_up_to("sqlite", BEFORE)
        .await
        .run(&pool)
        .await
        .unwrap();
    let sandbox = old_allocation!(&pool);
    pool.close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    check_upgraded!(
        &DatabaseConfig::Sqlite { path: path.clone() },
        &pool,
        sandbox
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_allocations_survive_the_upgrade() {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    migrations_up_to("postgres", BEFORE)
        .await
        .run(&pool)
        .await
        .unwrap();
    let sandbox = old_allocation!(&pool);
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    check_upgraded!(&config, &pool, sandbox);
    pool.close().await;
}
