//! Every table bounded, on both backends: a 100,000-event ledger flood into one sandbox stays
//! within the per-sandbox cap with exact counts in the summary rows (table sizes printed);
//! retention removes old rows only of gone sandboxes; expired sessions are purged; the
//! secrets count quota; and the audit prune, the one delete the append-only trigger permits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use airlock::accounts::quota::QuotaKind;
use airlock::accounts::user::Role;
use airlock::audit::{Actor, AuditLog, PruneAudit};
use airlock::config::{DatabaseConfig, Secret};
use airlock::reconcile::retention::Retention;
use airlock::sandbox::{EndReason, SandboxEvent};
use airlock::store::{EgressEvent, NewAuditRecord, Store, StoreError, SUMMARY_BOOT};
use airlock_wire::Outcome;
use time::OffsetDateTime;

mod common;
use common::{account, sandbox};

const DAY_MS: i64 = 86_400_000;

fn event(
    boot: &str,
    seq: i64,
    sandbox: &str,
    host: &str,
    decision: Outcome,
    start_ms: i64,
) -> EgressEvent {
    EgressEvent {
        boot_id: boot.to_owned(),
        seq,
        sandbox_id: sandbox.to_owned(),
        generation: 1,
        method: "CONNECT".to_owned(),
        host: host.to_owned(),
        port: 443,
        addr: Some("192.0.2.7:443".to_owned()),
        decision,
        reason: "private".to_owned(),
        rule: None,
        bytes_up: 3,
        bytes_down: 5,
        start_ms,
        duration_ms: 2,
        ceiling: None,
        count: 1,
        tunnel: None,
        path: None,
        status: None,
        credential: None,
        mode: None,
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// `(rows, SUM(count), SUM(bytes_up), summary rows)` of `sandbox`'s ledger.
async fn totals(store: &Store, sandbox: &str) -> (i64, i64, i64, i64) {
    let summary = store
        .egress_summary(sandbox.parse().unwrap())
        .await
        .unwrap();
    let count: i64 = summary.iter().map(|h| h.total).sum();
    let up: i64 = summary.iter().map(|h| h.bytes_up).sum();
    let mut query = airlock::store::EgressQuery {
        limit: 1_000_000,
        ..Default::default()
    };
    query.after = None;
    let listed = store
        .list_egress_events(sandbox.parse().unwrap(), &query)
        .await
        .unwrap();
    let summaries = listed.iter().filter(|e| e.boot_id == SUMMARY_BOOT).count();
    let rows = i64::try_from(listed.len()).unwrap();
    (rows, count, up, i64::try_from(summaries).unwrap())
}

async fn flood(store: Store, backend: &str) {
    const EVENTS: i64 = 100_000;
    const CAP: u64 = 10_000;
    const PAGE: i64 = 10_000;
    let s = sandbox(&store, "flood").await;
    let id = s.id.to_string();
    let started = Instant::now();
    let base = now_ms();
    for page in 0..EVENTS / PAGE {
        let events: Vec<EgressEvent> = (0..PAGE)
            .map(|i| {
                let seq = page * PAGE + i + 1;
                // 40 hosts, three quarters denied: repeated events, as a flood looks.
                let decision = if seq % 4 == 0 {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                };
                event(
                    "f100d",
                    seq,
                    &id,
                    &format!("h{}.example", seq % 40),
                    decision,
                    base + seq,
                )
            })
            .collect();
        let next = (page + 1) * PAGE;
        store
            .store_egress_events_capped("local", &events, "f100d", next, CAP)
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    let (rows, count, up, summaries) = totals(&store, &id).await;
    assert_eq!(count, EVENTS, "every event is counted exactly");
    assert_eq!(up, EVENTS * 3, "bytes add up exactly");
    assert_eq!(
        rows - summaries,
        i64::try_from(CAP).unwrap(),
        "individual rows stop at the cap"
    );
    assert!(
        summaries <= 80,
        "one summary row per (host, decision): {summaries}"
    );
    // A second flood of distinct hosts: summary keys are bounded too.
    let events: Vec<EgressEvent> = (0..3_000)
        .map(|i| {
            event(
                "f100e",
                i + 1,
                &id,
                &format!("x{i}.example"),
                Outcome::Deny,
                base,
            )
        })
        .collect();
    store
        .store_egress_events_capped("local", &events, "f100e", 3_000, CAP)
        .await
        .unwrap();
    let (rows, count, _, summaries) = totals(&store, &id).await;
    assert_eq!(count, EVENTS + 3_000);
    assert!(
        summaries <= airlock::store::MAX_SUMMARY_ROWS + 3,
        "{summaries}"
    );
    assert!(rows <= i64::try_from(CAP).unwrap() + airlock::store::MAX_SUMMARY_ROWS + 3);
    eprintln!(
        "{backend}: {EVENTS} events into one sandbox (cap {CAP}) stored in {:.2}s; then \
         3,000 distinct hosts: {rows} rows, {summaries} summary rows, counts exact",
        elapsed.as_secs_f64()
    );
    for table in store.table_sizes().await.unwrap() {
        let size = table
            .bytes
            .map_or("size unknown".to_owned(), |b| format!("{b} bytes"));
        eprintln!(
            "{backend}:   {:<22} {:>8} rows  {size}",
            table.name, table.rows
        );
    }
    eprintln!(
        "{backend}:   database total {} bytes",
        store.database_bytes().await.unwrap()
    );
}

async fn retention(store: Store) {
    let live = sandbox(&store, "live").await;
    let ended = sandbox(&store, "ended").await;
    store
        .record_transition(
            ended.id,
            ended.generation,
            &SandboxEvent::Ended(EndReason::Lost),
        )
        .await
        .unwrap();
    let deleted = uuid::Uuid::new_v4().to_string();
    let old = now_ms() - 40 * DAY_MS;
    let recent = now_ms() - DAY_MS;
    let events = vec![
        event("r1", 1, &live.id.to_string(), "a", Outcome::Deny, old),
        event("r1", 2, &ended.id.to_string(), "a", Outcome::Deny, old),
        event("r1", 3, &ended.id.to_string(), "a", Outcome::Deny, recent),
        event("r1", 4, &deleted, "a", Outcome::Deny, old),
        event("r1", 5, "-", "a", Outcome::Deny, old),
    ];
    store
        .store_egress_events("local", &events, "r1", 5)
        .await
        .unwrap();

    // Sessions: one expired, one live.
    let (user, _token) = account(&store, "sess", Role::Member).await;
    let expired = OffsetDateTime::now_utc() - Duration::from_secs(60);
    store
        .create_session(user.id, &"e".repeat(64), expired)
        .await
        .unwrap();

    let retention = Retention::new(store.clone(), Duration::from_secs(30 * 86_400));
    let removed = retention.pass(OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(
        removed.ledger, 3,
        "old rows of the ended, deleted and unattributed"
    );
    assert!(removed.sessions >= 1);
    let left = |s: &str| {
        let store = store.clone();
        let s = s.to_owned();
        async move {
            let id = s.parse().unwrap();
            store
                .list_egress_events(
                    id,
                    &airlock::store::EgressQuery {
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        left(&live.id.to_string()).await,
        1,
        "a live sandbox keeps old rows"
    );
    assert_eq!(left(&ended.id.to_string()).await, 1, "recent rows stay");
    assert_eq!(left(&deleted).await, 0);
    let again = retention.pass(OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(again.ledger, 0);
}

async fn secrets_quota(store: Store) {
    let (user, _token) = account(&store, "vault", Role::Member).await;
    assert!(store
        .put_secret_within(user.id, "a", b"x", None, 2)
        .await
        .unwrap());
    assert!(store
        .put_secret_within(user.id, "b", b"x", None, 2)
        .await
        .unwrap());
    // Replacing an existing secret is not a new one.
    assert!(!store
        .put_secret_within(user.id, "b", b"y", None, 2)
        .await
        .unwrap());
    match store.put_secret_within(user.id, "c", b"x", None, 2).await {
        Err(StoreError::QuotaExceeded(e)) => assert_eq!(e.kind, QuotaKind::MaxSecrets),
        other => panic!("expected max_secrets, got {other:?}"),
    }
    assert_eq!(store.list_secrets(user.id).await.unwrap().len(), 2);
}

async fn audit_prune(store: Store, config: &DatabaseConfig) {
    let row = |action: &str| NewAuditRecord {
        action: action.to_owned(),
        status: 200,
        ..Default::default()
    };
    store.append_audit(&row("old.1")).await.unwrap();
    store.append_audit(&row("old.2")).await.unwrap();
    store.append_audit(&row("new.1")).await.unwrap();
    // Rows strictly before the newest one's time go.
    let cutoff = store.list_audit(None, 1).await.unwrap()[0].at;

    // A member cannot prune; the CLI (admin) can, and its prune files a row of its own.
    let log = AuditLog::new(store.clone());
    let deleted = log
        .run(&Actor::cli(), PruneAudit { before: cutoff })
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let rows = store.list_audit(None, 10).await.unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.record.action.as_str()).collect();
    assert_eq!(actions, ["admin.audit.prune", "new.1"]);
    assert!(rows[0]
        .record
        .detail
        .as_deref()
        .unwrap()
        .ends_with("deleted 2"));
    // Outside the prune, the trail stays append-only.
    let refused = match config {
        DatabaseConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let result = sqlx::query("DELETE FROM audit").execute(&pool).await;
            pool.close().await;
            result.is_err()
        }
        DatabaseConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
            let result = sqlx::query("DELETE FROM audit").execute(&pool).await;
            pool.close().await;
            result.is_err()
        }
    };
    assert!(refused, "a plain DELETE on audit must still be refused");
    assert_eq!(store.list_audit(None, 10).await.unwrap().len(), 2);
}

async fn all(config: DatabaseConfig, backend: &str) {
    let store = Store::connect(&config).await.unwrap();
    retention(store.clone()).await;
    secrets_quota(store.clone()).await;
    audit_prune(store.clone(), &config).await;
    flood(store, backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_tables_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join("airlock.db"),
    };
    all(config, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_tables_on_postgres() {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    all(config, "postgres").await;
}
