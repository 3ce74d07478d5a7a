//! Accounts through the API: password hashing, login, API tokens (shown once, stored hashed,
//! scoped, expiring, revocable), invites, and login throttling. The store-touching tests run
//! on SQLite and on Postgres.

use std::net::IpAddr;
use std::time::Duration;

use airlock::accounts::credential::{hash_token, NewToken, TokenKind};
use airlock::accounts::user::{Role, TokenScope};
use airlock::accounts::CreateUser;
use airlock::audit::Actor;
use airlock::config::DatabaseConfig;
use airlock::store::NewInvite;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::harness::{assert_error, harness, Call, Db, Harness, Reply};
use crate::route_walk::{Who, RULES};

const PASSWORD: &str = "correct horse battery staple";

/// Defines `mod $name { sqlite, postgres }`, each running `$body(db)`.
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

/// A user with `PASSWORD`, made the way `airlock admin create-user` makes one.
async fn user_with_password(h: &Harness, email: &str, role: Role) {
    let create = CreateUser {
        email: email.to_owned(),
        display_name: String::new(),
        role,
        password: Some(PASSWORD.to_owned()),
    };
    let accounts = &h.state.services.accounts;
    accounts.run(&Actor::boot(), create).await.unwrap();
}

async fn login(h: &Harness, email: &str, password: &str, ip: Option<IpAddr>) -> Reply {
    let body = json!({"email": email, "password": password}).to_string();
    let mut call = Call::new(Method::POST, "/v1/auth/login").body(&body);
    call.source = ip;
    h.send(call).await
}

