//! Paging the audit trail by time, on SQLite (a file) and on Postgres (a fresh database on the
//! test-support server): `since`/`until` select a half-open range, cursors continue in a stable
//! (time, id) order both ways, with no row missed or repeated, and a cursor from one order is
//! refused by the other; `airlock admin audit export`'s path streams a range oldest first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;

use airlock::audit::{Actor, AuditError, AuditLog, ListAudit};
use airlock::config::{DatabaseConfig, Secret};
use airlock::store::{AuditRecord, NewAuditRecord, Store};
use test_support::postgres::TestDatabase;
use time::OffsetDateTime;

enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(#[allow(dead_code)] TestDatabase),
}

async fn sqlite() -> (Store, Keep) {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join("airlock.db"),
    };
    (Store::connect(&config).await.unwrap(), Keep::Dir(dir))
}

async fn postgres() -> (Store, Keep) {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    (Store::connect(&config).await.unwrap(), Keep::Pg(db))
}

macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(super::sqlite().await, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(super::postgres().await, $body).await;
            }
        }
    };
}

async fn run<F, Fut>((store, keep): (Store, Keep), body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    body(store).await;
    drop(keep);
}

/// Appends `n` rows `test.0` … concurrently (so some may share an instant).
async fn fill(store: &Store, n: usize) {
    let writes = (0..n).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let row = NewAuditRecord {
                action: format!("test.{i}"),
                status: 200,
                ..NewAuditRecord::default()
            };
            store.append_audit(&row).await.unwrap();
        })
    });
    for write in writes.collect::<Vec<_>>() {
        write.await.unwrap();
    }
}

/// Every page of `list`, followed through its cursors.
async fn all_pages(log: &AuditLog, mut list: ListAudit) -> Vec<AuditRecord> {
    let mut rows = Vec::new();
    loop {
        let page = log.run(&Actor::cli(), list).await.unwrap();
        assert!(page.items.len() <= list.limit as usize);
        rows.extend(page.items);
        match page.next {
            Some(next) => list.cursor = Some(next),
            None => return rows,
        }
    }
}

fn key(r: &AuditRecord) -> (OffsetDateTime, i64) {
    (r.at, r.id)
}

both_backends!(
    pages_follow_time_then_id_both_ways,
    |store: Store| async move {
        fill(&store, 23).await;
        let log = AuditLog::new(store.clone());
        let everything = ListAudit {
            limit: 500,
            oldest_first: true,
            ..ListAudit::default()
        };
        let all = log.run(&Actor::cli(), everything).await.unwrap().items;
        assert_eq!(all.len(), 23);
        assert!(all.windows(2).all(|w| key(&w[0]) < key(&w[1])), "{all:#?}");

        for oldest_first in [true, false] {
            let list = ListAudit {
                limit: 4,
                oldest_first,
                ..ListAudit::default()
            };
            let mut paged = all_pages(&log, list).await;
            if !oldest_first {
                paged.reverse();
            }
            assert_eq!(
                paged, all,
                "oldest_first {oldest_first}: no row missed or repeated"
            );
        }

        // A half-open range, [since, until), in both orders.
        let (since, until) = (all[5].at, all[17].at);
        let want: Vec<_> = all
            .iter()
            .filter(|r| r.at >= since && r.at < until)
            .cloned()
            .collect();
        assert!(want.len() >= 10, "{}", want.len());
        let ranged = ListAudit {
            since: Some(since),
            until: Some(until),
            limit: 3,
            oldest_first: true,
            ..ListAudit::default()
        };
        assert_eq!(all_pages(&log, ranged).await, want);
        let newest = ListAudit {
            oldest_first: false,
            ..ranged
        };
        let mut got = all_pages(&log, newest).await;
        got.reverse();
        assert_eq!(got, want);

        // Times in another offset mean the same instants.
        let shifted = time::UtcOffset::from_hms(5, 30, 0).unwrap();
        let offset = ListAudit {
            since: Some(since.to_offset(shifted)),
            until: Some(until.to_offset(shifted)),
            limit: 500,
            ..ranged
        };
        let page = log.run(&Actor::cli(), offset).await.unwrap();
        assert_eq!(page.items, want);
    }
);

both_backends!(cursors_and_ranges_are_checked, |store: Store| async move {
    fill(&store, 3).await;
    let log = AuditLog::new(store.clone());
    let first = ListAudit {
        limit: 1,
        ..ListAudit::default()
    };
    let page = log.run(&Actor::cli(), first).await.unwrap();
    let other_order = ListAudit {
        cursor: page.next,
        oldest_first: true,
        ..first
    };
    assert!(matches!(
        log.run(&Actor::cli(), other_order).await,
        Err(AuditError::Cursor)
    ));
    let now = OffsetDateTime::now_utc();
    let backwards = ListAudit {
        since: Some(now),
        until: Some(now),
        ..first
    };
    assert!(matches!(
        log.run(&Actor::cli(), backwards).await,
        Err(AuditError::Range)
    ));
    let future = ListAudit {
        since: Some(now + time::Duration::hours(1)),
        limit: 10,
        ..ListAudit::default()
    };
    let page = log.run(&Actor::cli(), future).await.unwrap();
    assert!(page.items.is_empty() && page.next.is_none());
});
