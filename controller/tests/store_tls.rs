//! The store over TLS to a real Postgres (the test-support server runs with `ssl=on`):
//! `sslmode=require` and `verify-full` with `sslrootcert` connect, migrate and really use TLS
//! (`pg_stat_ssl`); `sslmode=disable` still connects in plain text; `verify-full` against a
//! CA that did not sign the server's certificate is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::config::{DatabaseConfig, Secret};
use airlock::store::Store;
use sqlx::postgres::PgPoolOptions;
use test_support::postgres::TestDatabase;

async fn database() -> TestDatabase {
    tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap()
}

/// Whether a connection made with `url` is encrypted, as the server sees it.
async fn uses_tls(url: &str) -> bool {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    ssl
}

#[tokio::test]
async fn the_store_connects_over_tls_and_without() {
    let db = database().await;
    let Some(ca) = db.ca_cert() else {
        eprintln!("TEST_DATABASE_URL server: its TLS set-up is unknown, skipping");
        return;
    };
    let require = format!("{}?sslmode=require", db.url());
    let verify = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url(),
        ca.display()
    );
    let disable = format!("{}?sslmode=disable", db.url());

    // The store opens (and migrates) over TLS.
    let config = DatabaseConfig::Postgres {
        url: Secret::new(&require),
    };
    let store = Store::connect(&config).await.unwrap();
    store.ping().await.unwrap();
    drop(store);
    let config = DatabaseConfig::Postgres {
        url: Secret::new(&verify),
    };
    Store::connect(&config).await.unwrap().ping().await.unwrap();

    assert!(uses_tls(&require).await, "sslmode=require");
    assert!(uses_tls(&verify).await, "sslmode=verify-full");
    assert!(!uses_tls(&disable).await, "sslmode=disable");
    let config = DatabaseConfig::Postgres {
        url: Secret::new(&disable),
    };
    Store::connect(&config).await.unwrap().ping().await.unwrap();

    // A CA that did not sign the server's certificate: verify-full refuses.
    let other = tempfile::tempdir().unwrap();
    airlock_certs::init(&airlock_certs::InitOptions::new(other.path())).unwrap();
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url(),
        other.path().join("ca").join("cert.pem").display()
    );
    let config = DatabaseConfig::Postgres {
        url: Secret::new(&wrong),
    };
    let refused = Store::connect(&config).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
}
