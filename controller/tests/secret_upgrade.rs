//! A secret stored before exposures existed keeps working as `env`: on both backends a
//! database is migrated to 0012 from the shipped files, a secret row is written the old way,
//! and opening the store (which applies the rest) lists it as `env`. The column's CHECK
//! refuses any other spelling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock::accounts::user::UserId;
use airlock::config::{DatabaseConfig, Secret};
use airlock::secrets::Exposure;
use airlock::store::Store;
use time::OffsetDateTime;
use uuid::Uuid;

use common::upgrade::migrations_up_to;

/// The last migration before secrets had an exposure.
const BEFORE: i64 = 12;

/// Writes a user and one secret the way a 0012 controller did; returns the user.
async fn old_secret<DB>(pool: &sqlx::Pool<DB>) -> UserId
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    OffsetDateTime: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let (id, at) = (Uuid::now_v7(), OffsetDateTime::now_utc());
    sqlx::query(
        "INSERT INTO users (id, email, display_name, role, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(format!("{}@example.org", id.simple()))
    .bind("Old".to_owned())
    .bind("member".to_owned())
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO secrets (owner_id, name, sealed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(id)
    .bind("legacy".to_owned())
    .bind(b"sealed".to_vec())
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    UserId::from_uuid(id)
}

/// Opens the store (applying 0013 onwards) and checks the old secret and the CHECK.
async fn upgraded(config: &DatabaseConfig, owner: UserId) {
    let store = Store::connect(config).await.unwrap();
    let listed = store.list_secrets(owner).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].expose,
        Exposure::Env,
        "an old secret keeps secret_env"
    );
    let (sealed, expose) = store
        .sealed_secret_exposed(owner, "legacy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sealed.as_slice(), expose), (&b"sealed"[..], Exposure::Env));
    // A new one without an exposure stays at the proxy; the old one is untouched.
    assert!(store.put_secret(owner, "new", b"x", None).await.unwrap());
    let listed = store.list_secrets(owner).await.unwrap();
    let exposures: Vec<_> = listed.iter().map(|s| s.expose).collect();
    assert_eq!(exposures, [Exposure::Env, Exposure::EgressOnly]);
    store.close().await;
}

#[tokio::test]
async fn an_old_sqlite_secret_reads_as_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    migrations_up_to("sqlite", BEFORE)
        .await
        .run(&pool)
        .await
        .unwrap();
    let owner = old_secret(&pool).await;
    pool.close().await;
    upgraded(&DatabaseConfig::Sqlite { path: path.clone() }, owner).await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let bad = sqlx::query("UPDATE secrets SET expose = 'everywhere'")
        .execute(&pool)
        .await;
    assert!(bad.is_err(), "the CHECK refuses other spellings");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_postgres_secret_reads_as_env() {
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
    let owner = old_secret(&pool).await;
    pool.close().await;
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    upgraded(&config, owner).await;

    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let bad = sqlx::query("UPDATE secrets SET expose = 'everywhere'")
        .execute(&pool)
        .await;
    assert!(bad.is_err(), "the CHECK refuses other spellings");
    pool.close().await;
    drop(db);
}