/// A bootstrapped harness with an admin (password `PASSWORD`) and their session.
async fn with_admin(db: Db) -> (Harness, String) {
    let h = harness(db).await;
    user_with_password(&h, "root@example.org", Role::Admin).await;
    let reply = login(&h, "root@example.org", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let session = reply.body["token"].as_str().unwrap().to_owned();
    (h, session)
}

async fn create_token(h: &Harness, bearer: &str, body: Value) -> Reply {
    let body = body.to_string();
    h.call(Method::POST, "/v1/tokens", bearer, Some(&body))
        .await
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

both_backends!(passwords_are_argon2id, passwords_are_argon2id);
async fn passwords_are_argon2id(db: Db) {
    let h = harness(db).await;
    user_with_password(&h, "one@example.org", Role::Member).await;
    user_with_password(&h, "two@example.org", Role::Member).await;
    let mut hashes = Vec::new();
    for email in ["one@example.org", "two@example.org"] {
        let (_, hash) = h.store.user_login(email).await.unwrap().unwrap();
        let hash = hash.unwrap();
        // OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains(PASSWORD));
        hashes.push(hash);
    }
    assert_ne!(
        hashes[0], hashes[1],
        "the same password must hash differently (salt)"
    );
    // Passwords shorter than 12 characters are refused.
    let short = CreateUser {
        email: "three@example.org".to_owned(),
        display_name: String::new(),
        role: Role::Member,
        password: Some("too short".to_owned()),
    };
    let accounts = &h.state.services.accounts;
    assert!(accounts.run(&Actor::boot(), short).await.is_err());
    assert!(h
        .store
        .get_user_by_email("three@example.org")
        .await
        .unwrap()
        .is_none());
}

both_backends!(login_returns_a_session, login_returns_a_session);
async fn login_returns_a_session(db: Db) {
    let (h, _) = with_admin(db).await;
    user_with_password(&h, "mia@example.org", Role::Member).await;
    let started = OffsetDateTime::now_utc();
    // Emails are matched case-insensitively.
    let reply = login(&h, " MIA@example.org", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let token = reply.body["token"].as_str().unwrap();
    assert!(token.starts_with("als_"), "{token}");
    assert_eq!(reply.body["user"]["email"], "mia@example.org");
    assert_eq!(reply.body["user"]["role"], "member");
    let expires = OffsetDateTime::parse(
        reply.body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // Twelve hours from the login (which took a moment after `started`).
    let ttl = expires - started;
    let hours = time::Duration::hours(12);
    assert!(
        ttl >= hours && ttl < hours + time::Duration::minutes(1),
        "{ttl}"
    );
    let me = h.call(Method::GET, "/v1/me", token, None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["user"]["email"], "mia@example.org");
    assert_eq!(me.body["effective_role"], "member");
    // The session is stored hashed.
    let now = OffsetDateTime::now_utc();
    assert!(h.store.session_bearer(token, now).await.unwrap().is_none());
    assert!(h
        .store
        .session_bearer(&hash_token(token), now)
        .await
        .unwrap()
        .is_some());

    // A wrong password and an unknown account get the very same answer.
    let wrong = login(&h, "mia@example.org", "wrong horse battery staple", None).await;
    let unknown = login(&h, "nobody@example.org", PASSWORD, None).await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    // A disabled account cannot log in, with the same answer again.
    let mia = h
        .store
        .get_user_by_email("mia@example.org")
        .await
        .unwrap()
        .unwrap();
    h.disable(mia.id).await;
    let disabled = login(&h, "mia@example.org", PASSWORD, None).await;
    assert_eq!(
        (disabled.status, &disabled.body),
        (unknown.status, &unknown.body)
    );
    let me = h.call(Method::GET, "/v1/me", token, None).await;
    assert_error(&me, StatusCode::UNAUTHORIZED, "unauthorized");
}

both_backends!(tokens_are_shown_once_and_stored_hashed, tokens_shown_once);
async fn tokens_shown_once(db: Db) {
    let (h, admin) = with_admin(db).await;
    let body = json!({"name": "ci", "scopes": ["sandboxes:read", "sandboxes:write"]});
    let created = create_token(&h, &admin, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let token = created.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("alt_") && token.len() == 68, "{token}");
    assert_eq!(
        created.body["scopes"],
        json!(["sandboxes:read", "sandboxes:write"])
    );
    assert_eq!(created.body["expires_at"], Value::Null);
    // Listed, but never with its text.
    let list = h.call(Method::GET, "/v1/tokens", &admin, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains(created.body["id"].as_str().unwrap()));
    assert!(!list.text.contains(&token), "{}", list.text);
    // Stored as its SHA-256 only.
    let now = OffsetDateTime::now_utc();
    assert!(h
        .store
        .api_token_bearer(&token, now)
        .await
        .unwrap()
        .is_none());
    let bearer = h
        .store
        .api_token_bearer(&hash_token(&token), now)
        .await
        .unwrap();
    assert!(bearer.is_some());
    if let DatabaseConfig::Sqlite { path } = &h.database {
        for file in [path.clone(), path.with_extension("db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(token.len()).any(|w| w == token.as_bytes());
            assert!(!found, "the token text is in {}", file.display());
        }
    }
    // It works, narrowed to the admin's member rights (no `admin` scope).
    let me = h.call(Method::GET, "/v1/me", &token, None).await;
    assert_eq!(me.body["effective_role"], "member", "{}", me.text);
    let users = h.call(Method::GET, "/v1/users", &token, None).await;
    assert_error(&users, StatusCode::FORBIDDEN, "forbidden");
}

both_backends!(scopes_never_exceed_the_role, scopes_never_exceed_the_role);
async fn scopes_never_exceed_the_role(db: Db) {
    let (h, admin) = with_admin(db).await;
    let member = h.account("m@example.org", Role::Member).await;
    let viewer = h.account("v@example.org", Role::Viewer).await;
    let cases = [
        (&member.session, json!(["admin"]), StatusCode::FORBIDDEN),
        (
            &viewer.session,
            json!(["sandboxes:write"]),
            StatusCode::FORBIDDEN,
        ),
        (&member.session, json!(["root"]), StatusCode::BAD_REQUEST),
        (&member.session, json!([]), StatusCode::BAD_REQUEST),
        (
            &viewer.session,
            json!(["sandboxes:read"]),
            StatusCode::CREATED,
        ),
        (
            &member.session,
            json!(["sandboxes:write"]),
            StatusCode::CREATED,
        ),
        (&admin, json!(["admin"]), StatusCode::CREATED),
        (
            &admin,
            json!(["admin", "tokens:write"]),
            StatusCode::CREATED,
        ),
    ];
    let mut tokens = Vec::new();
    for (session, scopes, status) in cases {
        let reply = create_token(&h, session, json!({"name": "t", "scopes": scopes})).await;
        assert_eq!(reply.status, status, "{scopes}: {}", reply.text);
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(reply.body["fields"][0]["field"], "scopes", "{}", reply.text);
        }
        if let Some(token) = reply.body["token"].as_str() {
            tokens.push(token.to_owned());
        }
    }
    let [viewer_read, member_write, admin_scoped, admin_minter] = &tokens[..] else {
        panic!("{tokens:?}");
    };
    let sandbox = r#"{"image":""}"#;
    // A read token reads and cannot write.
    let reply = h
        .call(Method::GET, "/v1/sandboxes", viewer_read, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = h
        .call(Method::POST, "/v1/sandboxes", viewer_read, Some(sandbox))
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
    // A write token gets to validation (the empty image).
    let reply = h
        .call(Method::POST, "/v1/sandboxes", member_write, Some(sandbox))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // API tokens cannot mint API tokens (a leaked one could otherwise outlive its
    // revocation), an `admin` one included; only an admin's with `tokens:write` can.
    let body = json!({"name": "child", "scopes": ["sandboxes:read"]});
    for token in [viewer_read, member_write, admin_scoped] {
        let reply = create_token(&h, token, body.clone()).await;
        assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
    }
    let reply = create_token(&h, admin_minter, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    // A `sandboxes:read` token cannot revoke tokens, not even itself.
    let child = reply.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/v1/tokens/{child}");
    let reply = h.call(Method::DELETE, &uri, viewer_read, None).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
    let reply = h.call(Method::DELETE, &uri, admin_scoped, None).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
    let reply = h.call(Method::DELETE, &uri, admin_minter, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let reply = h.call(Method::GET, "/v1/users", admin_scoped, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

both_backends!(tokens_expire, tokens_expire);
async fn tokens_expire(db: Db) {
    let (h, admin) = with_admin(db).await;
    for bad in [json!(0), json!(366 * 86_400 + 1), json!(-1)] {
        let body = json!({"name": "t", "scopes": ["admin"], "expires_in_s": bad});
        let reply = create_token(&h, &admin, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
    }
    let body = json!({"name": "short", "scopes": ["sandboxes:read"], "expires_in_s": 2});
    let reply = create_token(&h, &admin, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert!(reply.body["expires_at"].is_string());
    let token = reply.body["token"].as_str().unwrap().to_owned();
    // It works until it expires two seconds later: the accounts' clock moves, nothing sleeps.
    let worked = h.call(Method::GET, "/v1/me", &token, None).await.status == StatusCode::OK;
    h.advance(Duration::from_secs(1));
    let reply = h.call(Method::GET, "/v1/me", &token, None).await;
    assert_eq!(reply.status, StatusCode::OK, "the token expired early");
    h.advance(Duration::from_secs(1));
    let reply = h.call(Method::GET, "/v1/me", &token, None).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "the token did not expire"
    );
    assert!(worked, "the token never worked");
    // An expired session is refused too.
    let root = h
        .store
        .get_user_by_email("root@example.org")
        .await
        .unwrap()
        .unwrap();
    let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
    let session = h.session_until(root.id, past).await;
    let reply = h.call(Method::GET, "/v1/me", &session, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
}

both_backends!(tokens_are_revocable, tokens_are_revocable);
async fn tokens_are_revocable(db: Db) {
    let (h, admin) = with_admin(db).await;
    let member = h.account("m@example.org", Role::Member).await;
    let body = json!({"name": "ci", "scopes": ["sandboxes:write"]});
    let created = create_token(&h, &member.session, body).await;
    let token = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(Method::GET, "/v1/me", &token, None).await.status,
        StatusCode::OK
    );
    let uri = format!("/v1/tokens/{id}");
    let revoked = h.call(Method::DELETE, &uri, &member.session, None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    let reply = h.call(Method::GET, "/v1/me", &token, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    // Revoking again is fine; the listing shows when.
    let again = h.call(Method::DELETE, &uri, &member.session, None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let list = h
        .call(Method::GET, "/v1/tokens", &member.session, None)
        .await;
    assert!(list.body[0]["revoked_at"].is_string(), "{}", list.text);
    // An admin sees and revokes anyone's tokens.
    let other = h
        .api_token(member.id, &[TokenScope::SandboxesRead], None)
        .await;
    let all = h.call(Method::GET, "/v1/tokens", &admin, None).await;
    assert!(all.text.contains(&other.1.id.to_string()), "{}", all.text);
    let uri = format!("/v1/tokens/{}", other.1.id);
    let reply = h.call(Method::DELETE, &uri, &admin, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = h.call(Method::GET, "/v1/me", &other.0, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
}

both_backends!(invites_are_single_use_and_expire, invites);
async fn invites(db: Db) {
    let (h, admin) = with_admin(db).await;
    let body = json!({"email": "New@Example.org", "role": "viewer"}).to_string();
    let invite = h
        .call(Method::POST, "/v1/users/invites", &admin, Some(&body))
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{}", invite.text);
    assert_eq!(invite.body["email"], "new@example.org");
    assert_eq!(invite.body["role"], "viewer");
    let token = invite.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ali_"));
    let accept = |password: &str| {
        json!({"token": token, "password": password, "display_name": "New"}).to_string()
    };
    // A bad password is refused before the invite is used.
    let short = accept("short");
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/accept-invite").body(&short))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(reply.body["fields"][0]["field"], "password");
    let good = accept(PASSWORD);
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/accept-invite").body(&good))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["user"]["role"], "viewer");
    let session = reply.body["token"].as_str().unwrap();
    let me = h.call(Method::GET, "/v1/me", session, None).await;
    assert_eq!(me.body["effective_role"], "viewer", "{}", me.text);
    // Single use.
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/accept-invite").body(&good))
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    let users = h.store.list_users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .filter(|u| u.email == "new@example.org")
            .count(),
        1
    );
    // The new account logs in with its password.
    let reply = login(&h, "new@example.org", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // An expired invite creates nothing.
    let root = h
        .store
        .get_user_by_email("root@example.org")
        .await
        .unwrap()
        .unwrap();
    let expired = NewToken::generate(TokenKind::Invite);
    let new = NewInvite {
        email: "late@example.org".to_owned(),
        role: Role::Member,
        hash: expired.hash.clone(),
        created_by: root.id,
        expires_at: OffsetDateTime::now_utc() - Duration::from_secs(1),
    };
    h.store.create_invite(new).await.unwrap();
    let body =
        json!({"token": expired.text, "password": PASSWORD, "display_name": "Late"}).to_string();
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/accept-invite").body(&body))
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    assert!(h
        .store
        .get_user_by_email("late@example.org")
        .await
        .unwrap()
        .is_none());
    // An email that has an account cannot be invited again.
    let body = json!({"email": "NEW@example.org"}).to_string();
    let reply = h
        .call(Method::POST, "/v1/users/invites", &admin, Some(&body))
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "email_taken");
    // Invite lifetimes are bounded; only admins invite.
    let body = json!({"email": "x@example.org", "expires_in_s": 59}).to_string();
    let reply = h
        .call(Method::POST, "/v1/users/invites", &admin, Some(&body))
        .await;
    assert_eq!(
        reply.body["fields"][0]["field"], "expires_in_s",
        "{}",
        reply.text
    );
    let member = h.account("m@example.org", Role::Member).await;
    let body = json!({"email": "x@example.org"}).to_string();
    let reply = h
        .call(
            Method::POST,
            "/v1/users/invites",
            &member.session,
            Some(&body),
        )
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn there_is_no_self_registration() {
    // The only routes without a bearer are login and accepting an (admin-made) invite; the
    // route walk proves every other route refuses an anonymous caller.
    let public: Vec<_> = RULES
        .iter()
        .filter(|r| r.who == Who::Public)
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        public,
        [
            ("POST", "/v1/auth/accept-invite"),
            ("POST", "/v1/auth/login")
        ]
    );
    let (h, _) = with_admin(Db::Sqlite).await;
    let body = json!({"email": "me@example.org", "password": PASSWORD}).to_string();
    for uri in ["/v1/users", "/v1/auth/register", "/v1/auth/signup"] {
        let reply = h.send(Call::new(Method::POST, uri).body(&body)).await;
        assert!(
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED
            ]
            .contains(&reply.status),
            "{uri}: {} {}",
            reply.status,
            reply.text
        );
    }
    // A made-up invite token creates nothing.
    let made_up = format!("ali_{}", "ab".repeat(32));
    let body = json!({"token": made_up, "password": PASSWORD, "display_name": "Me"}).to_string();
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/accept-invite").body(&body))
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        h.store.list_users().await.unwrap().len(),
        2,
        "root and the token admin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_slow_the_failing_source_and_never_lock_the_owner_out() {
    let (h, _) = with_admin(Db::Sqlite).await;
    user_with_password(&h, "kim@example.org", Role::Member).await;
    user_with_password(&h, "lee@example.org", Role::Member).await;
    let wrong = "wrong horse battery staple";
    let throttled = |reply: &Reply| {
        assert_error(reply, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        let retry: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "Retry-After: {retry}");
        (reply.status, reply.body.clone())
    };

    // Per account: past three failures, a source that failed waits a growing delay...
    for _ in 1..=3 {
        let reply = login(&h, "kim@example.org", wrong, ip("10.0.0.1")).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let known = throttled(&login(&h, "kim@example.org", PASSWORD, ip("10.0.0.1")).await);
    // ...the same for an account that does not exist, with the same answers...
    for _ in 1..=3 {
        let reply = login(&h, "ghost@example.org", wrong, ip("10.0.1.1")).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let unknown = throttled(&login(&h, "ghost@example.org", wrong, ip("10.0.1.1")).await);
    assert_eq!(known, unknown);
    // ...while the right password from a source that never failed gets in at once.
    let reply = login(&h, "kim@example.org", PASSWORD, ip("10.0.0.6")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // Per source: thirty attempts from one address, each for another account, cut that
    // address off for every account; other addresses still log in.
    for n in 1..=30 {
        let email = format!("nobody{n}@example.org");
        let reply = login(&h, &email, wrong, ip("192.0.2.7")).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    throttled(&login(&h, "lee@example.org", PASSWORD, ip("192.0.2.7")).await);
    let reply = login(&h, "lee@example.org", PASSWORD, ip("192.0.2.8")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_from_one_source_stop_at_the_limit() {
    let (h, _) = with_admin(Db::Sqlite).await;
    user_with_password(&h, "kim@example.org", Role::Member).await;
    let wrong = "wrong horse battery staple";
    let guesses = (1..=20).map(|_| {
        let h = &h;
        async move { login(h, "kim@example.org", wrong, ip("10.9.0.1")).await }
    });
    let replies = futures_util::future::join_all(guesses).await;
    let count = |status| replies.iter().filter(|r| r.status == status).count();
    // Three free failures; a guess that starts after the 1 s delay (a slow machine) may
    // be judged too, and each one doubles the next delay.
    let judged = count(StatusCode::UNAUTHORIZED);
    assert!((3..=5).contains(&judged), "{replies:?}");
    assert_eq!(
        count(StatusCode::TOO_MANY_REQUESTS),
        20 - judged,
        "{replies:?}"
    );
}

both_backends!(admins_see_everyone_and_members_their_own, listings);
async fn listings(db: Db) {
    let (h, admin) = with_admin(db).await;
    let a = h.account("a@example.org", Role::Member).await;
    let b = h.account("b@example.org", Role::Member).await;
    let v = h.account("v@example.org", Role::Viewer).await;
    let a_box = h.sandbox(a.id).await.to_string();
    let v_box = h.sandbox(v.id).await.to_string();
    let ids = |reply: &Reply| -> Vec<String> {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let items = reply.body["items"].as_array().unwrap();
        items
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = |token: String| {
        let h = &h;
        async move { h.call(Method::GET, "/v1/sandboxes", &token, None).await }
    };
    assert_eq!(ids(&list(a.session.clone()).await), vec![a_box.clone()]);
    assert_eq!(ids(&list(v.session.clone()).await), vec![v_box.clone()]);
    assert!(ids(&list(b.session.clone()).await).is_empty());
    let all = ids(&list(admin).await);
    assert!(all.contains(&a_box) && all.contains(&v_box), "{all:?}");
    // The viewer reads its own sandbox.
    let uri = format!("/v1/sandboxes/{v_box}");
    let reply = h.call(Method::GET, &uri, &v.session, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}
