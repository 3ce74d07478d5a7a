//! Store tests on both backends: [`both_backends!`] defines `mod name { sqlite, postgres }`, each
//! running one body against a fresh store: a SQLite file in a temporary folder, or a fresh
//! database on the test-support Postgres server. The body gets a [`Fixture`] (the store and the
//! config to reopen it); [`Keep`] holds the database alive until the body has finished (an
//! `async move` body captures only the fields it uses, which would drop it early).

use std::future::Future;

use airlock::config::{DatabaseConfig, Secret};
use airlock::store::Store;
use test_support::postgres::TestDatabase;

/// A store and how to reopen it.
pub(crate) struct Fixture {
    pub(crate) store: Store,
    pub(crate) config: DatabaseConfig,
}

/// What keeps a fixture's database alive.
pub(crate) enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(#[allow(dead_code)] TestDatabase),
}

/// A fresh SQLite store (in a `data/` folder that does not exist yet).
pub(crate) async fn sqlite() -> (Fixture, Keep) {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join("data").join("airlock.db"),
    };
    let store = Store::connect(&config).await.unwrap();
    (Fixture { store, config }, Keep::Dir(dir))
}

/// A fresh Postgres database.
pub(crate) async fn postgres() -> (Fixture, Keep) {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    let store = Store::connect(&config).await.unwrap();
    (Fixture { store, config }, Keep::Pg(db))
}

/// Runs `body` on the fixture, then drops the database.
pub(crate) async fn run<F, Fut>((fixture, keep): (Fixture, Keep), body: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    body(fixture).await;
    drop(keep);
}

/// Defines `mod $name { sqlite, postgres }`, each running `$body(fixture)`.
#[allow(unused_macros)] // Only the store test crates use it.
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::common::backends::run($crate::common::backends::sqlite().await, $body)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::common::backends::run($crate::common::backends::postgres().await, $body)
                    .await;
            }
        }
    };
}
pub(crate) use both_backends;
