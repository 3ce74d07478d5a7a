//! The policy authority over the API, in process over SQLite with the egress plane off (the
//! ceiling is checked before the plane is needed): a member's policy beyond the ceiling is a
//! 403 naming the field and value at create and at `PUT …/policy`; entries that can never
//! take effect are 400s naming the field; an admin raises a ceiling (audited before → after)
//! and it applies; a per-user override; `AIRLOCK_DEFAULT_POLICY=deny`; the infrastructure list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::sandbox::SandboxRequest;
use airlock::store::{Created, NewSandbox, User};
use airlock::user::Role;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

mod common;
use common::{account, app_with, call, maximums, AppOptions, TestApp};

const TOKEN: &str = "test-admin-token-0123456789";

async fn harness(vars: &'static [(&'static str, &'static str)]) -> TestApp {
    app_with(AppOptions {
        token: Some(TOKEN),
        vars,
        ..AppOptions::default()
    })
    .await
}

/// A sandbox row of `owner` (no container, no proxy entry).
async fn sandbox_of(h: &TestApp, owner: &User) -> String {
    let spec = SandboxRequest {
        image: "airlock/testbox:dev".to_owned(),
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap();
    let new = NewSandbox {
        owner: owner.id,
        spec,
        idempotency_key: None,
        node: None,
    };
    let Created::New(sandbox) = h.store.create_sandbox(new).await.unwrap() else {
        panic!("a fresh sandbox");
    };
    sandbox.id.to_string()
}

/// Creates with `policy` and, on the member's own sandbox, `PUT`s it; returns both answers.
async fn both(h: &TestApp, who: &(User, String), policy: &Value) -> [(StatusCode, Value); 2] {
    let create = json!({"image": "airlock/testbox:dev", "policy": policy});
    let created = call(h, &who.1, Method::POST, "/v1/sandboxes", Some(create)).await;
    let id = sandbox_of(h, &who.0).await;
    let uri = format!("/v1/sandboxes/{id}/policy");
    let put = call(h, &who.1, Method::PUT, &uri, Some(policy.clone())).await;
    [created, put]
}

/// Within the ceiling: create then fails only because the plane is off (400 on `policy`),
/// and the `PUT` with a 409 for the same reason.
#[track_caller]
fn assert_within(answers: &[(StatusCode, Value); 2], what: &str) {
    let [(create, cbody), (put, pbody)] = answers;
    assert_eq!(*create, StatusCode::BAD_REQUEST, "{what}: {cbody}");
    assert!(
        cbody["message"]
            .as_str()
            .unwrap()
            .contains("AIRLOCK_EGRESS=false"),
        "{what}: {cbody}"
    );
    assert_eq!(*put, StatusCode::CONFLICT, "{what}: {pbody}");
}

#[track_caller]
fn assert_exceeds(answers: &[(StatusCode, Value); 2], field: &str, value: Value, label: &str) {
    for (status, body) in answers {
        assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "policy_exceeds_ceiling", "{body}");
        assert_eq!(body["field"], field, "{body}");
        assert_eq!(body["value"], value, "{body}");
        assert!(
            body["ceiling"].as_str().unwrap().starts_with(label),
            "{body}"
        );
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
}

#[tokio::test]
async fn a_member_beyond_the_ceiling_gets_403_naming_field_and_value() {
    let h = harness(&[]).await;
    let member = account(&h.store, "member", Role::Member).await;
    let doc = json!({"roles": {"member": {"ports": [80, 443, "8000-8999"]}}});
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/policy/ceilings", Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let table = [
        (
            json!({"allow_cidrs": ["10.0.0.0/8"]}),
            "policy.allow_cidrs[0]",
            json!("10.0.0.0/8"),
        ),
        (
            json!({"allow_cidrs": ["8.8.8.0/24", "10.213.0.0/8"]}),
            "policy.allow_cidrs[1]",
            json!("10.0.0.0/8"),
        ),
        (
            json!({"allow_ports": [443, 9090]}),
            "policy.allow_ports[1]",
            json!(9090),
        ),
        (
            json!({"allow_ports": [9090, 443]}),
            "policy.allow_ports[0]",
            json!(9090),
        ),
        (json!({"mode": "report"}), "policy.mode", json!("report")),
    ];
    for (policy, field, value) in table {
        let answers = both(&h, &member, &policy).await;
        assert_exceeds(&answers, field, value, "role:member@");
    }
    for policy in [
        json!({}),
        json!({"allow_cidrs": ["8.8.8.0/24"], "allow_ports": [8443]}),
    ] {
        let answers = both(&h, &member, &policy).await;
        assert_within(&answers, &policy.to_string());
    }
    // An admin's own ceiling admits report mode by default.
    let admin = account(&h.store, "admin", Role::Admin).await;
    assert_within(
        &both(&h, &admin, &json!({"mode": "report"})).await,
        "admin report",
    );
}

