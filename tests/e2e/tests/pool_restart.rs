//! The node across the controller's start and its daemon's restart, through the real controller
//! on a DinD over mTLS with the proxy.
//!
//! At start the controller fills the runtime volume (through a helper of the proxy's image) and
//! removes the runtime volumes of other init binaries, except one a container still mounts.
//!
//! Warm pools across a restart of the node's daemon: every member dies with the daemon. A create that claims a dead
//! member (pool tending is stopped, so nothing replaced it yet) destroys it and is made cold
//! under the same sandbox id, and runs (`pool_miss{reason="claim_failed"}`, no claim counted).
//! Once tending runs again, the dead members are destroyed and replaced by new ones, and the
//! next create is served warm by one of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Instant;

use airlock::api::AppState;
use airlock::docker::spec::runtime::runtime_volume_body;
use airlock::pool::MemberState;
use axum::http::{Method, StatusCode};
use e2e::controller::{api_call, tend};
use e2e::plane::{poll, Plane, PlaneOptions, EGRESS_IMAGE, TOKEN};
use e2e::Timing;
use serde_json::{json, Value};
use test_support::dind::TESTBOX_IMAGE;

/// An init binary's hash no node runs.
const OLD_RUNTIME: &str = "0123456789ab";
/// Another, mounted by a container.
const HELD_RUNTIME: &str = "ba9876543210";

/// The names of the node's runtime volumes.
async fn runtime_volumes(f: &Plane) -> HashSet<String> {
    let ls = [
        "docker",
        "volume",
        "ls",
        "--filter",
        "label=airlock.runtime",
        "--format",
        "{{.Name}}",
    ];
    let out = f.dind.exec_in_dind(&ls).await.unwrap();
    assert!(out.success(), "{out:?}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// `GET /v1/pools`' only pool.
async fn pool(state: &AppState) -> Value {
    let (status, body) = api_call(state, TOKEN, Method::GET, "/v1/pools", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body[0].clone()
}

/// The ids of the node's ready members.
async fn ready_members(f: &Plane) -> HashSet<String> {
    let members = f.store.list_members("local").await.unwrap();
    members
        .iter()
        .filter(|m| m.state == MemberState::Ready)
        .map(|m| m.id.sandbox_id().to_string())
        .collect()
}

/// Creates a sandbox that writes `value` to /tmp/seen, checks it runs, and returns its id.
async fn create_and_see(f: &Plane, value: &str) -> String {
    let started = Instant::now();
    let body = json!({"image": TESTBOX_IMAGE,
                      "cmd": ["sh", "-c", format!("echo {value} > /tmp/seen; exec sleep 300")]});
    let (status, made) = api_call(&f.state, TOKEN, Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["state"], "running", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    eprintln!("create {value}: {:?}", started.elapsed());
    let seen = poll(|| async {
        let out = f.exec(&id, &["cat", "/tmp/seen"]).await;
        (!out.is_empty()).then_some(out)
    })
    .await;
    assert_eq!(seen.trim(), value);
    id
}

#[tokio::test]
async fn members_that_died_with_the_daemon_are_never_served_and_are_replaced() {
    let mut timing = Timing::start("pool_restart");
    let mut opts = PlaneOptions::new("pool_restart", env!("CARGO_BIN_EXE_fake-dns"));
    let pools = json!([{"image": TESTBOX_IMAGE, "size": 2, "max_idle_s": 600}]);
    opts.env = vec![("AIRLOCK_POOLS".to_owned(), pools.to_string())];
    let f = Plane::start(opts, &mut timing).await;

    // Two runtime volumes of older binaries, one mounted by a (never started) container.
    for sha in [OLD_RUNTIME, HELD_RUNTIME] {
        f.docker
            .create_volume(runtime_volume_body(sha, "local"))
            .await
            .unwrap();
    }
    let held = format!("airlock-runtime-{HELD_RUNTIME}");
    let mount = format!("{held}:/old:ro");
    let holder = ["docker", "create", "-v", &mount, TESTBOX_IMAGE, "true"];
    assert!(f.dind.exec_in_dind(&holder).await.unwrap().success());
    f.state
        .services
        .sandboxes
        .prepare_runtime(EGRESS_IMAGE)
        .await;
    let volumes = runtime_volumes(&f).await;
    assert!(
        !volumes.contains(&format!("airlock-runtime-{OLD_RUNTIME}")),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&held),
        "a mounted volume stays: {volumes:?}"
    );
    assert_eq!(
        volumes.len(),
        2,
        "the current one and the held one: {volumes:?}"
    );
    timing.phase("runtime");

    let (stop, task) = tend(&f.state);
    poll(|| async { (pool(&f.state).await["ready"] == 2).then_some(()) }).await;
    drop(stop);
    task.await.unwrap();
    let before = ready_members(&f).await;
    assert_eq!(before.len(), 2, "{before:?}");
    timing.phase("fill");

    let restarted = Instant::now();
    f.dind.restart().await.unwrap();
    eprintln!("DinD restarted in {:?}", restarted.elapsed());
    timing.phase("restart");

    // Both members' rows still say ready; their containers are gone with the old daemon.
    let a = create_and_see(&f, "after-restart").await;
    assert!(
        before.contains(&a),
        "the create claimed a dead member, so it keeps that member's id: {a} not in {before:?}"
    );
    let metrics = f.state.services.metrics().render(&Default::default());
    assert!(
        metrics.contains("airlock_pool_miss_total{reason=\"claim_failed\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        pool(&f.state).await["claims"],
        0,
        "a failed claim is no claim"
    );
    timing.phase("claim-failed-cold");

    // Tending again: the start pass destroys the dead member, the refill makes new ones.
    let replaced = Instant::now();
    let (stop, task) = tend(&f.state);
    let after = poll(|| async {
        let ready = ready_members(&f).await;
        (ready.len() == 2 && ready.is_disjoint(&before)).then_some(ready)
    })
    .await;
    eprintln!("members replaced in {:?}", replaced.elapsed());
    let leftovers = f.store.list_members("local").await.unwrap();
    assert_eq!(leftovers.len(), 2, "only the new members: {leftovers:?}");
    timing.phase("replaced");

    let b = create_and_see(&f, "warm-again").await;
    assert!(after.contains(&b), "served warm: {b} not in {after:?}");
    assert_eq!(pool(&f.state).await["claims"], 1);
    timing.phase("warm-again");

    for id in [&a, &b] {
        let uri = format!("/v1/sandboxes/{id}");
        let (status, body) = api_call(&f.state, TOKEN, Method::DELETE, &uri, None).await;
        assert!(status.is_success(), "{body}");
    }
    drop(stop);
    task.await.unwrap();
}
