//! In-process tests of the network plane's routes, over in-memory SQLite with the plane off
//! and a Docker client pointed at a loopback port where nothing listens: input checks, 404s
//! for unknown sandboxes, and what a sandbox without a proxy entry answers. The routes with
//! the plane on are covered against a real proxy in `tests/e2e/tests/network_plane.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::bootstrap_admin;
use airlock::api::app;
use airlock::config::Config;
use airlock::sandbox::SandboxRequest;
use airlock::store::{Created, NewSandbox};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{app_with, AppOptions, TestApp};

const TOKEN: &str = "test-admin-token-0123456789";
const UNKNOWN: &str = "0190a4a0-0000-7000-8000-000000000000";

type Harness = TestApp;

async fn harness() -> Harness {
    app_with(AppOptions {
        token: Some(TOKEN),
        ..AppOptions::default()
    })
    .await
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A sandbox row with no container and no proxy entry.
    async fn sandbox(&self) -> String {
        let store = &self.store;
        let admin = bootstrap_admin(store).await.unwrap();
        let config = Config::from_lookup(|_| None).unwrap();
        let spec = SandboxRequest {
            image: "airlock/testbox:dev".to_owned(),
            ..SandboxRequest::default()
        }
        .validate(&config.maximums)
        .unwrap();
        let new = NewSandbox {
            owner: admin,
            spec,
            idempotency_key: None,
            node: None,
        };
        let Created::New(sandbox) = store.create_sandbox(new).await.unwrap() else {
            panic!("expected a new sandbox");
        };
        sandbox.id.to_string()
    }
}

#[tokio::test]
async fn unknown_sandboxes_are_404_everywhere() {
    let h = harness().await;
    for (method, path, body) in [
        (Method::PUT, "policy", Some(json!({}))),
        (Method::GET, "egress", None),
        (Method::GET, "egress/summary", None),
    ] {
        let uri = format!("/v1/sandboxes/{UNKNOWN}/{path}");
        let (status, body) = h.call(method, &uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert_eq!(body["error"], "not_found", "{body}");
    }
}

#[tokio::test]
async fn bad_policies_and_parameters_are_400s_naming_the_field() {
    let h = harness().await;
    let id = h.sandbox().await;
    let table = [
        json!({"allow_domains": ["*.com"]}),
        json!({"allow_ports": [0]}),
        json!({"mode": "audit"}),
        json!({"allow_domain": []}),
        json!({"allow_cidrs": ["not a cidr"]}),
    ];
    for policy in table {
        let uri = format!("/v1/sandboxes/{id}/policy");
        let (status, body) = h.call(Method::PUT, &uri, Some(policy.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{policy}: {body}");
        assert_eq!(body["fields"][0]["field"], "policy", "{policy}: {body}");
    }
    for (query, field) in [
        ("decision=maybe", "decision"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=garbage", "cursor"),
    ] {
        let uri = format!("/v1/sandboxes/{id}/egress?{query}");
        let (status, body) = h.call(Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["fields"][0]["field"], field, "{query}: {body}");
    }
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{id}/egress?color=red"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn with_the_plane_off_policies_are_refused_and_the_ledger_is_empty() {
    let h = harness().await;
    let create = json!({"image": "airlock/testbox:dev", "policy": {"mode": "report"}});
    let (status, body) = h.call(Method::POST, "/v1/sandboxes", Some(create)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["fields"][0]["field"], "policy", "{body}");

    let id = h.sandbox().await;
    let uri = format!("/v1/sandboxes/{id}/policy");
    let (status, body) = h
        .call(Method::PUT, &uri, Some(json!({"mode": "report"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .call(Method::GET, &format!("/v1/sandboxes/{id}/egress"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"items": [], "next": null}));
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{id}/egress/summary"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"hosts": [], "mode": "enforce"}));
}

#[tokio::test]
async fn request_rows_of_an_inspected_tunnel_show_their_fields_and_count_bytes_once() {
    let h = harness().await;
    let id = h.sandbox().await;
    let row = |seq: i64, method: &str, up: i64, down: i64| airlock::store::EgressEvent {
        boot_id: "0a1b".to_owned(),
        seq,
        sandbox_id: id.clone(),
        generation: 1,
        method: method.to_owned(),
        host: "api.test".to_owned(),
        port: 443,
        addr: Some("192.0.2.7:443".to_owned()),
        decision: airlock_wire::Outcome::Allow,
        reason: "allowed".to_owned(),
        rule: None,
        bytes_up: up,
        bytes_down: down,
        start_ms: 1_800_000_000_000 + seq,
        duration_ms: 3,
        ceiling: None,
        count: 1,
        tunnel: Some(4),
        path: None,
        status: None,
        credential: None,
        mode: Some("terminate".to_owned()),
    };
    let page = vec![
        airlock::store::EgressEvent {
            path: Some("/v1/messages".to_owned()),
            status: Some(200),
            credential: Some("anthropic".to_owned()),
            ..row(1, "POST", 2, 11)
        },
        row(2, "CONNECT", 700, 3000),
    ];
    h.store
        .store_egress_events("local", &page, "0a1b", 2)
        .await
        .unwrap();
    let (status, body) = h
        .call(Method::GET, &format!("/v1/sandboxes/{id}/egress"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = &body["items"][0];
    assert_eq!(request["tunnel"], "0a1b.4", "{body}");
    assert_eq!(request["path"], "/v1/messages");
    assert_eq!(request["status"], 200);
    assert_eq!(request["credential"], "anthropic");
    assert_eq!(request["mode"], "terminate");
    let tunnel = &body["items"][1];
    assert_eq!(tunnel["tunnel"], "0a1b.4", "the request names its tunnel");
    for absent in ["path", "status", "credential"] {
        assert!(
            tunnel.get(absent).is_none(),
            "{absent} on the tunnel row: {body}"
        );
    }
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{id}/egress/summary"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let host = &body["hosts"][0];
    assert_eq!(host["total"], 2, "{body}");
    assert_eq!(
        (host["bytes_up"].clone(), host["bytes_down"].clone()),
        (json!(700), json!(3000))
    );
}