#[tokio::test]
async fn entries_that_never_take_effect_are_400s_naming_the_field() {
    let h = harness(&[]).await;
    let admin = account(&h.store, "admin", Role::Admin).await;
    let doc = json!({"roles": {"admin": {"allow_cidrs": ["0.0.0.0/0"]}}});
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/policy/ceilings", Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The default pool (10.213.0.0/16) is the sandboxes' own address space.
    for cidr in [
        "169.254.169.254/32",
        "127.0.0.0/8",
        "10.213.0.0/16",
        "10.213.7.8/29",
        "10.212.0.0/24",
    ] {
        let policy = json!({"allow_cidrs": ["10.1.0.0/16", cidr]});
        for (status, body) in both(&h, &admin, &policy).await {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{cidr}: {body}");
            assert_eq!(body["error"], "invalid_request", "{cidr}: {body}");
            assert_eq!(
                body["fields"][0]["field"], "policy.allow_cidrs[1]",
                "{cidr}: {body}"
            );
            assert_eq!(
                body["fields"].as_array().unwrap().len(),
                1,
                "{cidr}: {body}"
            );
        }
    }
    assert_within(
        &both(&h, &admin, &json!({"allow_cidrs": ["10.1.0.0/16"]})).await,
        "10.1/16",
    );
}

