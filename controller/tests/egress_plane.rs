//! The network plane against a fake proxy admin API (mTLS, on a loopback address of the
//! test's own): the infrastructure list is pushed before any entry after a proxy (re)start;
//! a policy change pushes the complete effective policy (`allow_public` explicit,
//! `allow_domains: []` meaning no names, absent meaning the default) with its ceiling label;
//! the ledger keeps each event's `ceiling` and `count`; an entry whose content changed under
//! an unchanged generation while no controller pushed is re-pushed under a bumped generation
//! when the proxy refuses it as a conflict; and the drain of a 100,000-event
//! spool through the admin client, printed in events per second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use airlock::accounts::user::Role;
use airlock::docker::spec::egress::ADMIN_PORT;
use airlock::sandbox::{SandboxId, SandboxRequest};
use airlock::store::{Created, EgressEntry, EgressQuery, NewSandbox};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

mod common;
use common::{account, app_with, call, maximums, AppOptions, TestApp};

#[path = "egress_plane/fake_proxy.rs"]
mod fake_proxy;
use fake_proxy::FakeProxy;

/// A loopback address no other test uses.
fn own_loopback() -> IpAddr {
    let b = uuid::Uuid::new_v4().into_bytes();
    IpAddr::V4(Ipv4Addr::new(127, 100 + b[0] % 100, b[1], 1 + b[2] % 250))
}

struct Plane {
    h: TestApp,
    fake: FakeProxy,
    _dir: tempfile::TempDir,
}

async fn plane(extra: &[(&str, &str)]) -> Plane {
    let dir = tempfile::tempdir().unwrap();
    let ip = own_loopback();
    let data = dir.path().to_str().unwrap().to_owned();
    let admin = ip.to_string();
    let mut vars = vec![
        ("AIRLOCK_DATA_DIR", data.as_str()),
        ("AIRLOCK_EGRESS_ADMIN_ADDR", admin.as_str()),
        ("AIRLOCK_INFRA_CIDRS", "10.77.0.0/16"),
    ];
    vars.extend_from_slice(extra);
    let h = app_with(AppOptions {
        token: Some("test-admin-token-0123456789"),
        vars: &vars,
        egress: true,
        ..AppOptions::default()
    })
    .await;
    let certs = dir.path().join("egress-certs").join("server");
    let fake = FakeProxy::start(ip, ADMIN_PORT, &certs).await;
    Plane { h, fake, _dir: dir }
}

