//! Bootstrapping the first admin: the `AIRLOCK_BOOTSTRAP_ADMIN_*` pair (idempotent; one alone
//! is a configuration error), `airlock admin create-user --role admin` offline, and a fresh
//! instance that refuses every call with a message saying how to bootstrap.

use std::path::Path;

use airlock::accounts::user::{Role, TokenScope};
use airlock::accounts::EnsureBootstrapAdmin;
use airlock::audit::Actor;
use airlock::config::{Config, DatabaseConfig};
use airlock::store::Store;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::airlock;
use crate::harness::{assert_error, harness, harness_on, Call, Db, Harness, Keep};
use crate::route_walk::{Who, RULES};

const PASSWORD: &str = "bootstrap password 1";

macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(crate::harness::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(crate::harness::Db::Postgres).await;
            }
        }
    };
}

async fn login(h: &Harness, email: &str, password: &str) -> crate::harness::Reply {
    let body = json!({"email": email, "password": password}).to_string();
    h.send(Call::new(Method::POST, "/v1/auth/login").body(&body))
        .await
}

both_backends!(bootstrap_pair_is_idempotent, bootstrap_pair);
async fn bootstrap_pair(db: Db) {
    let h = harness(db).await;
    let vars = [
        ("AIRLOCK_BOOTSTRAP_ADMIN_EMAIL", " Root@Example.org "),
        ("AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let config = Config::from_lookup(lookup).unwrap();
    let bootstrap = config.bootstrap_admin.unwrap();
    let accounts = &h.state.services.accounts;
    let ensure = || EnsureBootstrapAdmin {
        admin: bootstrap.clone(),
    };
    let first = accounts.run(&Actor::boot(), ensure()).await.unwrap();
    assert_eq!(first.role, Role::Admin);
    assert_eq!(first.email, "root@example.org");
    let (_, hash) = h
        .store
        .user_login("root@example.org")
        .await
        .unwrap()
        .unwrap();
    // Restarts change nothing: the same account, the same password hash.
    for _ in 0..2 {
        let again = accounts.run(&Actor::boot(), ensure()).await.unwrap();
        assert_eq!(again, first);
    }
    let (_, hash_again) = h
        .store
        .user_login("root@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash, hash_again);
    let users = h.store.list_users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .filter(|u| u.email == "root@example.org")
            .count(),
        1
    );
    let reply = login(&h, "root@example.org", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let session = reply.body["token"].as_str().unwrap();
    let me = h.call(Method::GET, "/v1/me", session, None).await;
    assert_eq!(me.body["effective_role"], "admin", "{}", me.text);
}

#[test]
fn one_of_the_bootstrap_pair_alone_is_a_config_error() {
    let cases = [
        (
            "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL",
            "root@example.org",
            "AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD",
        ),
        (
            "AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD",
            PASSWORD,
            "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL",
        ),
    ];
    for (set, value, missing) in cases {
        let out = airlock(&["serve"], &[(set, value)], "");
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(missing), "{missing} not named:\n{stderr}");
        assert!(!stderr.contains(PASSWORD), "the password leaked:\n{stderr}");
    }
}

both_backends!(a_fresh_instance_refuses_every_call, fresh_instance);
async fn fresh_instance(db: Db) {
    let h = harness(db).await;
    // A member made first does not bootstrap the instance: nobody can administer it.
    let member = h.account("early@example.org", Role::Member).await;
    let token = h
        .api_token(member.id, &[TokenScope::SandboxesRead], None)
        .await
        .0;
    let assert_refused = |reply: &crate::harness::Reply, what: &str| {
        assert_error(reply, StatusCode::UNAUTHORIZED, "not_bootstrapped");
        let message = reply.body["message"].as_str().unwrap();
        for hint in [
            "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL",
            "AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD",
            "airlock admin create-user",
        ] {
            assert!(
                message.contains(hint),
                "{what}: {hint} missing from {message}"
            );
        }
    };
    for rule in RULES.iter().filter(|r| r.who != Who::Public) {
        let uri = rule.path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let method: Method = rule.method.parse().unwrap();
        for bearer in [None, Some(&member.session), Some(&token)] {
            let mut call = Call::new(method.clone(), uri.as_str());
            call.body = rule.body;
            if let Some(bearer) = bearer {
                call = call.bearer(bearer);
            }
            let reply = h.send(call).await;
            assert_refused(&reply, &format!("{} {uri}", rule.method));
        }
    }
    // Once an admin can sign in, the same calls are ordinary.
    let admin = h.account("root@example.org", Role::Admin).await;
    h.api_token(admin.id, &[TokenScope::Admin], None).await;
    let reply = h.call(Method::GET, "/v1/me", &member.session, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = h.send(Call::new(Method::GET, "/v1/me")).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// `airlock admin create-user --role admin` and `create-token` work offline against a data
/// dir, and a server over that store then accepts the password and the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_user_works_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let vars = [("AIRLOCK_DATA_DIR", data.as_str())];
    let create = [
        "admin",
        "create-user",
        "--email",
        "Root@Example.org",
        "--role",
        "admin",
        "--password-stdin",
    ];
    let out = airlock(&create, &vars, &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("created admin root@example.org"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD));
    // The same email twice is refused.
    let out = airlock(&create, &vars, &format!("{PASSWORD}\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("already exists"));
    let token_args = [
        "admin",
        "create-token",
        "--email",
        "root@example.org",
        "--name",
        "ci",
        "--scope",
        "admin",
    ];
    let out = airlock(&token_args, &vars, "");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("alt_"), "{token}");

    let path = dir.path().to_owned();
    let h = serve_data_dir(&path, dir).await;
    let reply = login(&h, "root@example.org", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"]["role"], "admin");
    let me = h.call(Method::GET, "/v1/me", &token, None).await;
    assert_eq!(me.body["effective_role"], "admin", "{}", me.text);
}

async fn serve_data_dir(path: &Path, dir: tempfile::TempDir) -> Harness {
    let database = DatabaseConfig::Sqlite {
        path: path.join("airlock.db"),
    };
    let store = Store::connect(&database).await.unwrap();
    harness_on(database, store, Keep::Dir(dir)).await
}
