//! Self-test rows on both backends: the latest result replaces the previous one, reads back
//! exactly, goes away with its sandbox, and other sandboxes' addresses come from the
//! allocations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;

use airlock::config::{DatabaseConfig, Secret};
use airlock::sandbox::selftest::SelftestStatus;
use airlock::store::{Scope, SelftestRecord, Store};
use ipnet::Ipv4Net;
use time::OffsetDateTime;

mod common;
use common::sandbox;

fn record(status: SelftestStatus, report: Option<&str>, at: i64) -> SelftestRecord {
    SelftestRecord {
        generation: 1,
        status,
        report: report.map(str::to_owned),
        message: (status == SelftestStatus::Error).then(|| "no report".to_owned()),
        ran_at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
    }
}

async fn exercise(store: Store) {
    let pools: Vec<Ipv4Net> = vec!["10.213.0.0/28".parse().unwrap()];
    let a = sandbox(&store, "selftest").await;
    let b = sandbox(&store, "selftest").await;
    assert_eq!(store.get_selftest(a.id).await.unwrap(), None);

    let first = record(
        SelftestStatus::Failed,
        Some(r#"{"passed":false}"#),
        1_800_000_000,
    );
    store.save_selftest(a.id, &first).await.unwrap();
    assert_eq!(store.get_selftest(a.id).await.unwrap(), Some(first));
    let second = record(SelftestStatus::Error, None, 1_800_000_060);
    store.save_selftest(a.id, &second).await.unwrap();
    assert_eq!(store.get_selftest(a.id).await.unwrap(), Some(second));
    assert_eq!(store.get_selftest(b.id).await.unwrap(), None);

    let subnet_a = store.allocate_subnet(a.id, &pools, u64::MAX).await.unwrap();
    let subnet_b = store.allocate_subnet(b.id, &pools, u64::MAX).await.unwrap();
    let others = store.other_sandbox_addresses(a.id, 4).await.unwrap();
    assert_eq!(others, [(b.id, subnet_b.sandbox())]);
    assert_eq!(subnet_b.sandbox(), Ipv4Addr::new(10, 213, 0, 11));
    let others = store.other_sandbox_addresses(b.id, 4).await.unwrap();
    assert_eq!(others, [(a.id, subnet_a.sandbox())]);
    assert!(store
        .other_sandbox_addresses(b.id, 0)
        .await
        .unwrap()
        .is_empty());

    // Deleting the sandbox deletes its result.
    store.release_subnet(a.id).await.unwrap();
    store.delete_sandbox(a.id, a.generation).await.unwrap();
    assert_eq!(store.get_selftest(a.id).await.unwrap(), None);
    assert!(store.get_sandbox(Scope::All, a.id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_rows_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join("airlock.db"),
    };
    exercise(Store::connect(&config).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_rows_on_postgres() {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    exercise(Store::connect(&config).await.unwrap()).await;
}
