//! The per-user secrets count through the API: with `AIRLOCK_QUOTA_MAX_SECRETS=2`, a third
//! new secret is a 403 `quota_exceeded` naming `max_secrets` (limit and usage in the body),
//! replacing an existing one still works, and deleting one makes room again. An admin's
//! per-user override (`PUT /v1/users/{id}/quota`: `max_secrets`, `max_volumes`,
//! `max_volume_bytes`) replaces the default for that user alone, shows in the quota view, is
//! audited before → after, and is what the insert's transaction checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::user::Role;
use axum::http::{Method, StatusCode};
use serde_json::json;

mod common;
use common::{account, app_with, call, AppOptions};

#[tokio::test]
async fn a_third_secret_passes_max_secrets() {
    let h = app_with(AppOptions {
        token: Some("test-admin-token-0123456789"),
        vars: &[("AIRLOCK_QUOTA_MAX_SECRETS", "2")],
        vault: true,
        ..AppOptions::default()
    })
    .await;
    let (_user, token) = account(&h.store, "vaulted", Role::Member).await;
    let put = |name: &str| format!("/v1/secrets/{name}");
    let value = Some(json!({"value": "v"}));
    for name in ["a", "b"] {
        let (status, body) = call(&h, &token, Method::PUT, &put(name), value.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = call(&h, &token, Method::PUT, &put("c"), value.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "quota_exceeded", "{body}");
    assert_eq!(body["quota"], "max_secrets", "{body}");
    assert_eq!(body["limit"], 2, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("max_secrets"),
        "{body}"
    );

    let (status, _) = call(&h, &token, Method::PUT, &put("b"), value.clone()).await;
    assert_eq!(status, StatusCode::OK, "replacing is not a new secret");
    let (status, _) = call(&h, &token, Method::DELETE, &put("a"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&h, &token, Method::PUT, &put("c"), value).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn per_user_overrides_replace_the_secret_and_volume_defaults() {
    const ADMIN: &str = "test-admin-token-0123456789";
    let h = app_with(AppOptions {
        token: Some(ADMIN),
        vars: &[
            ("AIRLOCK_QUOTA_MAX_SECRETS", "1"),
            ("AIRLOCK_QUOTA_MAX_VOLUMES", "0"),
            ("AIRLOCK_QUOTA_MAX_VOLUME_BYTES", "unlimited"),
        ],
        vault: true,
        ..AppOptions::default()
    })
    .await;
    let (user, token) = account(&h.store, "raised", Role::Member).await;
    let (_other, other) = account(&h.store, "plain", Role::Member).await;
    let value = Some(json!({"value": "v"}));
    let quota = format!("/v1/users/{}/quota", user.id);
    let (status, body) = call(&h, &token, Method::GET, &quota, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["max_secrets"], 1, "{body}");
    assert_eq!(body["effective"]["max_volumes"], 0, "{body}");
    assert_eq!(body["effective"]["max_volume_bytes"], json!(null), "{body}");
    assert_eq!(body["overrides"]["max_secrets"], json!(null), "{body}");

    let raise = json!({"max_secrets": 3, "max_volumes": 1, "max_volume_bytes": 2_097_152});
    let (status, body) = call(&h, ADMIN, Method::PUT, &quota, Some(raise)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["max_secrets"], 3, "{body}");
    assert_eq!(body["overrides"]["max_volumes"], 1, "{body}");
    assert_eq!(body["effective"]["max_volume_bytes"], 2_097_152, "{body}");

    for name in ["a", "b", "c"] {
        let uri = format!("/v1/secrets/{name}");
        let (status, body) = call(&h, &token, Method::PUT, &uri, value.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        let (status, _) = call(&h, &other, Method::PUT, &uri, value.clone()).await;
        let want = if name == "a" {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(
            status, want,
            "the default still holds for another user ({name})"
        );
    }
    let (status, body) = call(&h, &token, Method::PUT, "/v1/secrets/d", value).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["quota"], "max_secrets", "{body}");
    assert_eq!(body["limit"], 3, "{body}");

    // Volumes: the quota is checked before Docker is asked (which this app cannot reach).
    let volume = |name: &str, size_mb: u64| Some(json!({"name": name, "size_mb": size_mb}));
    let (status, body) = call(&h, &other, Method::POST, "/v1/volumes", volume("v", 1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["quota"], "max_volumes", "{body}");
    let (status, body) = call(&h, &token, Method::POST, "/v1/volumes", volume("big", 3)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["quota"], "max_volume_bytes", "{body}");
    let (status, body) = call(&h, &token, Method::POST, "/v1/volumes", volume("v", 2)).await;
    assert_ne!(status, StatusCode::FORBIDDEN, "within the override: {body}");

    let rows = h.store.list_audit(None, 100).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.record.action == "PUT /v1/users/{id}/quota")
        .unwrap();
    assert_eq!(
        row.record.detail.as_deref(),
        Some(
            "max_secrets default → 3, max_volumes default → 1, max_volume_bytes default → 2097152"
        )
    );
}