/// A sandbox row of `owner` with a proxy entry written before `allow_public` existed.
async fn sandbox_with_entry(h: &TestApp, owner: airlock::accounts::user::UserId) -> SandboxId {
    let spec = SandboxRequest {
        image: "airlock/testbox:dev".to_owned(),
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap();
    let new = NewSandbox {
        owner,
        spec,
        idempotency_key: None,
        node: None,
    };
    let Created::New(sandbox) = h.store.create_sandbox(new).await.unwrap() else {
        panic!("a fresh sandbox");
    };
    let entry = EgressEntry {
        sandbox_id: sandbox.id,
        policy: Some("{}".to_owned()),
        policy_hash: "old".to_owned(),
        generation: 1,
        credential_hash: "ab".repeat(32),
        source_addr: "10.213.0.3".parse().unwrap(),
        ceiling: None,
    };
    h.store.save_egress_entry(&entry).await.unwrap();
    sandbox.id
}

fn wire_event(seq: u64, sandbox: &SandboxId, count: u64) -> Value {
    json!({
        "seq": seq, "sandbox": sandbox.to_string(), "generation": 2, "method": "CONNECT",
        "host": "10.0.0.1", "port": 443, "addr": "10.0.0.1:443", "decision": "deny",
        "reason": if count > 1 { "ledger_full" } else { "private" }, "rule": null,
        "bytes_up": 0, "bytes_down": 0, "start_ms": 1_800_000_000_000u64 + seq,
        "duration_ms": 0, "client": "10.213.0.3:40000",
        "ceiling": "role:member@0011aabb", "count": count
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infrastructure_first_then_complete_policies_with_their_ceiling() {
    let Plane { h, fake, _dir } = plane(&[]).await;
    let plane = h.plane.clone().unwrap();
    assert_eq!(plane.ensure().await.unwrap(), "b00701");
    let calls = fake.calls();
    assert_eq!(calls[0].0, "PUT /v1/infrastructure", "{calls:?}");
    let cidrs = calls[0].1["cidrs"].as_array().unwrap().clone();
    for want in ["10.77.0.0/16", "10.212.0.0/24", "10.213.0.0/16"] {
        assert!(cidrs.contains(&json!(want)), "{want} in {cidrs:?}");
    }

    let (member, session) = account(&h.store, "member", Role::Member).await;
    let id = sandbox_with_entry(&h, member.id).await;
    let uri = format!("/v1/sandboxes/{id}/policy");
    let put = format!("PUT /v1/sandboxes/{id}");
    // `[]` is no names; absent is the default (every public destination).
    for (asked, public, domains) in [
        (json!({"allow_domains": []}), false, json!([])),
        (json!({}), true, Value::Null),
        (
            json!({"allow_domains": ["example.com"]}),
            false,
            json!(["example.com"]),
        ),
    ] {
        let (status, body) = call(&h, &session, Method::PUT, &uri, Some(asked.clone())).await;
        assert_eq!(status, StatusCode::OK, "{asked}: {body}");
        let policy = &body["policy"];
        assert_eq!(
            (&policy["allow_public"], &policy["allow_domains"]),
            (&json!(public), &domains),
            "{body}"
        );
        assert_eq!(policy["allow_ports"], json!([80, 443]), "{body}");
        assert_eq!(policy["mode"], "enforce", "{body}");
        let (path, pushed) = fake.calls().last().cloned().unwrap();
        assert_eq!(path, put);
        assert_eq!(
            &pushed["policy"], policy,
            "the pushed policy is the effective one"
        );
        assert!(
            pushed["ceiling"]
                .as_str()
                .unwrap()
                .starts_with("role:member@"),
            "{pushed}"
        );
        assert_eq!(pushed["generation"], body["policy_generation"]);
    }

    // A proxy restart: the list again, then the entries.
    fake.state.lock().unwrap().boot_id = "b00702".to_owned();
    let before = fake.calls().len();
    plane.ensure().await.unwrap();
    let after: Vec<String> = fake.calls()[before..].iter().map(|c| c.0.clone()).collect();
    assert_eq!(
        after,
        vec!["PUT /v1/infrastructure".to_owned(), put.clone()]
    );
    assert!(fake.calls().last().unwrap().1["ceiling"]
        .as_str()
        .unwrap()
        .starts_with("role:member@"));

    // The ledger keeps each event's ceiling and count.
    fake.state
        .lock()
        .unwrap()
        .spool
        .extend([wire_event(1, &id, 1), wire_event(2, &id, 5)]);
    assert_eq!(plane.pull_ledger().await.unwrap(), 2);
    let (status, page) = call(
        &h,
        &session,
        Method::GET,
        &format!("/v1/sandboxes/{id}/egress"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (&items[1]["count"], &items[1]["reason"]),
        (&json!(5), &json!("ledger_full"))
    );
    assert_eq!(items[0]["ceiling"], "role:member@0011aabb");
    let (_, summary) = call(
        &h,
        &session,
        Method::GET,
        &format!("/v1/sandboxes/{id}/egress/summary"),
        None,
    )
    .await;
    assert_eq!(summary["hosts"][0]["denied"], 6, "{summary}");
    assert!(fake.state.lock().unwrap().spool.is_empty(), "acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_keeps_up_with_a_flood() {
    const TOTAL: u64 = 100_000;
    let Plane { h, fake, _dir } = plane(&[]).await;
    let plane = h.plane.clone().unwrap();
    let (member, _) = account(&h.store, "member", Role::Member).await;
    let id = sandbox_with_entry(&h, member.id).await;
    fake.state
        .lock()
        .unwrap()
        .spool
        .extend((1..=TOTAL).map(|seq| wire_event(seq, &id, 1)));
    let started = Instant::now();
    let pulled = plane.pull_ledger().await.unwrap();
    let elapsed = started.elapsed();
    let rate = TOTAL as f64 / elapsed.as_secs_f64();
    eprintln!("ledger drain through the admin API (SQLite in memory): {TOTAL} events in {elapsed:?} = {rate:.0} events/s");
    assert_eq!(pulled, usize::try_from(TOTAL).unwrap());
    assert!(
        fake.state.lock().unwrap().spool.is_empty(),
        "every page acknowledged"
    );
    let last = EgressQuery {
        after: Some((
            1_800_000_000_000 + TOTAL as i64 - 1,
            "b00701".to_owned(),
            TOTAL as i64 - 1,
        )),
        limit: 10,
        ..EgressQuery::default()
    };
    assert_eq!(
        h.store.list_egress_events(id, &last).await.unwrap().len(),
        1
    );
    assert!(rate > 1_000.0, "{rate:.0} events/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_deny_pushes_nothing_until_an_allow_list_is_set() {
    let Plane { h, fake, _dir } = plane(&[("AIRLOCK_DEFAULT_POLICY", "deny")]).await;
    h.plane.clone().unwrap().ensure().await.unwrap();
    let (member, session) = account(&h.store, "member", Role::Member).await;
    let id = sandbox_with_entry(&h, member.id).await;
    let uri = format!("/v1/sandboxes/{id}/policy");
    for (asked, public, domains) in [
        (json!({}), false, json!([])),
        (json!({"allow_ports": [8443]}), false, json!([])),
        (
            json!({"allow_domains": ["example.com"]}),
            false,
            json!(["example.com"]),
        ),
        (json!({"allow_public": true}), true, json!([])),
    ] {
        let (status, body) = call(&h, &session, Method::PUT, &uri, Some(asked.clone())).await;
        assert_eq!(status, StatusCode::OK, "{asked}: {body}");
        let pushed = fake.calls().last().cloned().unwrap().1;
        let policy = &pushed["policy"];
        assert_eq!(
            (&policy["allow_public"], &policy["allow_domains"]),
            (&json!(public), &domains),
            "{asked}: {pushed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_equal_generation_is_bumped_and_pushed_again() {
    let Plane { h, fake, _dir } = plane(&[]).await;
    let plane = h.plane.clone().unwrap();
    let (member, _session) = account(&h.store, "member", Role::Member).await;
    let id = sandbox_with_entry(&h, member.id).await;
    plane.ensure().await.unwrap();
    let put = format!("PUT /v1/sandboxes/{id}");
    let first = fake.calls().last().cloned().unwrap();
    assert_eq!(
        (first.0.as_str(), &first.1["generation"]),
        (put.as_str(), &json!(1))
    );

    // While no controller pushed, the entry's content changed under the same generation (as
    // a rotated bound secret does); a new controller process, or a proxy that kept its
    // table across a new boot id, must end up holding the new content.
    let mut changed = h.store.get_egress_entry(id).await.unwrap().unwrap();
    changed.credential_hash = "cd".repeat(32);
    h.store.save_egress_entry(&changed).await.unwrap();
    fake.state.lock().unwrap().boot_id = "b00702".to_owned();
    let before = fake.calls().len();
    plane.ensure().await.unwrap();

    let after: Vec<(String, Value)> = fake.calls()[before..].to_vec();
    let paths: Vec<&str> = after.iter().map(|c| c.0.as_str()).collect();
    let refused = format!("{put} refused");
    assert_eq!(
        paths,
        vec!["PUT /v1/infrastructure", refused.as_str(), put.as_str()],
        "{after:?}"
    );
    let (_, pushed) = after.last().unwrap();
    assert_eq!(pushed["generation"], 2, "bumped, never lowered");
    assert_eq!(pushed["credential_hash"], json!("cd".repeat(32)));
    let stored = h.store.get_egress_entry(id).await.unwrap().unwrap();
    assert_eq!(stored.generation, 2);
    let held = fake.state.lock().unwrap().entries[&id.to_string()].0;
    assert_eq!(held, 2, "the proxy holds the current content");

    // An equal generation with equal content stays idempotent: nothing is bumped.
    fake.state.lock().unwrap().boot_id = "b00703".to_owned();
    plane.ensure().await.unwrap();
    let stored = h.store.get_egress_entry(id).await.unwrap().unwrap();
    assert_eq!(stored.generation, 2);
}
