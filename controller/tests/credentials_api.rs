//! Secret exposure and the provider catalogue through the in-process API: a new secret is
//! `egress_only` unless it says `"expose": "env"`, a replace without `expose` keeps the stored
//! one, an unknown exposure is a 400 naming `expose`, the listing and the audit row name the
//! exposure (never the value), and `secret_env` naming an `egress_only` secret is a 400
//! `secret_not_exposable` naming `secret_env.<ENV>`, and more than 256 variables in `env` and
//! `secret_env` together is a 400 naming `secret_env`. `GET /v1/providers` lists the catalogue
//! to any signed-in user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::user::Role;
use axum::http::{Method, StatusCode};
use serde_json::json;

mod common;
use common::{account, app_with, call, AppOptions};

/// The admin token; without one the app answers `not_bootstrapped`.
const ADMIN: &str = "test-admin-token-0123456789";

#[tokio::test]
async fn a_secret_stays_at_the_proxy_unless_it_says_env() {
    let h = app_with(AppOptions {
        token: Some(ADMIN),
        vault: true,
        ..AppOptions::default()
    })
    .await;
    let (_user, token) = account(&h.store, "exposer", Role::Member).await;
    let canary = format!("canary-{}", uuid::Uuid::new_v4());
    let put = |body| call(&h, &token, Method::PUT, "/v1/secrets/key", Some(body));

    let (status, body) = put(json!({"value": canary})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["expose"], "egress_only",
        "a new secret's default: {body}"
    );

    let (status, body) = put(json!({"value": canary, "expose": "env"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expose"], "env", "{body}");
    let (status, body) = put(json!({"value": canary})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["expose"], "env",
        "a replace without expose keeps it: {body}"
    );

    for bad in [json!("ENV"), json!("egress-only"), json!("")] {
        let (status, body) = put(json!({"value": canary, "expose": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert_eq!(body["fields"][0]["field"], "expose", "{body}");
    }
    let (status, body) = put(json!({"value": canary, "expose": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("expose"), "{body}");

    let (status, body) = put(json!({"value": canary, "expose": "egress_only"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, list) = call(&h, &token, Method::GET, "/v1/secrets", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["name"], "key", "{list}");
    assert_eq!(list[0]["expose"], "egress_only", "{list}");
    assert!(!list.to_string().contains(&canary));

    let rows = h.store.list_audit(None, 100).await.unwrap();
    let details: Vec<_> = rows
        .iter()
        .filter(|r| r.record.action == "PUT /v1/secrets/{name}")
        .filter_map(|r| r.record.detail.clone())
        .filter(|d| !d.is_empty())
        .collect();
    // The refused puts are on the trail too, without a detail.
    assert_eq!(details.len(), 4, "{details:?}");
    assert!(details.contains(&"expose env".to_owned()), "{details:?}");
    assert!(
        details.contains(&"expose egress_only".to_owned()),
        "{details:?}"
    );
    assert!(rows.iter().all(|r| !format!("{r:?}").contains(&canary)));
}

#[tokio::test]
async fn secret_env_refuses_an_egress_only_secret_naming_the_field() {
    let h = app_with(AppOptions {
        token: Some(ADMIN),
        vault: true,
        ..AppOptions::default()
    })
    .await;
    let (_user, token) = account(&h.store, "creator", Role::Member).await;
    for (name, expose) in [("held", "egress_only"), ("shared", "env")] {
        let uri = format!("/v1/secrets/{name}");
        let body = json!({"value": "v", "expose": expose});
        let (status, body) = call(&h, &token, Method::PUT, &uri, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let create = |secret_env| {
        let body = json!({"image": "alpine:3", "secret_env": secret_env});
        call(&h, &token, Method::POST, "/v1/sandboxes", Some(body))
    };
    let (status, body) = create(json!({"API_KEY": "held", "OTHER": "shared"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "secret_not_exposable", "{body}");
    let fields = body["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{body}");
    assert_eq!(fields[0]["field"], "secret_env.API_KEY", "{body}");
    let reason = fields[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("`held`") && reason.contains("egress_only"),
        "{body}"
    );

    // An unknown secret is still the plain validation error.
    let (status, body) = create(json!({"API_KEY": "missing"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert_eq!(body["fields"][0]["field"], "secret_env.API_KEY", "{body}");

    // Together with `env`, at most 256 variables: refused before any secret is opened.
    let many: serde_json::Map<String, serde_json::Value> = (0..250)
        .map(|i| (format!("S{i}"), json!("shared")))
        .collect();
    let env: serde_json::Map<String, serde_json::Value> =
        (0..10).map(|i| (format!("E{i}"), json!("v"))).collect();
    let body = json!({"image": "alpine:3", "env": env, "secret_env": many});
    let (status, body) = call(&h, &token, Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["fields"][0]["field"], "secret_env", "{body}");
    assert!(
        body["fields"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("256"),
        "{body}"
    );
}

#[tokio::test]
async fn any_signed_in_user_reads_the_provider_catalogue() {
    let h = app_with(AppOptions {
        token: Some(ADMIN),
        ..AppOptions::default()
    })
    .await;
    let (_viewer, token) = account(&h.store, "looker", Role::Viewer).await;
    let (status, body) = call(&h, &token, Method::GET, "/v1/providers", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["anthropic", "openai", "github", "generic"]);
    let anthropic = &body[0];
    assert_eq!(anthropic["hosts"], json!(["api.anthropic.com"]));
    assert_eq!(anthropic["header"], "x-api-key");
    assert_eq!(anthropic["format"], "{secret}");
    assert_eq!(anthropic["env"], json!(["ANTHROPIC_API_KEY"]));
    let github = &body[2];
    assert_eq!(github["hosts"], json!(["github.com", "api.github.com"]));
    assert_eq!(github["env"], json!(["GH_TOKEN", "GITHUB_TOKEN"]));
    assert_eq!(github["endpoints"][0]["format"], "basic-x-access-token");
    assert_eq!(
        github["endpoints"][0]["rules"][1]["paths"],
        json!(["/*/*/git-upload-pack", "/*/*/git-receive-pack"])
    );
    assert_eq!(github["endpoints"][1]["format"], "Bearer {secret}");
    let generic = &body[3];
    assert_eq!(generic["hosts"], json!([]));
    assert_eq!(generic["header"], "authorization");
    assert_eq!(generic["env"], json!([]));

    let (status, _) = call(&h, "not-a-token", Method::GET, "/v1/providers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let doc = serde_json::to_value(airlock::api::openapi::document(&h.state)).unwrap();
    assert!(doc["paths"]["/v1/providers"]["get"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["ProviderDto"]["properties"]["hosts"].is_object());
    assert!(schemas["PutSecretBody"]["properties"]["expose"].is_object());
    assert!(schemas["SecretDto"]["properties"]["expose"].is_object());
}
