//! In-process API tests: `app(state).oneshot(request)` over in-memory SQLite, with a Docker
//! client pointed at a loopback port where nothing listens. Everything here is decided before
//! Docker is asked (auth, parsing, validation, lookups), so no daemon is needed; requests that
//! do reach Docker show how an unreachable node surfaces (a generic 500, a 503 readiness).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::bootstrap_admin;
use airlock::api::app;
use airlock::config::Config;
use airlock::sandbox::{SandboxRequest, SandboxState};
use airlock::store::NewSandbox;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{app_with, AppOptions, TestApp};

const TOKEN: &str = "test-admin-token-0123456789";

type Harness = TestApp;

async fn harness_with_token(token: Option<&str>) -> Harness {
    let harness = app_with(AppOptions {
        token,
        ..AppOptions::default()
    })
    .await;
    // The same admin on a second call: bootstrap is idempotent.
    assert_eq!(
        bootstrap_admin(&harness.store).await.unwrap(),
        harness.admin
    );
    harness
}

async fn harness() -> Harness {
    harness_with_token(Some(TOKEN)).await
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("non-JSON body {bytes:?}: {e}"))
        };
        Reply { status, body }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let request = authed(method, uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        self.send(request).await
    }
}

fn authed(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
}

fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert_eq!(reply.body["error"], code, "body: {}", reply.body);
    assert!(reply.body["message"].is_string(), "body: {}", reply.body);
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let h = harness().await;
    let request = Request::get("/healthz").body(Body::empty()).unwrap();
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn v1_refuses_missing_or_wrong_tokens() {
    let h = harness().await;
    let cases: [(&str, Option<String>); 5] = [
        ("no header", None),
        ("wrong token", Some("Bearer wrong-token-0123456789".into())),
        ("token prefix", Some(format!("Bearer {}", &TOKEN[..10]))),
        ("basic scheme", Some(format!("Basic {TOKEN}"))),
        ("bare token", Some(TOKEN.to_owned())),
    ];
    for (what, header) in cases {
        for (method, uri) in [
            (Method::GET, "/v1/sandboxes"),
            (Method::POST, "/v1/sandboxes"),
            (
                Method::DELETE,
                "/v1/sandboxes/0190a4a0-0000-7000-8000-000000000000",
            ),
        ] {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(header) = &header {
                request = request.header("authorization", header);
            }
            let reply = h.send(request.body(Body::empty()).unwrap()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what} {uri}");
            assert_eq!(reply.body["error"], "unauthorized", "{what}");
        }
    }
    let ok = h.call(Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(ok.status, StatusCode::OK, "control: {}", ok.body);
}

#[tokio::test]
async fn without_a_configured_token_everything_is_refused() {
    // A fresh instance: no admin token and no account with a password or API token. The
    // refusal says how to bootstrap.
    let h = harness_with_token(None).await;
    let reply = h.call(Method::GET, "/v1/sandboxes", None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "not_bootstrapped");
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.contains("AIRLOCK_BOOTSTRAP_ADMIN_EMAIL"),
        "{message}"
    );
}