#[tokio::test]
async fn an_admin_raises_a_ceiling_audited_and_it_applies() {
    let h = harness(&[]).await;
    let member = account(&h.store, "member", Role::Member).await;
    let policy = json!({"allow_cidrs": ["10.50.1.0/24"]});
    let label = |body: &Value| body["ceiling"].as_str().unwrap().to_owned();
    let before = both(&h, &member, &policy).await;
    assert_exceeds(
        &before,
        "policy.allow_cidrs[0]",
        json!("10.50.1.0/24"),
        "role:member@",
    );
    let (status, view) = call(&h, TOKEN, Method::GET, "/v1/policy/ceilings", None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["source"], "default");
    assert_eq!(
        view["effective"]["roles"]["member"]["label"],
        label(&before[0].1)
    );

    let raised = json!({"roles": {"member": {"allow_cidrs": ["10.50.0.0/16"]}}});
    let (status, view) = call(
        &h,
        TOKEN,
        Method::PUT,
        "/v1/policy/ceilings",
        Some(raised.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["source"], "api");
    assert_eq!(view["ceilings"], raised);
    assert_eq!(
        view["effective"]["roles"]["member"]["allow_cidrs"],
        json!(["10.50.0.0/16"])
    );
    assert_within(&both(&h, &member, &policy).await, "raised");

    let lowered = json!({"roles": {}});
    let (status, _) = call(
        &h,
        TOKEN,
        Method::PUT,
        "/v1/policy/ceilings",
        Some(lowered.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_exceeds(
        &both(&h, &member, &policy).await,
        "policy.allow_cidrs[0]",
        json!("10.50.1.0/24"),
        "role:member@",
    );

    let (status, audit) = call(&h, TOKEN, Method::GET, "/v1/audit?limit=100", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let details: Vec<Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "PUT /v1/policy/ceilings")
        .map(|r| serde_json::from_str(r["detail"].as_str().unwrap()).unwrap())
        .collect();
    // Newest first.
    assert_eq!(
        details,
        vec![
            json!({"before": raised, "after": {}}),
            json!({"before": null, "after": raised}),
        ]
    );
}

#[tokio::test]
async fn a_user_override_applies_to_that_user_only() {
    let h = harness(&[]).await;
    let alice = account(&h.store, "alice", Role::Member).await;
    let bob = account(&h.store, "bob", Role::Member).await;
    let email = alice.0.email.to_uppercase();
    let doc = json!({"users": {email: {"allow_cidrs": ["10.50.0.0/16"], "report_mode": true}}});
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/policy/ceilings", Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let policy = json!({"allow_cidrs": ["10.50.9.0/24"], "mode": "report"});
    assert_within(&both(&h, &alice, &policy).await, "alice");
    assert_exceeds(
        &both(&h, &bob, &policy).await,
        "policy.allow_cidrs[0]",
        json!("10.50.9.0/24"),
        "role:member@",
    );
    let beyond = json!({"allow_cidrs": ["10.51.0.0/24"]});
    let label = format!("user:{}@", alice.0.id);
    assert_exceeds(
        &both(&h, &alice, &beyond).await,
        "policy.allow_cidrs[0]",
        json!("10.51.0.0/24"),
        &label,
    );
}

#[tokio::test]
async fn ceilings_documents_are_checked_naming_the_field() {
    let h = harness(&[]).await;
    let table = [
        (
            json!({"roles": {"member": {"ports": ["x"]}}}),
            "invalid_json",
            "roles.member.ports[0]",
        ),
        (
            json!({"roles": {"member": {"colour": 1}}}),
            "invalid_json",
            "roles.member.colour",
        ),
        (
            json!({"roles": {"root": {}}}),
            "invalid_request",
            "roles.root",
        ),
        (
            json!({"roles": {"member": {"default_policy": {"mode": "report"}}}}),
            "invalid_request",
            "roles.member.default_policy",
        ),
        (
            json!({"users": {"nobody": {}}}),
            "invalid_request",
            "users.nobody",
        ),
        // A default that names the sandbox pool could never take effect.
        (
            json!({"roles": {"admin": {"allow_cidrs": ["10.0.0.0/8"],
                "default_policy": {"allow_cidrs": ["10.213.0.0/16"]}}}}),
            "invalid_request",
            "roles.admin.default_policy",
        ),
    ];
    for (doc, code, field) in table {
        let (status, body) = call(
            &h,
            TOKEN,
            Method::PUT,
            "/v1/policy/ceilings",
            Some(doc.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}: {body}");
        assert_eq!(body["error"], code, "{doc}: {body}");
        assert_eq!(body["fields"][0]["field"], field, "{doc}: {body}");
    }
    let (_, view) = call(&h, TOKEN, Method::GET, "/v1/policy/ceilings", None).await;
    assert_eq!(view["source"], "default", "nothing was stored: {view}");
    let member = account(&h.store, "member", Role::Member).await;
    for (method, uri) in [
        (Method::GET, "/v1/policy/ceilings"),
        (Method::GET, "/v1/policy/infrastructure"),
    ] {
        let (status, body) = call(&h, &member.1, method, uri, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
    }
}

#[tokio::test]
async fn default_policy_deny_allows_nothing_by_default() {
    let h = harness(&[("AIRLOCK_DEFAULT_POLICY", "deny")]).await;
    let (status, view) = call(&h, TOKEN, Method::GET, "/v1/policy/ceilings", None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["default_policy"], "deny");
    for role in ["admin", "member", "viewer"] {
        assert_eq!(
            view["effective"]["roles"][role]["default_policy"],
            json!({"allow_public": false, "allow_domains": []}),
            "{role}: {view}"
        );
    }
    // A ceiling that refuses allow_public: asking for it is a 403 naming it.
    let doc = json!({"roles": {"member": {"allow_public": false}}});
    let (status, _) = call(&h, TOKEN, Method::PUT, "/v1/policy/ceilings", Some(doc)).await;
    assert_eq!(status, StatusCode::OK);
    let member = account(&h.store, "member", Role::Member).await;
    let answers = both(&h, &member, &json!({"allow_public": true})).await;
    assert_exceeds(&answers, "policy.allow_public", json!(true), "role:member@");
    assert_within(
        &both(&h, &member, &json!({"allow_domains": ["example.com"]})).await,
        "list",
    );
}

#[tokio::test]
async fn admins_see_the_infrastructure_list() {
    let h = harness(&[
        ("AIRLOCK_INFRA_CIDRS", "10.77.0.0/16"),
        ("AIRLOCK_DOCKER_HOST", "tcp://10.231.7.2:2376"),
    ])
    .await;
    let (status, body) = call(&h, TOKEN, Method::GET, "/v1/policy/infrastructure", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cidrs: Vec<&str> = body["cidrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for want in [
        "10.77.0.0/16",
        "10.212.0.0/24",
        "10.213.0.0/16",
        "10.231.7.2/32",
    ] {
        assert!(cidrs.contains(&want), "{want} in {cidrs:?}");
    }
    let (_, view) = call(&h, TOKEN, Method::GET, "/v1/policy/ceilings", None).await;
    assert_eq!(view["infrastructure"], body["cidrs"]);
    // An operator's CIDR is refused in a policy like the pools.
    let admin = account(&h.store, "admin", Role::Admin).await;
    let doc = json!({"roles": {"admin": {"allow_cidrs": ["10.0.0.0/8"]}}});
    call(&h, TOKEN, Method::PUT, "/v1/policy/ceilings", Some(doc)).await;
    for (status, body) in both(&h, &admin, &json!({"allow_cidrs": ["10.77.1.0/24"]})).await {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["fields"][0]["field"], "policy.allow_cidrs[0]",
            "{body}"
        );
    }
}
