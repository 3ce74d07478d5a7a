//! Interactive exec over a WebSocket (`GET /v1/sandboxes/{id}/exec/ws`) through the controller
//! served on loopback, against a real DinD over mTLS, with a real WebSocket client: an echo
//! round trip through `cat`, stdin end-of-file, exit codes in the final frame and the close
//! frame, a terminal that follows a resize, a timeout; and who may call it: the owner and an
//! admin may, a read-only token on the owner's own sandbox is refused (403), another user
//! (member or viewer) gets 404, a plain GET 400 and a stopped sandbox 409.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use airlock::accounts::user::{Role, Scopes, TokenScope};
use airlock::accounts::{CreateToken, CreateUser, TokenOwner};
use airlock::api::{AppState, Auth};
use airlock::audit::Actor;
use airlock::serve::serve_on;
use airlock::services::{Services, Settings};
use e2e::controller::{parts, Parts};
use e2e::serve::http;
use e2e::{dind_with_testbox, Timing};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ADMIN_TOKEN: &str = "e2e-admin-token-exec-ws-0123456";
/// Longest any one read may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    _dind: Dind,
    _dir: TempDir,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Tokens by user: the owner (member), another member, a viewer, and the owner's
    /// read-only token.
    owner: String,
    other: String,
    viewer: String,
    owner_read_only: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn server(test: &'static str, timing: &mut Timing) -> Server {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &[("AIRLOCK_STOP_GRACE", "1s")]).await;
    let services = Services::new(store, docker, Settings::from_config(&config));
    let accounts = &services.accounts;
    let token = |email: &str, name: &str, scopes| CreateToken {
        owner: TokenOwner::Email(email.to_owned()),
        name: name.to_owned(),
        scopes,
        expires_in: None,
    };
    let mut tokens = Vec::new();
    for (email, role) in [
        ("owner@example.test", Role::Member),
        ("other@example.test", Role::Member),
        ("viewer@example.test", Role::Viewer),
    ] {
        let create = CreateUser {
            email: email.to_owned(),
            display_name: String::new(),
            role,
            password: None,
        };
        accounts.run(&Actor::boot(), create).await.unwrap();
        let scopes = Scopes::allowed_for(role);
        let create = token(email, "ws", scopes);
        tokens.push(accounts.run(&Actor::boot(), create).await.unwrap().text);
    }
    let read_only = [TokenScope::SandboxesRead].into_iter().collect();
    let create = token("owner@example.test", "ro", read_only);
    let owner_read_only = accounts.run(&Actor::boot(), create).await.unwrap().text;
    let auth = Auth::new(Some(airlock::config::Secret::new(ADMIN_TOKEN)), admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = AppState::new(services, auth);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        serve_on(listener, state, shutdown).await.unwrap();
    });
    timing.phase("controller-up");
    let [owner, other, viewer] = <[String; 3]>::try_from(tokens).unwrap();
    Server {
        _dind: dind,
        _dir: dir,
        addr,
        stop: Some(stop),
        owner,
        other,
        viewer,
        owner_read_only,
    }
}

impl Server {
    async fn create(&self, token: &str, cmd: &[&str]) -> String {
        let body = json!({"image": TESTBOX_IMAGE, "cmd": cmd});
        let (status, body) = http(self.addr, token, "POST", "/v1/sandboxes", Some(body)).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Opens the WebSocket; the HTTP status when the upgrade is refused.
    async fn open(&self, token: &str, id: &str, query: &str) -> Result<Socket, (u16, Value)> {
        let url = format!("ws://{}/v1/sandboxes/{id}/exec/ws?{query}", self.addr);
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let connected = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .expect("the upgrade stalled");
        match connected {
            Ok((socket, response)) => {
                assert_eq!(response.status(), 101);
                Ok(socket)
            }
            Err(WsError::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }

    async fn session(&self, token: &str, id: &str, query: &str) -> Socket {
        match self.open(token, id, query).await {
            Ok(socket) => socket,
            Err((status, body)) => panic!("upgrade refused: {status} {body}"),
        }
    }
}

/// What the server sent until it closed: the output bytes, the JSON text frames, and the
/// close frame's code and reason.
#[derive(Debug, Default)]
struct Transcript {
    output: Vec<u8>,
    texts: Vec<Value>,
    close: Option<(u16, String)>,
}

/// Reads until the output contains `needle` (then returns, leaving the session open).
async fn read_until(socket: &mut Socket, needle: &str) -> Vec<u8> {
    let mut output = Vec::new();
    while !String::from_utf8_lossy(&output).contains(needle) {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} yet; output so far: {:?}",
                    String::from_utf8_lossy(&output)
                )
            })
            .expect("the session ended early")
            .unwrap();
        match message {
            Message::Binary(bytes) => output.extend_from_slice(&bytes),
            other => panic!("unexpected {other:?} before {needle:?}"),
        }
    }
    output
}

