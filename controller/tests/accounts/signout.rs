//! Ending access through the API: logout, a password change ending the other sessions,
//! disabling (and re-enabling) a user, withdrawing an invite.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{assert_error, harness, Call, Db, Harness};
use airlock::accounts::user::{Role, TokenScope};
use airlock::accounts::CreateUser;
use airlock::audit::Actor;

const PASSWORD: &str = "correct horse battery staple";

async fn login(h: &Harness, email: &str, password: &str) -> (StatusCode, String) {
    let body = json!({"email": email, "password": password}).to_string();
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/login").body(&body))
        .await;
    let token = reply.body["token"].as_str().unwrap_or_default().to_owned();
    (reply.status, token)
}

async fn me(h: &Harness, token: &str) -> StatusCode {
    h.call(Method::GET, "/v1/me", token, None).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_password_change_disable_and_invite_withdrawal() {
    let h = harness(Db::Sqlite).await;
    let accounts = &h.state.services.accounts;
    for (email, role) in [
        ("root@example.org", Role::Admin),
        ("kim@example.org", Role::Member),
    ] {
        let create = CreateUser {
            email: email.to_owned(),
            display_name: String::new(),
            role,
            password: Some(PASSWORD.to_owned()),
        };
        accounts.run(&Actor::boot(), create).await.unwrap();
    }
    let (_, admin) = login(&h, "root@example.org", PASSWORD).await;
    let (_, one) = login(&h, "kim@example.org", PASSWORD).await;
    let (_, two) = login(&h, "kim@example.org", PASSWORD).await;
    // Logout ends only the session it is sent with.
    let reply = h.call(Method::POST, "/v1/auth/logout", &one, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(me(&h, &one).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&h, &two).await, StatusCode::OK);
    // API tokens can neither log out nor change the password.
    let kim = h
        .store
        .get_user_by_email("kim@example.org")
        .await
        .unwrap()
        .unwrap();
    let (token, _) = h
        .api_token(kim.id, &[TokenScope::SandboxesWrite], None)
        .await;
    let reply = h.call(Method::POST, "/v1/auth/logout", &token, None).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
    // A password change needs the current password and ends every other session.
    let (_, three) = login(&h, "kim@example.org", PASSWORD).await;
    let wrong =
        json!({"current_password": "not the password", "new_password": "a new long password"});
    let reply = h
        .call(
            Method::POST,
            "/v1/me/password",
            &two,
            Some(&wrong.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.body["fields"][0]["field"], "current_password");
    let right = json!({"current_password": PASSWORD, "new_password": "a new long password"});
    let reply = h
        .call(
            Method::POST,
            "/v1/me/password",
            &two,
            Some(&right.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["sessions_ended"], 1);
    assert_eq!(me(&h, &three).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&h, &two).await, StatusCode::OK);
    assert_eq!(
        login(&h, "kim@example.org", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, four) = login(&h, "kim@example.org", "a new long password").await;
    assert_eq!(status, StatusCode::OK);
    // Disabling ends the sessions; enabling again does not bring them back.
    let uri = format!("/v1/users/{}", kim.id);
    let off = json!({"disabled": true}).to_string();
    let reply = h.call(Method::PATCH, &uri, &admin, Some(&off)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(me(&h, &four).await, StatusCode::UNAUTHORIZED);
    let on = json!({"disabled": false}).to_string();
    let reply = h.call(Method::PATCH, &uri, &admin, Some(&on)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(me(&h, &four).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&h, &two).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&h, "kim@example.org", "a new long password").await.0,
        StatusCode::OK
    );
    // A withdrawn invite cannot be accepted.
    let invite = json!({"email": "new@example.org"}).to_string();
    let reply = h
        .call(Method::POST, "/v1/users/invites", &admin, Some(&invite))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let (id, token) = (
        reply.body["id"].as_str().unwrap(),
        reply.body["token"].as_str().unwrap(),
    );
    let uri = format!("/v1/users/invites/{id}");
    let reply = h.call(Method::DELETE, &uri, &admin, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let reply = h.call(Method::DELETE, &uri, &admin, None).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    let accept = json!({"token": token, "password": "a long enough password", "display_name": "N"});
    let reply = h
        .send(Call::new(Method::POST, "/v1/auth/accept-invite").body(&accept.to_string()))
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
}