/// A create request that is valid except for what each case changes.
fn valid() -> Value {
    json!({"image": "airlock/testbox:dev", "cmd": ["sleep", "300"]})
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

#[tokio::test]
async fn bad_input_on_every_field_is_a_400_naming_the_field() {
    let h = harness().await;
    let long = "x".repeat(70_000);
    let cases: Vec<(Value, &str)> = vec![
        (with("image", json!("")), "image"),
        (with("image", json!("UPPER/Case")), "image"),
        (with("image", json!("a".repeat(600))), "image"),
        (with("cmd", json!(vec!["x"; 300])), "cmd"),
        (with("cmd", json!([long])), "cmd"),
        (with("env", json!({"1BAD": "x"})), "env.1BAD"),
        (with("env", json!({"HTTP_PROXY": "x"})), "env.HTTP_PROXY"),
        (
            with("env", json!({"SSL_CERT_FILE": "x"})),
            "env.SSL_CERT_FILE",
        ),
        (
            with("env", json!({"NODE_EXTRA_CA_CERTS": "x"})),
            "env.NODE_EXTRA_CA_CERTS",
        ),
        (with("env", json!({"AIRLOCK_X": "x"})), "env.AIRLOCK_X"),
        (with("env", json!({"OK": "a\u{0}b"})), "env.OK.value"),
        (with("limits", json!({"cpus": 0.0})), "limits.cpus"),
        (with("limits", json!({"cpus": 64.0})), "limits.cpus"),
        (with("limits", json!({"memory_mb": 1})), "limits.memory_mb"),
        (
            with("limits", json!({"memory_mb": 1_000_000})),
            "limits.memory_mb",
        ),
        (with("limits", json!({"pids": 1})), "limits.pids"),
        (with("limits", json!({"pids": 1_000_000})), "limits.pids"),
        (with("limits", json!({"disk_mb": 100})), "limits.disk_mb"),
        (with("timeout_s", json!(0)), "timeout_s"),
        (with("timeout_s", json!(10_000_000)), "timeout_s"),
        (with("idle_timeout_s", json!(0)), "idle_timeout_s"),
        (
            json!({"image": "airlock/testbox:dev", "timeout_s": 60, "idle_timeout_s": 120}),
            "idle_timeout_s",
        ),
        (
            with("labels", json!({"airlock.sandbox.id": "x"})),
            "labels.airlock.sandbox.id",
        ),
        (
            with("labels", json!({"AIRLOCK.node": "x"})),
            "labels.AIRLOCK.node",
        ),
        (with("labels", json!({"bad key": "x"})), "labels.bad key"),
        (with("policy", json!({"mode": "enforce"})), "policy"),
    ];
    for (body, field) in cases {
        let reply = h
            .call(Method::POST, "/v1/sandboxes", Some(body.clone()))
            .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
        let fields: Vec<&str> = reply.body["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("no fields for {body}: {}", reply.body))
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{field} not among {fields:?} for {body}"
        );
        for f in reply.body["fields"].as_array().unwrap() {
            assert!(!f["reason"].as_str().unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let h = harness().await;
    let body = json!({
        "image": "",
        "env": {"1BAD": "x"},
        "limits": {"pids": 1},
        "labels": {"airlock.x": "y"},
    });
    let reply = h.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        reply.body["fields"].as_array().unwrap().len(),
        4,
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn malformed_bodies_and_headers_are_400s() {
    let h = harness().await;
    let cases: Vec<(&str, &str)> = vec![
        ("not json", "invalid_json"),
        // `image` may be left out for a preset; without one it is still required.
        ("{}", "invalid_request"),
        (r#"{"image": 5}"#, "invalid_json"),
        (r#"{"image": "a", "unknown": 1}"#, "invalid_json"),
        (r#"{"image": "a", "limits": {"gpus": 1}}"#, "invalid_json"),
        (r#"{"image": "a", "timeout_s": -1}"#, "invalid_json"),
        (r#"{"image": "a", "cmd": "sleep 1"}"#, "invalid_json"),
    ];
    for (body, code) in cases {
        let request = authed(Method::POST, "/v1/sandboxes")
            .body(Body::from(body))
            .unwrap();
        let reply = h.send(request).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, code);
    }
    for key in ["", &"k".repeat(256), "has space"] {
        let request = authed(Method::POST, "/v1/sandboxes")
            .header("idempotency-key", key)
            .body(Body::from(valid().to_string()))
            .unwrap();
        let reply = h.send(request).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    }
}

#[tokio::test]
async fn unknown_sandboxes_are_404_and_delete_is_idempotent() {
    let h = harness().await;
    for id in ["0190a4a0-0000-7000-8000-000000000000", "not-a-uuid"] {
        for (method, uri) in [
            (Method::GET, format!("/v1/sandboxes/{id}")),
            (Method::POST, format!("/v1/sandboxes/{id}/stop")),
            (Method::GET, format!("/v1/sandboxes/{id}/wait")),
        ] {
            let reply = h.call(method, &uri, None).await;
            assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
        }
        let uri = format!("/v1/sandboxes/{id}");
        let reply = h.call(Method::DELETE, &uri, None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    let reply = h.call(Method::GET, "/v1/nothing-here", None).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn list_and_get_read_the_store() {
    let h = harness().await;
    let store = h.store.clone();
    let admin = bootstrap_admin(&store).await.unwrap();
    let config = Config::from_lookup(|_| None).unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
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
        let created = store.create_sandbox(new).await.unwrap();
        let airlock::store::Created::New(sandbox) = created else {
            panic!("expected a new sandbox");
        };
        ids.push(sandbox.id.to_string());
    }
    let one = h
        .call(Method::GET, &format!("/v1/sandboxes/{}", ids[0]), None)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.body["id"], ids[0]);
    assert_eq!(one.body["state"], SandboxState::Creating.as_str());
    assert_eq!(one.body["read_only_rootfs"], true);
    assert_eq!(one.body["limits"]["memory_mb"], 512);

    let page = h.call(Method::GET, "/v1/sandboxes?limit=2", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    let next = page.body["next"].as_str().unwrap().to_owned();
    let rest = h
        .call(
            Method::GET,
            &format!("/v1/sandboxes?limit=2&cursor={next}"),
            None,
        )
        .await;
    assert_eq!(rest.body["items"][0]["id"], ids[2]);
    assert_eq!(rest.body["next"], Value::Null);

    let running = h
        .call(Method::GET, "/v1/sandboxes?state=running", None)
        .await;
    assert_eq!(running.body["items"], json!([]));
    let creating = h
        .call(Method::GET, "/v1/sandboxes?state=creating", None)
        .await;
    assert_eq!(creating.body["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_list_and_wait_parameters_are_400s() {
    let h = harness().await;
    let cases = [
        ("/v1/sandboxes?state=sleeping", "state"),
        ("/v1/sandboxes?cursor=abc", "cursor"),
        ("/v1/sandboxes?limit=0", "limit"),
        ("/v1/sandboxes?limit=501", "limit"),
    ];
    for (uri, field) in cases {
        let reply = h.call(Method::GET, uri, None).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.body["fields"][0]["field"], field);
    }
    for uri in ["/v1/sandboxes?limit=x", "/v1/sandboxes?other=1"] {
        let reply = h.call(Method::GET, uri, None).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_query");
    }
    let wait = "/v1/sandboxes/0190a4a0-0000-7000-8000-000000000000/wait?timeout_s=0";
    let reply = h.call(Method::GET, wait, None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn an_unreachable_node_is_a_generic_500_and_not_ready() {
    let h = harness().await;
    let reply = h.call(Method::POST, "/v1/sandboxes", Some(valid())).await;
    assert_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert_eq!(reply.body["message"], "internal error");
    // Nothing was recorded: validation and the image check come before the store.
    let page = h.call(Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(page.body["items"], json!([]));

    let request = Request::get("/readyz").body(Body::empty()).unwrap();
    let reply = h.send(request).await;
    assert_error(&reply, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
}
