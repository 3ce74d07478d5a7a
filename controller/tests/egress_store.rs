//! Network-plane rows on both backends: a sandbox's proxy entry (saved, policy updates bump
//! the generation, only live sandboxes are re-pushed), and the egress ledger (idempotent by
//! `(boot_id, seq)` with its cursor in the same transaction, filtered pages, per-host totals
//! that count a summary row's `count`, and each row's `ceiling`), and the rows of requests
//! inside an inspected tunnel (their columns, and a tunnel's bytes counted once).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::config::{DatabaseConfig, Secret};
use airlock::sandbox::{EndReason, SandboxEvent};
use airlock::store::{EgressEntry, EgressEvent, EgressQuery, Sandbox, Store};
use airlock_wire::Outcome;

mod common;
use common::sandbox;

fn event(
    boot: &str,
    seq: i64,
    sandbox: &str,
    host: &str,
    decision: &str,
    down: i64,
) -> EgressEvent {
    EgressEvent {
        boot_id: boot.to_owned(),
        seq,
        sandbox_id: sandbox.to_owned(),
        generation: 1,
        method: "GET".to_owned(),
        host: host.to_owned(),
        port: 80,
        addr: Some("192.0.2.7:80".to_owned()),
        decision: decision.parse().unwrap(),
        reason: if decision == "allow" {
            "allowed"
        } else {
            "private"
        }
        .to_owned(),
        rule: None,
        bytes_up: 10,
        bytes_down: down,
        start_ms: 1_800_000_000_000 + seq,
        duration_ms: 3,
        ceiling: Some("role:member@0011aabb".to_owned()),
        count: 1,
        tunnel: None,
        path: None,
        status: None,
        credential: None,
        mode: None,
    }
}

async fn exercise(store: Store) {
    let a = sandbox(&store, "egress").await;
    let b = sandbox(&store, "egress").await;
    let entry = |s: &Sandbox, last: u8| EgressEntry {
        sandbox_id: s.id,
        policy: Some("{}".to_owned()),
        policy_hash: "h1".to_owned(),
        generation: 1,
        credential_hash: "ab".repeat(32),
        source_addr: format!("10.213.0.{last}").parse().unwrap(),
        ceiling: Some("role:member@0011aabb".to_owned()),
    };
    assert_eq!(store.get_egress_entry(a.id).await.unwrap(), None);
    store.save_egress_entry(&entry(&a, 3)).await.unwrap();
    store.save_egress_entry(&entry(&b, 11)).await.unwrap();
    assert_eq!(
        store.get_egress_entry(a.id).await.unwrap(),
        Some(entry(&a, 3))
    );

    let updated = store
        .update_egress_policy(
            a.id,
            Some(r#"{"mode":"report"}"#),
            "h2",
            Some("user:x@12345678"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.ceiling.as_deref(), Some("user:x@12345678"));
    assert_eq!(updated.policy_hash, "h2");
    assert_eq!(updated.credential_hash, "ab".repeat(32));

    // Only sandboxes that have not ended are re-pushed to a restarted proxy.
    assert_eq!(store.live_egress_entries().await.unwrap().len(), 2);
    let ended = SandboxEvent::Ended(EndReason::Lost);
    store
        .record_transition(b.id, b.generation, &ended)
        .await
        .unwrap();
    let live = store.live_egress_entries().await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].sandbox_id, a.id);

    // The ledger: a page stored twice is stored once; the cursor moves with it.
    let sid = a.id.to_string();
    let page = vec![
        event("boot1", 1, &sid, "example.com", "allow", 100),
        event("boot1", 2, &sid, "10.0.0.1", "deny", 0),
        event("boot1", 3, &sid, "example.com", "allow", 50),
        // A summary row: three refusals the proxy could not spool one by one.
        EgressEvent {
            reason: "ledger_full".to_owned(),
            count: 3,
            ceiling: Some("user:x@12345678".to_owned()),
            ..event("boot1", 4, &sid, "flood.example", "deny", 0)
        },
    ];
    assert_eq!(store.egress_cursor("local").await.unwrap(), None);
    store
        .store_egress_events("local", &page, "boot1", 4)
        .await
        .unwrap();
    store
        .store_egress_events("local", &page, "boot1", 4)
        .await
        .unwrap();
    assert_eq!(
        store.egress_cursor("local").await.unwrap(),
        Some(("boot1".to_owned(), 4))
    );
    let all = EgressQuery {
        limit: 100,
        ..EgressQuery::default()
    };
    assert_eq!(store.list_egress_events(a.id, &all).await.unwrap(), page);
    assert!(store
        .list_egress_events(b.id, &all)
        .await
        .unwrap()
        .is_empty());

    let denied = EgressQuery {
        decision: Some(Outcome::Deny),
        ..all.clone()
    };
    assert_eq!(
        store.list_egress_events(a.id, &denied).await.unwrap(),
        vec![page[1].clone(), page[3].clone()]
    );
    let host = EgressQuery {
        host: Some("example.com".to_owned()),
        limit: 1,
        ..EgressQuery::default()
    };
    let first = store.list_egress_events(a.id, &host).await.unwrap();
    assert_eq!(first, vec![page[0].clone()]);
    let next = EgressQuery {
        after: Some((first[0].start_ms, first[0].boot_id.clone(), first[0].seq)),
        ..host.clone()
    };
    assert_eq!(
        store.list_egress_events(a.id, &next).await.unwrap(),
        vec![page[2].clone()]
    );

    let summary = store.egress_summary(a.id).await.unwrap();
    assert_eq!(summary.len(), 3);
    assert_eq!(
        (
            summary[0].host.as_str(),
            summary[0].total,
            summary[0].denied
        ),
        ("flood.example", 3, 3)
    );
    assert_eq!(summary[1].host, "example.com");
    assert_eq!(
        (summary[1].total, summary[1].allowed, summary[1].bytes_down),
        (2, 2, 150)
    );
    assert_eq!(
        (summary[2].host.as_str(), summary[2].denied),
        ("10.0.0.1", 1)
    );

    // The entry goes with its sandbox.
    store.delete_sandbox(a.id, a.generation).await.unwrap();
    assert_eq!(store.get_egress_entry(a.id).await.unwrap(), None);

    inspected_rows(&store).await;
}

