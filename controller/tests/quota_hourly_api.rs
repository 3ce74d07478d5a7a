//! The hourly create quota through the API, in process (`app(state).oneshot(..)` over
//! in-memory SQLite, Docker at a loopback port where nothing listens): with
//! `AIRLOCK_QUOTA_CREATES_PER_HOUR=3`, a member's fourth create within the hour is a 429
//! `quota_exceeded` naming `creates_per_hour` with a `Retry-After`, decided before Docker is
//! asked; another member is unaffected; an admin's override lifts it and is audited
//! before → after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::user::Role;
use airlock::sandbox::SandboxRequest;
use airlock::store::{Created, NewSandbox};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{account, app_with, call, AppOptions, TestApp};

const ADMIN: &str = "test-admin-token-0123456789";

/// A create through the API: its status, `Retry-After` and JSON body.
async fn create(h: &TestApp, token: &str) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/sandboxes")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"image": "alpine:3"}).to_string()))
        .unwrap();
    let response = airlock::api::app(h.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_fourth_create_within_the_hour_is_refused_for_that_user_only() {
    let h = app_with(AppOptions {
        token: Some(ADMIN),
        vars: &[("AIRLOCK_QUOTA_CREATES_PER_HOUR", "3")],
        ..AppOptions::default()
    })
    .await;
    assert_eq!(h.config.quota.creates_per_hour, 3);
    let (ann, ann_token) = account(&h.store, "ann", Role::Member).await;
    let (_bea, bea_token) = account(&h.store, "bea", Role::Member).await;

    // Three creates reserved through the store's quota transaction, as the create command
    // does (that ended sandboxes still count is tested at the store, `quota_store.rs`).
    for _ in 0..3 {
        let spec = SandboxRequest {
            image: "alpine:3".into(),
            ..SandboxRequest::default()
        }
        .validate(&h.config.maximums)
        .unwrap();
        let new = NewSandbox {
            owner: ann.id,
            spec,
            idempotency_key: None,
            node: Some("local".into()),
        };
        let created = h.store.create_sandbox_within_quota(new, h.config.quota);
        assert!(matches!(created.await, Ok(Created::New(_))));
    }
    let quota_uri = format!("/v1/users/{}/quota", ann.id);
    let (status, body) = call(&h, &ann_token, Method::GET, &quota_uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["creates_per_hour"], 3);
    assert_eq!(body["usage"]["creates_last_hour"], 3);

    let (status, retry, body) = create(&h, &ann_token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "quota_exceeded");
    assert_eq!(body["quota"], "creates_per_hour");
    assert_eq!(
        (body["limit"].clone(), body["used"].clone()),
        (json!(3), json!(3))
    );
    let retry: u64 = retry.expect("a Retry-After").parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");

    // Bea has her own hour: her create is not refused by a quota (it fails later, at Docker).
    let (status, _, body) = create(&h, &bea_token).await;
    assert_ne!(body["error"], "quota_exceeded", "{status} {body}");

    // An admin lifts Ann's hourly quota; the audit row says before → after.
    let put = json!({"creates_per_hour": 4});
    let (status, body) = call(&h, ADMIN, Method::PUT, &quota_uri, Some(put)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["overrides"]["creates_per_hour"], 4);
    let (status, _, body) = create(&h, &ann_token).await;
    assert_ne!(body["error"], "quota_exceeded", "{status} {body}");
    let (status, audit) = call(&h, ADMIN, Method::GET, "/v1/audit?limit=100", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let rows = audit["items"].as_array().unwrap();
    let change = rows
        .iter()
        .find(|r| r["action"] == "PUT /v1/users/{id}/quota")
        .expect("the quota change's row");
    let detail = change["detail"].as_str().unwrap();
    assert!(detail.contains("creates_per_hour default → 4"), "{detail}");
}
