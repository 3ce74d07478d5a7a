//! The per-user secrets count through the API: with `AIRLOCK_QUOTA_MAX_SECRETS=2`, a third
//! new secret is a 403 `quota_exceeded` naming `max_secrets` (limit and usage in the body),
//! replacing an existing one still works, and deleting one makes room again.
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