/// A terminated tunnel's row and the rows of two requests inside it (one refused by a rule).
fn tunnel_page(boot: &str, sid: &str) -> Vec<EgressEvent> {
    let request = |seq: i64, path: &str, status: i64, up: i64, down: i64| EgressEvent {
        method: "POST".to_owned(),
        tunnel: Some(7),
        path: Some(path.to_owned()),
        status: Some(status),
        credential: (status == 200).then(|| "anthropic".to_owned()),
        mode: Some("terminate".to_owned()),
        bytes_up: up,
        rule: (status == 200).then(|| "POST /v1/messages".to_owned()),
        ..event(boot, seq, sid, "api.test", "allow", down)
    };
    vec![
        request(1, "/v1/messages", 200, 2, 11),
        EgressEvent {
            reason: "rule_denied".to_owned(),
            ..request(2, "/a/b/c", 403, 0, 60)
        },
        // The tunnel's own row: its total, TLS included, recorded when it closed.
        EgressEvent {
            method: "CONNECT".to_owned(),
            tunnel: Some(7),
            mode: Some("terminate".to_owned()),
            bytes_up: 900,
            ..event(boot, 3, sid, "api.test", "allow", 4000)
        },
    ]
}

/// Request rows keep their new columns on both backends, and the summary counts each row as
/// an event but a tunnel's bytes once (from its own row).
async fn inspected_rows(store: &Store) {
    let s = sandbox(store, "egress").await;
    let sid = s.id.to_string();
    let page = tunnel_page("boot2", &sid);
    store
        .store_egress_events("local", &page, "boot2", 3)
        .await
        .unwrap();
    let all = EgressQuery {
        limit: 100,
        ..EgressQuery::default()
    };
    assert_eq!(store.list_egress_events(s.id, &all).await.unwrap(), page);
    let summary = store.egress_summary(s.id).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        (summary[0].total, summary[0].allowed, summary[0].denied),
        (3, 3, 0)
    );
    assert_eq!(
        (summary[0].bytes_up, summary[0].bytes_down),
        (900, 4000),
        "the tunnel's bytes are counted once"
    );

    // Past the per-sandbox cap, request rows fold into summary rows without their bytes.
    let t = sandbox(store, "egress").await;
    let tid = t.id.to_string();
    let page = tunnel_page("boot3", &tid);
    store
        .store_egress_events_capped("local", &page, "boot3", 3, 0)
        .await
        .unwrap();
    let summary = store.egress_summary(t.id).await.unwrap();
    assert_eq!(summary[0].total, 3);
    assert_eq!((summary[0].bytes_up, summary[0].bytes_down), (900, 4000));
    store.delete_sandbox(s.id, s.generation).await.unwrap();
    store.delete_sandbox(t.id, t.generation).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_rows_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        path: dir.path().join("airlock.db"),
    };
    exercise(Store::connect(&config).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_rows_on_postgres() {
    let db = tokio::task::spawn_blocking(test_support::postgres::database)
        .await
        .unwrap()
        .unwrap();
    let config = DatabaseConfig::Postgres {
        url: Secret::new(db.url()),
    };
    exercise(Store::connect(&config).await.unwrap()).await;
}
