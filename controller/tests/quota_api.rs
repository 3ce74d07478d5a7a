//! Quotas, secrets and the audit trail through the API, in process: `app(state).oneshot(..)`
//! over in-memory SQLite with a vault, and a Docker client pointed at a loopback port where
//! nothing listens (everything checked here is decided before Docker is asked; a create that
//! does reach Docker fails with a generic 500, which still must not echo a secret).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::user::{Role, Scopes, TokenScope, UserId};
use airlock::accounts::{CreateToken, CreateUser, TokenOwner};
use airlock::api::app;
use airlock::audit::Actor;
use airlock::sandbox::SandboxRequest;
use airlock::store::NewSandbox;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{app_with, AppOptions, TestApp};

const ADMIN: &str = "test-admin-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";

type Harness = TestApp;

struct Account {
    id: UserId,
    email: String,
    token: String,
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    text: String,
    body: Value,
}

async fn harness() -> Harness {
    app_with(AppOptions {
        token: Some(ADMIN),
        vault: true,
        ..AppOptions::default()
    })
    .await
}

impl Harness {
    async fn account(&self, name: &str, role: Role) -> Account {
        let email = format!("{name}@example.test");
        let create = CreateUser {
            email: email.clone(),
            display_name: name.to_owned(),
            role,
            password: Some(PASSWORD.to_owned()),
        };
        let accounts = &self.state.services.accounts;
        let user = accounts.run(&Actor::boot(), create).await.unwrap();
        let scopes: Scopes = match role {
            Role::Viewer => [TokenScope::SandboxesRead].into_iter().collect(),
            _ => [TokenScope::SandboxesRead, TokenScope::SandboxesWrite]
                .into_iter()
                .collect(),
        };
        let create = CreateToken {
            owner: TokenOwner::Email(email.clone()),
            name: "t".to_owned(),
            scopes,
            expires_in: None,
        };
        let token = accounts.run(&Actor::boot(), create).await.unwrap().text;
        Account {
            id: user.id,
            email,
            token,
        }
    }

