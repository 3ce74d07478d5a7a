//! No action without its audit row, even when the client hangs up: a create's
//! `POST /v1/sandboxes` row commits with the sandbox's reservation (it names the sandbox while
//! it is still `creating`), and a create whose client closes the connection while the sandbox
//! is being provisioned (axum would drop the request's future there) still finishes, with no
//! second row. Every exec, batch or interactive (the WebSocket, a GET), files its row before the
//! process starts. Against a real DinD over mTLS, through the controller served on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use airlock::api::{AppState, Auth};
use airlock::sandbox::SandboxState;
use airlock::serve::serve_on;
use airlock::services::{Services, Settings};
use airlock::store::{ListQuery, Scope, Store};
use e2e::controller::{parts, Parts};
use e2e::serve::http;
use e2e::{dind_with_testbox, Timing};
use futures_util::StreamExt;
use serde_json::json;
use test_support::dind::{DindOptions, TESTBOX_IMAGE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ADMIN_TOKEN: &str = "e2e-admin-token-audit-drop-01234";
const DEADLINE: Duration = Duration::from_secs(90);

/// Every sandbox in the store.
async fn sandboxes(store: &Store) -> Vec<airlock::store::Sandbox> {
    let query = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    store.list_sandboxes(Scope::All, query).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_whose_client_hangs_up_finishes_with_its_row_and_execs_have_theirs() {
    let mut timing = Timing::start("audit_disconnect");
    let dind = dind_with_testbox(DindOptions::new("au_audit_drop"), &mut timing)
        .await
        .unwrap();
    let Parts {
        dir: _dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &[("AIRLOCK_STOP_GRACE", "1s")]).await;
    let services = Services::new(store.clone(), docker, Settings::from_config(&config));
    let auth = Auth::new(Some(airlock::config::Secret::new(ADMIN_TOKEN)), admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let state = AppState::new(services, auth);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        serve_on(listener, state, shutdown).await.unwrap();
    });
    timing.phase("controller-up");

    // A full create request; the connection closes once the row is reserved, mid-provision.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]}).to_string();
    let head = format!(
        "POST /v1/sandboxes HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = connect(addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let reserved = loop {
        if let Some(sandbox) = sandboxes(&store).await.into_iter().next() {
            break sandbox;
        }
        assert!(started.elapsed() < DEADLINE, "no sandbox row");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        reserved.state,
        SandboxState::Creating,
        "the client hangs up mid-create"
    );
    drop(client);
    timing.phase("hung-up");

    // The row committed with the reservation, so it is there already and names the sandbox.
    let rows = store.list_audit(None, 100).await.unwrap();
    let creates: Vec<_> = rows
        .iter()
        .filter(|r| r.record.action == "POST /v1/sandboxes")
        .collect();
    assert_eq!(creates.len(), 1, "the reservation's row: {rows:#?}");
    let row = creates[0];
    assert_eq!(row.record.status, 201, "{row:?}");
    assert_eq!(row.record.object, Some(reserved.id.to_string()));
    assert_eq!(row.record.user, Some(admin));

    // The create finishes although the client left, and files no second row.
    let sandbox = loop {
        let sandbox = store
            .get_sandbox(Scope::All, reserved.id)
            .await
            .unwrap()
            .unwrap();
        if sandbox.state != SandboxState::Creating {
            break sandbox;
        }
        assert!(started.elapsed() < DEADLINE, "the create never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sandbox.state, SandboxState::Running, "{sandbox:?}");
    let rows = store.list_audit(None, 100).await.unwrap();
    let creates = rows
        .iter()
        .filter(|r| r.record.action == "POST /v1/sandboxes")
        .count();
    assert_eq!(creates, 1, "one row per create: {rows:#?}");
    timing.phase("finished-with-row");
    eprintln!(
        "audit-drop: row {}s after the request",
        started.elapsed().as_secs_f64()
    );

    // Every exec has its row: the batch one and the interactive one (a GET).
    let exec = format!("/v1/sandboxes/{}/exec", reserved.id);
    let (status, body) = http(
        addr,
        ADMIN_TOKEN,
        "POST",
        &exec,
        Some(json!({"cmd": ["true"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = format!("ws://{addr}/v1/sandboxes/{}/exec/ws?cmd=true", reserved.id);
    let mut request = url.into_client_request().unwrap();
    let bearer = format!("Bearer {ADMIN_TOKEN}").parse().unwrap();
    request.headers_mut().insert("authorization", bearer);
    let (mut socket, response) = tokio::time::timeout(DEADLINE, connect_async(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 101);
    while let Some(message) = tokio::time::timeout(DEADLINE, socket.next()).await.unwrap() {
        if matches!(message, Ok(Message::Close(_)) | Err(_)) {
            break;
        }
    }
    let rows = store.list_audit(None, 100).await.unwrap();
    let find = |action: &str, status: u16| {
        rows.iter()
            .filter(|r| r.record.action == action && r.record.status == status)
            .count()
    };
    assert_eq!(find("POST /v1/sandboxes/{id}/exec", 200), 1, "{rows:#?}");
    assert_eq!(find("GET /v1/sandboxes/{id}/exec/ws", 101), 1, "{rows:#?}");
    let ws = rows
        .iter()
        .find(|r| r.record.action == "GET /v1/sandboxes/{id}/exec/ws")
        .unwrap();
    assert_eq!(ws.record.object, Some(reserved.id.to_string()));
    assert_eq!(ws.record.detail.as_deref(), Some("interactive"));
    timing.phase("exec-rows");

    stop.send(()).unwrap();
    server.await.unwrap();
    drop(dind);
}

/// A TCP connection to the loopback `addr` (a socket address, never a name).
async fn connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    tokio::net::TcpSocket::new_v4()?.connect(addr).await
}
