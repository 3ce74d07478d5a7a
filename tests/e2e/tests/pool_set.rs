//! The node's pools set while the controller runs (real DinD over mTLS, with the proxy): a
//! controller started without `AIRLOCK_POOLS` gets a pool from `PUT /v1/pools`, fills it and
//! serves a create warm; a size change keeps the pool's key, its members and its statistics;
//! `PUT /v1/pools []` removes every member at once (rows, containers), and a create after it
//! goes cold. A pool never holds more members than its size (a refill counts the members it
//! is still making). Each apply's time (API call → members ready or gone) is printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Instant;

use airlock::api::AppState;
use airlock::docker::spec::pool::LABEL_MEMBER;
use axum::http::{Method, StatusCode};
use e2e::controller::{api_call, tend};
use e2e::plane::{poll, Plane, PlaneOptions, TOKEN};
use e2e::Timing;
use serde_json::{json, Value};
use test_support::dind::TESTBOX_IMAGE;

async fn put_pools(state: &AppState, document: Value) -> Value {
    let (status, body) = api_call(state, TOKEN, Method::PUT, "/v1/pools", Some(document)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// `GET /v1/pools` once `done` holds for it.
async fn pools_when(state: &AppState, done: impl Fn(&Value) -> bool) -> Value {
    poll(|| async {
        let (status, body) = api_call(state, TOKEN, Method::GET, "/v1/pools", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        done(&body).then_some(body)
    })
    .await
}

/// The ids of the node's member containers.
async fn member_containers(f: &Plane) -> HashSet<String> {
    let containers = f.docker.node_containers("local").await.unwrap();
    containers
        .into_iter()
        .filter_map(|c| c.labels.get(LABEL_MEMBER).cloned())
        .collect()
}

async fn create(state: &AppState) -> String {
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let (status, made) = api_call(state, TOKEN, Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn pools_set_at_run_time_fill_serve_resize_and_go() {
    let mut timing = Timing::start("pool_set");
    let opts = PlaneOptions::new("pool_set", env!("CARGO_BIN_EXE_fake-dns"));
    let f = Plane::start(opts, &mut timing).await;
    let (stop, task) = tend(&f.state);
    let none = pools_when(&f.state, |p| p == &json!([])).await;
    assert_eq!(
        none,
        json!([]),
        "no pools without AIRLOCK_POOLS or a stored document"
    );

    let set = Instant::now();
    let doc = json!([{"image": TESTBOX_IMAGE, "size": 1, "max_idle_s": 600}]);
    let stored = put_pools(&f.state, doc).await;
    assert_eq!(stored["source"], "api", "{stored}");
    let pool = pools_when(&f.state, |p| p[0]["ready"] == 1).await;
    eprintln!("set → 1 member ready in {:?}: {pool}", set.elapsed());
    timing.phase("set-fill");

    let first = member_containers(&f).await;
    assert_eq!(
        first.len(),
        1,
        "never more members than the size: {first:?}"
    );
    let a = create(&f.state).await;
    assert!(first.contains(&a), "served warm by {first:?}: {a}");
    let pool = pools_when(&f.state, |p| p[0]["ready"] == 1).await;
    assert_eq!(pool[0]["claims"], 1, "{pool}");
    timing.phase("claim");

    // A bigger size: the same key, so the ready member stays and the statistics carry over.
    let before: HashSet<String> = member_containers(&f).await;
    let resized = Instant::now();
    let doc = json!([{"image": TESTBOX_IMAGE, "size": 2, "max_idle_s": 600}]);
    put_pools(&f.state, doc).await;
    let pool = pools_when(&f.state, |p| p[0]["ready"] == 2).await;
    eprintln!("resize 1 → 2 ready in {:?}: {pool}", resized.elapsed());
    assert_eq!(
        (pool[0]["size"].clone(), pool[0]["claims"].clone()),
        (json!(2), json!(1))
    );
    let after = member_containers(&f).await;
    assert!(before.is_subset(&after), "kept {before:?} in {after:?}");
    assert_eq!(after.len(), 3, "a's container and two members: {after:?}");
    timing.phase("resize");

    // No pools: every member goes at once (not a reconcile period later).
    let emptied = Instant::now();
    put_pools(&f.state, json!([])).await;
    poll(|| async {
        let rows = f.store.list_members("local").await.unwrap();
        let unclaimed: HashSet<String> = member_containers(&f)
            .await
            .into_iter()
            .filter(|id| id != &a)
            .collect();
        (rows.iter().all(|m| m.sandbox.is_some()) && unclaimed.is_empty()).then_some(())
    })
    .await;
    eprintln!("[] → every member gone in {:?}", emptied.elapsed());
    pools_when(&f.state, |p| p == &json!([])).await;
    let b = create(&f.state).await;
    assert!(!after.contains(&b), "a create without pools is cold");
    timing.phase("empty");

    for id in [&a, &b] {
        let uri = format!("/v1/sandboxes/{id}");
        let (status, body) = api_call(&f.state, TOKEN, Method::DELETE, &uri, None).await;
        assert!(status.is_success(), "{body}");
    }
    drop(stop);
    task.await.unwrap();
}
