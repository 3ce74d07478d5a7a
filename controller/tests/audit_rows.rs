//! Who writes each audit row, in process: the command that changed something files its own
//! row (action, object, status, caller); the API's refusal recorder files one only for a
//! request no command answered; every request that changes something leaves exactly one row;
//! the offline CLI's commands file theirs with the credential `cli` and status 0, and the
//! controller's own boot steps file none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::quota::Quota;
use airlock::accounts::user::{Role, Scopes, TokenScope};
use airlock::accounts::{Accounts, CreateToken, CreateUser, TokenOwner};
use airlock::api::app;
use airlock::audit::{Actor, AuditLog};
use airlock::secrets::vault::{KeySource, SecretKey, Vault};
use airlock::secrets::{PutSecret, RotateKey, Secrets};
use airlock::store::{Created, NewAuditRecord, NewSandbox, Store};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{app_with, AppOptions, TestApp};

const ADMIN: &str = "test-admin-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";
const NO_SANDBOX: &str = "0190a4a0-0000-7000-8000-000000000000";

async fn harness() -> TestApp {
    app_with(AppOptions {
        token: Some(ADMIN),
        vault: true,
        ..AppOptions::default()
    })
    .await
}

async fn call(h: &TestApp, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if !uri.starts_with("/v1/auth/") {
        request = request.header("authorization", format!("Bearer {ADMIN}"));
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app(h.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every row, oldest first.
async fn rows(store: &Store) -> Vec<NewAuditRecord> {
    let mut rows: Vec<_> = store
        .list_audit(None, 500)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    rows.reverse();
    rows
}

/// The one row of `action` with `status`; two would mean a command and the recorder both
/// filed the same request.
fn the_row<'a>(rows: &'a [NewAuditRecord], action: &str, status: u16) -> &'a NewAuditRecord {
    let found: Vec<_> = rows
        .iter()
        .filter(|r| r.action == action && r.status == status)
        .collect();
    assert_eq!(found.len(), 1, "{action} {status}: {rows:#?}");
    found[0]
}

#[tokio::test]
async fn commands_file_their_rows_and_the_recorder_only_the_rest() {
    let h = harness().await;
    let invite = json!({"email": "Ada@Example.org", "role": "member"});
    let (status, body) = call(&h, Method::POST, "/v1/users/invites", Some(invite)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let accept = json!({"token": body["token"], "password": PASSWORD, "display_name": "Ada"});
    let (status, body) = call(&h, Method::POST, "/v1/auth/accept-invite", Some(accept)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ada = body["user"]["id"].as_str().unwrap().to_owned();
    let patch = json!({"role": "viewer"});
    let user_uri = format!("/v1/users/{ada}");
    assert_eq!(
        call(&h, Method::PATCH, &user_uri, Some(patch)).await.0,
        StatusCode::OK
    );
    let quota = format!("/v1/users/{ada}/quota");
    let overrides = json!({"max_sandboxes": 2});
    assert_eq!(
        call(&h, Method::PUT, &quota, Some(overrides)).await.0,
        StatusCode::OK
    );
    let secret = json!({"value": "s3cret-value"});
    let put = call(&h, Method::PUT, "/v1/secrets/db", Some(secret)).await;
    assert_eq!(put.0, StatusCode::CREATED);
    let deleted = call(&h, Method::DELETE, "/v1/secrets/db", None).await;
    assert_eq!(deleted.0, StatusCode::NO_CONTENT);
    let gone = format!("/v1/sandboxes/{NO_SANDBOX}");
    assert_eq!(
        call(&h, Method::DELETE, &gone, None).await.0,
        StatusCode::NO_CONTENT
    );
    let bogus = call(&h, Method::DELETE, "/v1/sandboxes/not-an-id", None).await;
    assert_eq!(bogus.0, StatusCode::NO_CONTENT);
    let policy = format!("/v1/sandboxes/{NO_SANDBOX}/policy");
    let missing = call(&h, Method::PUT, &policy, Some(json!({}))).await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
    let bad = json!({"email": "not an email"});
    let refused = call(&h, Method::POST, "/v1/users/invites", Some(bad)).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);

    let rows = rows(&h.store).await;
    let invited = the_row(&rows, "POST /v1/users/invites", 201);
    assert_eq!(invited.token.as_deref(), Some("admin-token"));
    assert_eq!(invited.user, Some(h.admin));
    assert_eq!(invited.object.as_deref(), Some("ada@example.org"));
    assert!(
        invited
            .detail
            .as_deref()
            .unwrap()
            .starts_with("role member, invite "),
        "{invited:?}"
    );
    let accepted = the_row(&rows, "auth.accept-invite", 201);
    assert_eq!(accepted.object.as_deref(), Some("ada@example.org"));
    assert_eq!(accepted.user.map(|u| u.to_string()), Some(ada.clone()));
    assert_eq!(accepted.detail.as_deref(), Some("accepted"));
    let patched = the_row(&rows, "PATCH /v1/users/{id}", 200);
    assert_eq!(patched.object.as_deref(), Some(ada.as_str()));
    assert_eq!(patched.detail.as_deref(), Some("role member → viewer"));
    let quota = the_row(&rows, "PUT /v1/users/{id}/quota", 200);
    assert_eq!(quota.object.as_deref(), Some(ada.as_str()));
    assert_eq!(quota.detail.as_deref(), Some("max_sandboxes default → 2"));
    let put = the_row(&rows, "PUT /v1/secrets/{name}", 201);
    assert_eq!(put.object.as_deref(), Some("db"));
    assert!(
        put.detail.as_deref().unwrap().starts_with("expose "),
        "{put:?}"
    );
    let removed = the_row(&rows, "DELETE /v1/secrets/{name}", 204);
    assert_eq!(removed.object.as_deref(), Some("db"));
    let deletes: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "DELETE /v1/sandboxes/{id}")
        .map(|r| (r.object.as_deref().unwrap(), r.status))
        .collect();
    // The command names a well-formed id; the recorder names a path that names nothing.
    assert_eq!(deletes, [(NO_SANDBOX, 204), ("not-an-id", 204)]);
    let not_found = the_row(&rows, "PUT /v1/sandboxes/{id}/policy", 404);
    assert_eq!(not_found.object.as_deref(), Some(NO_SANDBOX));
    the_row(&rows, "POST /v1/users/invites", 400);
    assert_eq!(
        rows.len(),
        10,
        "one row per request that changes something: {rows:#?}"
    );
    let text = format!("{rows:?}");
    assert!(
        !text.contains("s3cret-value"),
        "a secret value reached the trail"
    );
    assert!(!text.contains(PASSWORD), "a password reached the trail");
}

// An admin reading another account's sandbox, ledger, summary or self-test files a row naming
// the owner; the owner reading their own files none, and neither does an admin reading their
// own. A second quota change names the before it replaced.
#[tokio::test]
async fn oversight_reads_are_recorded_and_own_reads_are_not() {
    let h = harness().await;
    let sandbox = common::sandbox(&h.store, "owned").await;
    let owner = h.store.get_user(sandbox.owner).await.unwrap().unwrap();
    let base = format!("/v1/sandboxes/{}", sandbox.id);
    let reads = ["", "/egress", "/egress/summary", "/selftest"];
    for tail in reads {
        let (status, body) = call(&h, Method::GET, &format!("{base}{tail}"), None).await;
        // No self-test ran: a 404 after the read was allowed, and recorded.
        let ok = status.is_success() || (tail == "/selftest" && status == StatusCode::NOT_FOUND);
        assert!(ok, "{tail}: {status} {body}");
    }
    let logs = call(&h, Method::GET, &format!("{base}/logs"), None).await;
    assert_eq!(logs.0, StatusCode::CONFLICT, "not started: {}", logs.1);
    let read_rows = rows(&h.store).await;
    for tail in reads {
        let action = format!("GET /v1/sandboxes/{{id}}{tail}");
        let row = the_row(&read_rows, &action, 200);
        assert_eq!(row.object, Some(sandbox.id.to_string()));
        assert_eq!(row.user, Some(h.admin));
        assert_eq!(row.detail, Some(format!("owner {}", owner.id)));
    }
    the_row(&read_rows, "GET /v1/sandboxes/{id}/logs", 200);
    assert_eq!(read_rows.len(), reads.len() + 1, "{read_rows:#?}");

    // An owner's own reads file nothing.
    let (reader, token) = common::account(&h.store, "reader", Role::Member).await;
    let new = NewSandbox {
        owner: reader.id,
        spec: sandbox.spec.clone(),
        idempotency_key: None,
        node: None,
    };
    let Created::New(mine) = h.store.create_sandbox(new).await.unwrap() else {
        panic!("a fresh sandbox")
    };
    for tail in reads {
        let uri = format!("/v1/sandboxes/{}{tail}", mine.id);
        let (status, body) = common::call(&h, &token, Method::GET, &uri, None).await;
        let ok = status.is_success() || (tail == "/selftest" && status == StatusCode::NOT_FOUND);
        assert!(ok, "{tail}: {status} {body}");
    }
    assert_eq!(
        rows(&h.store).await.len(),
        reads.len() + 1,
        "own reads file nothing"
    );
    let quota = format!("/v1/users/{}/quota", owner.id);
    for body in [
        json!({"max_sandboxes": 2}),
        json!({"max_sandboxes": 3, "max_memory_mb": 100}),
    ] {
        assert_eq!(
            call(&h, Method::PUT, &quota, Some(body)).await.0,
            StatusCode::OK
        );
    }
    let after = rows(&h.store).await;
    let last = after
        .iter()
        .rev()
        .find(|r| r.action == "PUT /v1/users/{id}/quota")
        .unwrap();
    assert_eq!(
        last.detail.as_deref(),
        Some("max_sandboxes 2 → 3, max_memory_mb default → 100")
    );
}

// An admin's list that shows another account's sandboxes files one row naming the owners, and
// an admin's wait on another account's sandbox one naming the sandbox and its owner; a list
// of nobody else's sandboxes files none, and neither do an owner's own list and wait.
#[tokio::test]
async fn oversight_lists_and_waits_are_recorded_and_own_ones_are_not() {
    let h = harness().await;
    let theirs = common::sandbox(&h.store, "listed").await;
    let owner = theirs.owner;
    let (status, body) = call(&h, Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let wait = format!("/v1/sandboxes/{}/wait?timeout_s=1", theirs.id);
    let (status, body) = call(&h, Method::GET, &wait, None).await;
    assert!(status != StatusCode::NOT_FOUND, "{status} {body}");
    // A page of nobody else's sandboxes (none is running).
    let (status, body) = call(&h, Method::GET, "/v1/sandboxes?state=running", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], json!([]));
    let after_admin = rows(&h.store).await;
    let list = the_row(&after_admin, "GET /v1/sandboxes", 200);
    assert_eq!(list.user, Some(h.admin));
    assert_eq!(list.object, None);
    assert_eq!(
        list.detail,
        Some(format!("1 sandboxes of others, owners {owner}"))
    );
    let waited = the_row(&after_admin, "GET /v1/sandboxes/{id}/wait", 200);
    assert_eq!(waited.object, Some(theirs.id.to_string()));
    assert_eq!(waited.detail, Some(format!("owner {owner}")));
    assert_eq!(after_admin.len(), 2, "{after_admin:#?}");

    // The owner's own list and wait file nothing.
    let (reader, token) = common::account(&h.store, "lister", Role::Member).await;
    let new = NewSandbox {
        owner: reader.id,
        spec: theirs.spec.clone(),
        idempotency_key: None,
        node: None,
    };
    let Created::New(mine) = h.store.create_sandbox(new).await.unwrap() else {
        panic!("a fresh sandbox")
    };
    let (status, body) = common::call(&h, &token, Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");
    let wait = format!("/v1/sandboxes/{}/wait?timeout_s=1", mine.id);
    let (status, body) = common::call(&h, &token, Method::GET, &wait, None).await;
    assert!(status != StatusCode::NOT_FOUND, "{status} {body}");
    assert_eq!(rows(&h.store).await.len(), 2, "own reads file nothing");
}

#[tokio::test]
async fn the_cli_files_its_rows_and_boot_steps_file_none() {
    let store = Store::sqlite_in_memory().await.unwrap();
    let audit = AuditLog::new(store.clone());
    let accounts = Accounts::new(store.clone(), audit.clone(), Quota::UNLIMITED);
    let create = |email: &str| CreateUser {
        email: email.to_owned(),
        display_name: String::new(),
        role: Role::Member,
        password: None,
    };
    accounts
        .run(&Actor::boot(), create("boot@example.org"))
        .await
        .unwrap();
    accounts
        .run(&Actor::cli(), create("Cli@Example.org"))
        .await
        .unwrap();
    let token = CreateToken {
        owner: TokenOwner::Email("cli@example.org".to_owned()),
        name: "ci".to_owned(),
        scopes: [TokenScope::SandboxesRead].into_iter().collect::<Scopes>(),
        expires_in: None,
    };
    accounts.run(&Actor::cli(), token).await.unwrap();
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let vault = Vault::open(&store, &old, &KeySource::Env).await.unwrap();
    let secrets = Secrets::new(store.clone(), audit, Some(vault));
    let owner = accounts
        .run(&Actor::cli(), create("owner@example.org"))
        .await
        .unwrap();
    let actor = Actor::new(owner.id, Role::Member, airlock::audit::Via::Session);
    let put = PutSecret {
        name: "k".to_owned(),
        value: "v".to_owned(),
        expose: None,
    };
    secrets.run(&actor, put).await.unwrap();
    let rotate = RotateKey {
        old,
        source: KeySource::Env,
        new,
    };
    assert_eq!(secrets.run(&Actor::cli(), rotate).await.unwrap(), 1);

    let rows = rows(&store).await;
    let actions: Vec<_> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "admin.create-user",
            "admin.create-token",
            "admin.create-user",
            "PUT /v1/secrets/{name}",
            "admin.rotate-key",
        ],
        "the boot step filed nothing"
    );
    for row in rows.iter().filter(|r| r.action.starts_with("admin.")) {
        assert_eq!(row.token.as_deref(), Some("cli"), "{row:?}");
        assert_eq!((row.user, row.status), (None, 0), "{row:?}");
    }
    assert_eq!(rows[0].object.as_deref(), Some("cli@example.org"));
    assert_eq!(rows[1].object.as_deref(), Some("cli@example.org"));
    assert_eq!(rows[1].detail.as_deref(), Some("ci"));
    assert_eq!(rows[3].detail.as_deref(), Some("expose egress_only"));
    assert_eq!(rows[4].object.as_deref(), Some("secrets"));
    assert_eq!(rows[4].detail.as_deref(), Some("1 re-encrypted"));
}
