//! The policy authority's rows on both backends: the start-up rewrite of policies stored
//! before `allow_public` existed (none changes meaning; a second pass changes nothing), the
//! ceilings document (file imports by hash, admin edits kept until the file changes), and the
//! ledger's sustained insert rate for a 100,000-event flood (printed with `--nocapture`; it
//! must stay above the 1,000 events/s one flooding sandbox can produce, even in a debug build
//! on a loaded machine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use airlock::config::{DatabaseConfig, Secret};
use airlock::egress::hex_sha256;
use airlock::store::{CeilingsSource, EgressEntry, EgressEvent, EgressQuery, Store};
use airlock_wire::Outcome;
use serde_json::{json, Value};

mod common;
use common::{sandbox, user};

/// Stored policies as written before `allow_public`, and what each must become.
fn pre_change_policies() -> Vec<(Option<&'static str>, Value)> {
    vec![
        (None, json!({"allow_public": true})),
        (Some("{}"), json!({"allow_public": true})),
        (
            Some(r#"{"allow_domains":[]}"#),
            json!({"allow_public": true}),
        ),
        (
            Some(r#"{"allow_domains":null,"mode":"report"}"#),
            json!({"allow_public": true, "mode": "report"}),
        ),
        (
            Some(r#"{"allow_domains":["*.github.com"],"allow_ports":[443]}"#),
            json!({"allow_public": false, "allow_domains": ["*.github.com"], "allow_ports": [443]}),
        ),
        // Already written under the new rules: left alone.
        (
            Some(r#"{"allow_public":false,"allow_domains":[]}"#),
            json!({"allow_public": false, "allow_domains": []}),
        ),
    ]
}

/// The non-null fields of a stored policy.
fn fields(json: &str) -> Value {
    let mut value: Value = serde_json::from_str(json).unwrap();
    value.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    value
}

async fn migrates_stored_policies(config: DatabaseConfig) {
    let store = Store::connect(&config).await.unwrap();
    let mut ids = Vec::new();
    for (i, (policy, _)) in pre_change_policies().into_iter().enumerate() {
        let s = sandbox(&store, "upgrade").await;
        let entry = EgressEntry {
            sandbox_id: s.id,
            policy: policy.map(str::to_owned),
            policy_hash: "old".to_owned(),
            generation: 1,
            credential_hash: "ab".repeat(32),
            source_addr: format!("10.213.1.{}", i + 3).parse().unwrap(),
            ceiling: None,
        };
        store.save_egress_entry(&entry).await.unwrap();
        ids.push(s.id);
    }
    store.close().await;
    // The next start rewrites them, after the SQL migrations.
    let store = Store::connect(&config).await.unwrap();
    for (id, (before, want)) in ids.iter().zip(pre_change_policies()) {
        let entry = store.get_egress_entry(*id).await.unwrap().unwrap();
        let json = entry.policy.unwrap();
        assert_eq!(fields(&json), want, "{before:?} became {json}");
        if before.is_some_and(|b| b.contains("allow_public")) {
            assert_eq!(
                entry.policy_hash, "old",
                "an upgraded row is not touched again"
            );
        } else {
            assert_eq!(entry.policy_hash, hex_sha256(&json), "{before:?}");
        }
    }
    assert_eq!(
        store.upgrade_stored_policies().await.unwrap(),
        0,
        "idempotent"
    );
    store.close().await;
}

async fn imports_ceilings(store: Store) {
    assert_eq!(store.ceilings().await.unwrap(), None);
    let a = r#"{"roles":{"member":{"report_mode":true}}}"#;
    assert!(store.import_ceilings_file(a, "hash-a").await.unwrap());
    assert!(
        !store.import_ceilings_file(a, "hash-a").await.unwrap(),
        "same file"
    );
    let stored = store.ceilings().await.unwrap().unwrap();
    assert_eq!(
        (stored.source, stored.document.as_str()),
        (CeilingsSource::File, a)
    );
    // An admin's edit stays while the file is unchanged, and reports what it replaced.
    let admin = user(&store, "admin").await;
    let b = r#"{"roles":{"member":{"report_mode":false}}}"#;
    let before = store.replace_ceilings(b, admin.id).await.unwrap().unwrap();
    assert_eq!(before.document, a);
    assert!(!store.import_ceilings_file(a, "hash-a").await.unwrap());
    let stored = store.ceilings().await.unwrap().unwrap();
    assert_eq!(stored.source, CeilingsSource::Api);
    assert_eq!(stored.updated_by, Some(admin.id));
    assert_eq!(stored.file_sha256.as_deref(), Some("hash-a"));
    assert_eq!(stored.document, b);
    // An edited file replaces it at the next start.
    let c = r#"{"roles":{}}"#;
    assert!(store.import_ceilings_file(c, "hash-c").await.unwrap());
    let stored = store.ceilings().await.unwrap().unwrap();
    assert_eq!(
        (stored.source, stored.updated_by),
        (CeilingsSource::File, None)
    );
    assert_eq!(stored.document, c);
}

/// Stores 100,000 denied events of one sandbox in pages of 10,000 (the puller's page) and
/// returns the rate in events per second.
async fn drain_rate(store: &Store, backend: &str) -> f64 {
    const TOTAL: i64 = 100_000;
    const PAGE: i64 = 10_000;
    let s = sandbox(store, "flood").await;
    let id = s.id.to_string();
    let started = Instant::now();
    for page in 0..TOTAL / PAGE {
        let events: Vec<EgressEvent> = (1..=PAGE).map(|n| denied(&id, page * PAGE + n)).collect();
        let next = (page + 1) * PAGE;
        store
            .store_egress_events("local", &events, "f100d", next)
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    let rate = TOTAL as f64 / elapsed.as_secs_f64();
    eprintln!("ledger drain on {backend}: {TOTAL} events in {elapsed:?} = {rate:.0} events/s");
    let last = EgressQuery {
        after: Some((1_800_000_000_000 + TOTAL - 1, "f100d".to_owned(), TOTAL - 1)),
        limit: 10,
        ..EgressQuery::default()
    };
    let tail = store.list_egress_events(s.id, &last).await.unwrap();
    assert_eq!(tail.len(), 1, "the last event, once: {tail:?}");
    assert_eq!(tail[0].seq, TOTAL);
    assert_eq!(tail[0].ceiling.as_deref(), Some("role:member@0011aabb"));
    rate
}

fn denied(sandbox: &str, seq: i64) -> EgressEvent {
    EgressEvent {
        boot_id: "f100d".to_owned(),
        seq,
        sandbox_id: sandbox.to_owned(),
        generation: 1,
        method: "CONNECT".to_owned(),
        host: "10.0.0.1".to_owned(),
        port: 443,
        addr: Some("10.0.0.1:443".to_owned()),
        decision: Outcome::Deny,
        reason: "private".to_owned(),
        rule: None,
        bytes_up: 0,
        bytes_down: 0,
        start_ms: 1_800_000_000_000 + seq,
        duration_ms: 0,
        ceiling: Some("role:member@0011aabb".to_owned()),
        count: 1,
        tunnel: None,
        path: None,
        status: None,
        credential: None,
        mode: None,
    }
}

fn sqlite_file() -> (tempfile::TempDir, DatabaseConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join("airlock.db"),
    };
    (dir, config)
}

async fn postgres() -> (test_support::postgres::TestDatabase, DatabaseConfig) {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    (db, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_policies_keep_their_meaning_on_sqlite() {
    let (_dir, config) = sqlite_file();
    migrates_stored_policies(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_policies_keep_their_meaning_on_postgres() {
    let (_db, config) = postgres().await;
    migrates_stored_policies(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceilings_import_by_file_hash_on_sqlite() {
    let (_dir, config) = sqlite_file();
    imports_ceilings(Store::connect(&config).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceilings_import_by_file_hash_on_postgres() {
    let (_db, config) = postgres().await;
    imports_ceilings(Store::connect(&config).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_drain_rate_on_sqlite() {
    let (_dir, config) = sqlite_file();
    let store = Store::connect(&config).await.unwrap();
    let rate = drain_rate(&store, "sqlite").await;
    assert!(rate > 1_000.0, "{rate:.0} events/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_drain_rate_on_postgres() {
    let (_db, config) = postgres().await;
    let store = Store::connect(&config).await.unwrap();
    let rate = drain_rate(&store, "postgres").await;
    assert!(rate > 1_000.0, "{rate:.0} events/s");
}