    async fn call(&self, token: &str, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            retry_after,
            text,
            body,
        }
    }

    /// Puts a live sandbox for `owner` straight into the store.
    async fn live_sandbox(&self, owner: UserId) {
        let spec = SandboxRequest {
            image: "alpine:3".into(),
            ..SandboxRequest::default()
        }
        .validate(&self.config.maximums)
        .unwrap();
        let new = NewSandbox {
            owner,
            spec,
            idempotency_key: None,
            node: Some("local".into()),
        };
        self.store.create_sandbox(new).await.unwrap();
    }

    async fn audit(&self) -> Vec<Value> {
        let reply = self
            .call(ADMIN, Method::GET, "/v1/audit?limit=500", None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["items"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn quotas_refuse_with_a_typed_reason_and_guard_their_routes() {
    let h = harness().await;
    let member = h.account("member", Role::Member).await;
    let other = h.account("other", Role::Member).await;
    let quota_uri = format!("/v1/users/{}/quota", member.id);

    // Only admins change quotas; a user reads their own, another user's is a 404.
    let put = json!({"max_sandboxes": 2, "max_lifetime_s": 600});
    let reply = h
        .call(&member.token, Method::PUT, &quota_uri, Some(put.clone()))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let reply = h.call(ADMIN, Method::PUT, &quota_uri, Some(put)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["effective"]["max_sandboxes"], 2);
    assert_eq!(reply.body["overrides"]["max_memory_mb"], Value::Null);
    let reply = h.call(&member.token, Method::GET, &quota_uri, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["effective"]["max_lifetime_s"], 600);
    // No operator default set: the built-in default, bounded (8 GiB).
    assert_eq!(reply.body["effective"]["max_memory_mb"], 8192);
    assert_eq!(reply.body["usage"]["sandboxes"], 0);
    let reply = h.call(&other.token, Method::GET, &quota_uri, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let bad = json!({"max_cpus": -1});
    let reply = h.call(ADMIN, Method::PUT, &quota_uri, Some(bad)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.body["fields"][0]["field"], "max_cpus");
    let nobody = format!("/v1/users/{}/quota", UserId::new());
    let reply = h.call(ADMIN, Method::PUT, &nobody, Some(json!({}))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);

    // At the limit: a 403 naming the quota, its limit and the current use; nothing created.
    h.live_sandbox(member.id).await;
    h.live_sandbox(member.id).await;
    let create = json!({"image": "alpine:3"});
    let reply = h
        .call(
            &member.token,
            Method::POST,
            "/v1/sandboxes",
            Some(create.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.body["error"], "quota_exceeded");
    assert_eq!(reply.body["quota"], "max_sandboxes");
    assert_eq!(reply.body["limit"], 2);
    assert_eq!(reply.body["used"], 2);
    assert!(reply.body["message"].is_string());
    let usage = h.store.quota_usage(member.id).await.unwrap();
    assert_eq!(usage.sandboxes, 2);

    // Lifetime past the quota (though within the operator maximum).
    let long = json!({"image": "alpine:3", "timeout_s": 601});
    let reply = h
        .call(&other.token, Method::POST, "/v1/sandboxes", Some(long))
        .await;
    assert_ne!(
        reply.body["quota"], "max_lifetime_s",
        "other has the default lifetime"
    );
    let long = json!({"image": "alpine:3", "timeout_s": 601});
    let admin_put = json!({"max_lifetime_s": 600});
    let other_uri = format!("/v1/users/{}/quota", other.id);
    h.call(ADMIN, Method::PUT, &other_uri, Some(admin_put))
        .await;
    let reply = h
        .call(&other.token, Method::POST, "/v1/sandboxes", Some(long))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.body["quota"], "max_lifetime_s");
    assert_eq!(reply.body["limit"], 600);

    // The create rate: 429 with Retry-After.
    let rate = json!({"creates_per_min": 0});
    h.call(ADMIN, Method::PUT, &other_uri, Some(rate)).await;
    let reply = h
        .call(&other.token, Method::POST, "/v1/sandboxes", Some(create))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["quota"], "creates_per_min");
    assert_eq!(reply.body["limit"], 0);
    assert!(reply.retry_after.is_some());
}

#[tokio::test]
async fn secrets_are_per_user_and_never_shown() {
    let h = harness().await;
    let alice = h.account("alice", Role::Member).await;
    let bob = h.account("bob", Role::Member).await;
    let viewer = h.account("viewer", Role::Viewer).await;
    let canary = format!("canary-{}", uuid::Uuid::new_v4());
    let mut replies = Vec::new();

    // `env`: this secret may go into a container's environment through `secret_env`.
    let put = json!({"value": canary, "expose": "env"});
    let reply = h
        .call(
            &alice.token,
            Method::PUT,
            "/v1/secrets/db",
            Some(put.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["name"], "db");
    assert_eq!(reply.body["expose"], "env");
    replies.push(reply);
    let reply = h
        .call(
            &alice.token,
            Method::PUT,
            "/v1/secrets/db",
            Some(put.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    replies.push(reply);
    let reply = h.call(&alice.token, Method::GET, "/v1/secrets", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.as_array().unwrap().len(), 1);
    assert!(reply.body[0]["created_at"].is_string());
    replies.push(reply);

    // Bob sees none of Alice's; her secret is a 404 to him. A viewer cannot write.
    let reply = h.call(&bob.token, Method::GET, "/v1/secrets", None).await;
    assert_eq!(reply.body, json!([]));
    let reply = h
        .call(&bob.token, Method::DELETE, "/v1/secrets/db", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let reply = h
        .call(
            &viewer.token,
            Method::PUT,
            "/v1/secrets/v",
            Some(put.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let reply = h
        .call(
            &alice.token,
            Method::PUT,
            "/v1/secrets/bad%20name",
            Some(put),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.body["fields"][0]["field"], "name");

    // secret_env names the owner's secrets only, with valid, unreserved env names.
    let create = |secret_env: Value| json!({"image": "alpine:3", "secret_env": secret_env});
    let reply = h
        .call(
            &bob.token,
            Method::POST,
            "/v1/sandboxes",
            Some(create(json!({"DB": "db"}))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.body["fields"][0]["field"], "secret_env.DB");
    for name in ["HTTP_PROXY", "SSL_CERT_FILE"] {
        let reserved = create(json!({ name: "db" }));
        let reply = h
            .call(&alice.token, Method::POST, "/v1/sandboxes", Some(reserved))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert_eq!(
            reply.body["fields"][0]["field"],
            format!("secret_env.{name}")
        );
        assert_eq!(
            reply.body["fields"][0]["reason"],
            "is reserved for the controller"
        );
    }
    // A valid reference reaches Docker (unreachable here): a generic 500, no value.
    let good = create(json!({"DB_PASSWORD": "db"}));
    let reply = h
        .call(&alice.token, Method::POST, "/v1/sandboxes", Some(good))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text
    );
    replies.push(reply);
    let reply = h
        .call(&alice.token, Method::GET, "/v1/sandboxes", None)
        .await;
    replies.push(reply);

    let audit = h.audit().await;
    for reply in &replies {
        assert!(!reply.text.contains(&canary), "{}", reply.text);
    }
    let audit_text = serde_json::to_string(&audit).unwrap();
    assert!(!audit_text.contains(&canary), "{audit_text}");
    assert!(audit.iter().any(|r| r["action"] == "PUT /v1/secrets/{name}"
        && r["object"] == "db"
        && r["status"] == 201
        && r["user_id"] == alice.id.to_string()));

    let reply = h
        .call(&alice.token, Method::DELETE, "/v1/secrets/db", None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = h
        .call(&alice.token, Method::DELETE, "/v1/secrets/db", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_audit_trail_records_changes_and_logins_for_admins_only() {
    let h = harness().await;
    let member = h.account("auditee", Role::Member).await;

    let login = |password: &str| {
        let body = json!({"email": member.email, "password": password});
        Request::post("/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let ok = app(h.state.clone()).oneshot(login(PASSWORD)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let bytes = ok.into_body().collect().await.unwrap().to_bytes();
    let session: Value = serde_json::from_slice(&bytes).unwrap();
    // API tokens cannot mint tokens: the login session does.
    let session = session["token"].as_str().unwrap().to_owned();
    let failed = app(h.state.clone())
        .oneshot(login("wrong password!!"))
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);

    let token = json!({"name": "ci", "scopes": ["sandboxes:read"]});
    let reply = h
        .call(&session, Method::POST, "/v1/tokens", Some(token))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let token_id = reply.body["id"].as_str().unwrap().to_owned();
    // Revoking takes a session (or a token with `tokens:write`).
    let reply = h
        .call(
            &session,
            Method::DELETE,
            &format!("/v1/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    // A refused admin action is recorded too.
    let quota = format!("/v1/users/{}/quota", member.id);
    let reply = h
        .call(&member.token, Method::PUT, &quota, Some(json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let stop = "/v1/sandboxes/0190a4a0-0000-7000-8000-000000000000/stop";
    h.call(&member.token, Method::POST, stop, None).await;

    // Members cannot read the trail.
    let reply = h.call(&member.token, Method::GET, "/v1/audit", None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);

    // Failed logins are counted per (source, account, minute); the minute's row is written
    // when it ends or at shutdown.
    h.state.services.audit.flush_all_noise().await;
    let audit = h.audit().await;
    let find = |action: &str, status: u64| {
        audit
            .iter()
            .find(|r| r["action"] == action && r["status"] == status)
            .unwrap_or_else(|| panic!("no {action} {status} in {audit:#?}"))
            .clone()
    };
    let login_ok = find("auth.login", 200);
    assert_eq!(login_ok["user_id"], member.id.to_string());
    assert_eq!(login_ok["object"], member.email);
    let login_failed = find("auth.login.failed", 401);
    assert_eq!(login_failed["user_id"], member.id.to_string());
    assert_eq!(login_failed["count"], 1);
    let created = find("POST /v1/tokens", 201);
    assert_eq!(created["object"], token_id);
    assert!(created["credential"]
        .as_str()
        .unwrap()
        .starts_with("session:"));
    let revoked = find("DELETE /v1/tokens/{id}", 204);
    assert_eq!(revoked["object"], token_id);
    find("PUT /v1/users/{id}/quota", 403);
    let stopped = find("POST /v1/sandboxes/{id}/stop", 404);
    assert_eq!(stopped["object"], "0190a4a0-0000-7000-8000-000000000000");
    // Reads are not recorded.
    assert!(audit
        .iter()
        .all(|r| !r["action"].as_str().unwrap().starts_with("GET ")));

    // Pages: newest first, the opaque `next` cursor continues strictly older.
    let first = h.call(ADMIN, Method::GET, "/v1/audit?limit=2", None).await;
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["id"].as_i64() > items[1]["id"].as_i64());
    let next = first.body["next"].as_str().unwrap().to_owned();
    let oldest_on_first = items[1]["id"].as_i64().unwrap();
    let second = h
        .call(
            ADMIN,
            Method::GET,
            &format!("/v1/audit?limit=500&cursor={next}"),
            None,
        )
        .await;
    let older = second.body["items"].as_array().unwrap();
    assert_eq!(
        older.len() + 2,
        audit.len(),
        "reads of the trail are not recorded"
    );
    assert!(older
        .iter()
        .all(|r| r["id"].as_i64().unwrap() < oldest_on_first));
    let reply = h.call(ADMIN, Method::GET, "/v1/audit?limit=0", None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // A time range, oldest first; every bad value is a 400 naming its field.
    let since = items[1]["at"].as_str().unwrap();
    let ranged = format!("/v1/audit?order=oldest&since={since}&until=2999-01-01T00:00:00Z");
    let reply = h.call(ADMIN, Method::GET, &ranged, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ranged = reply.body["items"].as_array().unwrap();
    let ids: Vec<i64> = ranged.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids.len(),
        2,
        "the first page's rows, and only those: {ranged:#?}"
    );
    assert_eq!(ids[0], oldest_on_first, "oldest first");
    let reply = h
        .call(
            ADMIN,
            Method::GET,
            "/v1/audit?until=2000-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(reply.body["items"], json!([]), "{}", reply.text);
    for (query, field) in [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("cursor=abc", "cursor"),
        ("order=sideways", "order"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
    ] {
        let reply = h
            .call(ADMIN, Method::GET, &format!("/v1/audit?{query}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.text.contains(field), "{query}: {}", reply.text);
    }
    let oldest = format!("/v1/audit?order=oldest&cursor={next}");
    let reply = h.call(ADMIN, Method::GET, &oldest, None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
}
