//! Revocation is immediate: a live WebSocket exec and a followed log stream end within a
//! second of their token being revoked, against a real DinD over mTLS through the real
//! listener. The figures are printed (`--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock::accounts::user::{Role, Scopes};
use airlock::accounts::{CreateToken, CreateUser, TokenOwner};
use airlock::api::{AppState, Auth};
use airlock::audit::Actor;
use airlock::serve::serve_on;
use airlock::services::{Services, Settings};
use e2e::controller::{parts, Parts};
use e2e::serve::http;
use e2e::{dind_with_testbox, Timing};
use futures_util::StreamExt;
use serde_json::json;
use test_support::dind::{DindOptions, TESTBOX_IMAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ADMIN_TOKEN: &str = "e2e-admin-token-revocation-0123";
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_revoked_token_ends_its_exec_session_and_log_stream_within_a_second() {
    let mut timing = Timing::start("revocation");
    let dind = dind_with_testbox(DindOptions::new("revocation"), &mut timing)
        .await
        .unwrap();
    let Parts {
        dir: _dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &[("AIRLOCK_STOP_GRACE", "1s")]).await;
    let services = Services::new(store, docker, Settings::from_config(&config));
    let create = CreateUser {
        email: "owner@example.test".to_owned(),
        display_name: String::new(),
        role: Role::Member,
        password: None,
    };
    services.accounts.run(&Actor::boot(), create).await.unwrap();
    let create = CreateToken {
        owner: TokenOwner::Email("owner@example.test".to_owned()),
        name: "live".to_owned(),
        scopes: Scopes::allowed_for(Role::Member),
        expires_in: None,
    };
    let issued = services.accounts.run(&Actor::boot(), create).await.unwrap();
    let (token, token_id) = (issued.text, issued.token.id.to_string());
    let auth = Auth::new(Some(airlock::config::Secret::new(ADMIN_TOKEN)), admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = AppState::new(services, auth);
    let server = tokio::spawn(async move {
        serve_on(listener, state, async move { drop(stopped.await) })
            .await
            .unwrap();
    });
    timing.phase("controller-up");

    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", "echo started; sleep 300"]});
    let (status, body) = http(addr, &token, "POST", "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // An interactive exec that waits on stdin.
    let url = format!("ws://{addr}/v1/sandboxes/{id}/exec/ws?cmd=cat");
    let mut request = url.into_client_request().unwrap();
    let bearer = format!("Bearer {token}").parse().unwrap();
    request.headers_mut().insert("authorization", bearer);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // A followed log stream.
    let mut logs = test_support::upstream::connect(addr).await.unwrap();
    let head = format!(
        "GET /v1/sandboxes/{id}/logs?follow=true HTTP/1.1\r\nhost: airlock\r\n\
         authorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    logs.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("started") {
        let n = tokio::time::timeout(DEADLINE, logs.read(&mut buf))
            .await
            .expect("log output in time")
            .unwrap();
        assert!(
            n > 0,
            "the log stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    timing.phase("streams-open");

    // The owner revokes the token the streams run on.
    let (status, body) = http(
        addr,
        &token,
        "DELETE",
        &format!("/v1/tokens/{token_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let revoked = Instant::now();
    let exec_end = async {
        loop {
            match tokio::time::timeout(DEADLINE, socket.next())
                .await
                .expect("the session stalled")
            {
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.expect("a close frame");
                    return (
                        revoked.elapsed(),
                        u16::from(frame.code),
                        frame.reason.to_string(),
                    );
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return (revoked.elapsed(), 0, String::new()),
            }
        }
    };
    let logs_end = async {
        loop {
            let n = tokio::time::timeout(DEADLINE, logs.read(&mut buf))
                .await
                .expect("the log stream stalled")
                .unwrap_or(0);
            if n == 0 {
                return revoked.elapsed();
            }
        }
    };
    let ((exec_after, code, reason), logs_after) = tokio::join!(exec_end, logs_end);
    println!(
        "revocation: the WebSocket exec closed {exec_after:?} and the followed log stream \
         ended {logs_after:?} after the token was revoked"
    );
    assert_eq!((code, reason.as_str()), (1008, "unauthorized"));
    assert!(exec_after < Duration::from_secs(1), "{exec_after:?}");
    assert!(logs_after < Duration::from_secs(1), "{logs_after:?}");
    // The token is refused everywhere now.
    let (status, _) = http(addr, &token, "GET", "/v1/sandboxes", None).await;
    assert_eq!(status, 401);
    let (status, body) = http(
        addr,
        ADMIN_TOKEN,
        "DELETE",
        &format!("/v1/sandboxes/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    drop(stop);
    server.await.unwrap();
    timing.phase("revoked");
}