/// Reads to the end of the session.
async fn read_to_end(socket: &mut Socket) -> Transcript {
    let mut transcript = Transcript::default();
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("the session stalled");
        match message {
            None => return transcript,
            Some(Err(error)) => panic!("WebSocket error: {error}; so far {transcript:?}"),
            Some(Ok(Message::Binary(bytes))) => transcript.output.extend_from_slice(&bytes),
            Some(Ok(Message::Text(text))) => {
                transcript.texts.push(serde_json::from_str(&text).unwrap());
            }
            Some(Ok(Message::Close(frame))) => {
                let frame = frame.expect("a close frame with a code");
                transcript.close = Some((u16::from(frame.code), frame.reason.to_string()));
            }
            Some(Ok(_)) => {}
        }
    }
}

fn text(socket_text: &str) -> Message {
    Message::Text(socket_text.into())
}

#[tokio::test]
async fn websocket_exec_echoes_resizes_and_reports_the_exit_code() {
    let mut timing = Timing::start("websocket_exec_echoes_resizes_and_reports_the_exit_code");
    let s = server("exec-ws-io", &mut timing).await;
    let id = s.create(&s.owner, &["sleep", "300"]).await;
    timing.phase("create");

    // Echo round trip through `cat`, then end-of-file ends it with 0.
    let mut socket = s.session(&s.owner, &id, "cmd=cat").await;
    socket
        .send(Message::Binary(b"hello over ws\n".to_vec().into()))
        .await
        .unwrap();
    let echoed = read_until(&mut socket, "hello over ws\n").await;
    assert_eq!(echoed, b"hello over ws\n");
    socket
        .send(Message::Binary(b"second line\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, "second line\n").await;
    socket.send(text(r#"{"eof":true}"#)).await.unwrap();
    let end = read_to_end(&mut socket).await;
    assert_eq!(end.texts, [json!({"exit_code": 0})], "{end:?}");
    assert_eq!(end.close, Some((1000, "exit_code=0".to_owned())));
    timing.phase("echo-eof");

    // stdin read to its end, then a non-zero exit; stderr arrives as output too.
    let query = "cmd=sh&cmd=-c&cmd=n%3D0%3B%20while%20read%20l%3B%20do%20n%3D%24((n%2B1))%3B%20\
                 done%3B%20echo%20lines%3D%24n%20%3E%262%3B%20exit%207";
    let mut socket = s.session(&s.owner, &id, query).await;
    for line in ["a\n", "b\n", "c\n"] {
        socket
            .send(Message::Binary(line.as_bytes().to_vec().into()))
            .await
            .unwrap();
    }
    socket.send(text(r#"{"eof":true}"#)).await.unwrap();
    let end = read_to_end(&mut socket).await;
    assert_eq!(String::from_utf8_lossy(&end.output), "lines=3\n");
    assert_eq!(end.texts, [json!({"exit_code": 7})], "{end:?}");
    assert_eq!(end.close, Some((1000, "exit_code=7".to_owned())));
    timing.phase("stdin-exit-code");

    // A terminal: a resize shows in `stty size`, the exit code comes back.
    let mut socket = s
        .session(&s.owner, &id, "cmd=sh&tty=true&env=PS1%3D%24%20")
        .await;
    socket
        .send(text(r#"{"resize":{"cols":123,"rows":45}}"#))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"stty size; exit 3\n".to_vec().into()))
        .await
        .unwrap();
    let end = read_to_end(&mut socket).await;
    let shown = String::from_utf8_lossy(&end.output);
    assert!(shown.contains("45 123"), "{shown:?}");
    assert_eq!(end.texts, [json!({"exit_code": 3})], "{end:?}");
    timing.phase("tty-resize");

    // The timeout ends the session (the process is left running: Docker has no exec kill).
    let mut socket = s
        .session(&s.owner, &id, "cmd=sleep&cmd=30&timeout_s=1")
        .await;
    let end = read_to_end(&mut socket).await;
    assert_eq!(
        end.texts,
        [json!({"exit_code": null, "timed_out": true})],
        "{end:?}"
    );
    assert_eq!(end.close, Some((1000, "timed_out".to_owned())));
    timing.phase("timeout");

    // A malformed control message closes the session as a policy violation.
    let mut socket = s.session(&s.owner, &id, "cmd=cat").await;
    socket.send(text(r#"{"kill":9}"#)).await.unwrap();
    let end = read_to_end(&mut socket).await;
    assert_eq!(end.texts[0]["error"], "invalid_control", "{end:?}");
    assert_eq!(end.close.map(|(code, _)| code), Some(1008));

    // The client going away mid-session leaves the controller serving.
    let mut socket = s.session(&s.owner, &id, "cmd=cat").await;
    socket.close(Some(close_normal())).await.unwrap();
    drop(socket);
    let (status, _) = http(
        s.addr,
        &s.owner,
        "GET",
        &format!("/v1/sandboxes/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = http(
        s.addr,
        &s.owner,
        "DELETE",
        &format!("/v1/sandboxes/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    timing.phase("cleanup");
}

fn close_normal() -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }
}

#[tokio::test]
async fn websocket_exec_is_a_write_for_the_owner_or_an_admin_only() {
    let mut timing = Timing::start("websocket_exec_is_a_write_for_the_owner_or_an_admin_only");
    let s = server("exec-ws-access", &mut timing).await;
    let id = s.create(&s.owner, &["sleep", "300"]).await;
    timing.phase("create");

    // The owner's read-only token: the sandbox is visible, so 403.
    let (status, body) = s
        .open(&s.owner_read_only, &id, "cmd=true")
        .await
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden", "{body}");
    // A viewer and another member cannot see it: 404, as for a sandbox that does not exist.
    let (status, _) = s.open(&s.viewer, &id, "cmd=true").await.unwrap_err();
    assert_eq!(status, 404);
    let (status, _) = s.open(&s.other, &id, "cmd=true").await.unwrap_err();
    assert_eq!(status, 404);
    let missing = "0190a4a0-0000-7000-8000-000000000000";
    let (status, _) = s.open(&s.owner, missing, "cmd=true").await.unwrap_err();
    assert_eq!(status, 404);
    // No token at all.
    let (status, _) = s.open("nope", &id, "cmd=true").await.unwrap_err();
    assert_eq!(status, 401);

    // Bad input is refused before the upgrade, naming the field.
    let (status, body) = s.open(&s.owner, &id, "tty=yes").await.unwrap_err();
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["tty", "cmd"], "{body}");
    // A plain GET (no upgrade) is a 400 too.
    let path = format!("/v1/sandboxes/{id}/exec/ws?cmd=true");
    let (status, body) = http(s.addr, &s.owner, "GET", &path, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "websocket_required", "{body}");
    timing.phase("refusals");

    // An admin may exec in anyone's sandbox.
    let mut socket = s.session(ADMIN_TOKEN, &id, "cmd=id&cmd=-u").await;
    let end = read_to_end(&mut socket).await;
    assert_eq!(String::from_utf8_lossy(&end.output), "65534\n");
    assert_eq!(end.texts, [json!({"exit_code": 0})], "{end:?}");

    // A sandbox that has ended: 409 before any upgrade.
    let stop = format!("/v1/sandboxes/{id}/stop");
    let (status, body) = http(s.addr, &s.owner, "POST", &stop, None).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let wait = format!("/v1/sandboxes/{id}/wait");
    let (status, body) = http(s.addr, &s.owner, "GET", &wait, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.open(&s.owner, &id, "cmd=true").await.unwrap_err();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "not_running", "{body}");

    let (status, body) = http(
        s.addr,
        &s.owner,
        "DELETE",
        &format!("/v1/sandboxes/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    timing.phase("cleanup");
}
