//! In-process tests of the self-test API over in-memory SQLite, with a Docker client pointed
//! at a loopback port where nothing listens: everything here is decided before Docker is asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};

use airlock::accounts::bootstrap_admin;
use airlock::api::{app, AppState, Auth};
use airlock::config::{Config, DockerConfig, Secret};
use airlock::docker::DockerClient;
use airlock::sandbox::SandboxRequest;
use airlock::services::{Services, Settings};
use airlock::store::{Created, NewSandbox, Store};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tower::ServiceExt;

const TOKEN: &str = "test-admin-token-0123456789";

async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

#[tokio::test]
async fn selftest_api_refusals() {
    let closed = TcpSocket::new_v4().unwrap();
    closed
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let docker = DockerClient::new(&DockerConfig::InsecureTcp {
        host: "127.0.0.1".to_owned(),
        port: closed.local_addr().unwrap().port(),
    })
    .unwrap();
    let store = Store::sqlite_in_memory().await.unwrap();
    let admin = bootstrap_admin(&store).await.unwrap();
    let config = Config::from_lookup(|_| None).unwrap();
    let settings = Settings::from_config(&config);
    assert_eq!(settings.selftest.probe_image, "airlock/probe:dev");
    let services = Services::new(store.clone(), docker, settings);
    let state = AppState::new(services, Auth::new(Some(Secret::new(TOKEN)), admin));

    // A bad `selftest` value is refused before anything is created.
    for bad in [json!("sometimes"), json!(1), json!({"mode": "required"})] {
        let body = json!({"image": "airlock/testbox:dev", "selftest": bad});
        let (status, reply) = call(&state, Method::POST, "/v1/sandboxes", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["error"], "invalid_json", "{reply}");
    }

    // Unknown sandboxes are 404 on both verbs.
    let missing = "/v1/sandboxes/0193a1b2-0000-7000-8000-000000000001/selftest";
    for method in [Method::GET, Method::POST] {
        let (status, _) = call(&state, method, missing, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // A sandbox still `creating` cannot be probed (409), and has no result yet (404).
    let spec = SandboxRequest {
        image: "airlock/testbox:dev".into(),
        ..SandboxRequest::default()
    }
    .validate(&config.maximums)
    .unwrap();
    let new = NewSandbox {
        owner: admin,
        spec,
        idempotency_key: None,
        node: None,
    };
    let Created::New(sandbox) = store.create_sandbox(new).await.unwrap() else {
        panic!("a fresh sandbox");
    };
    let uri = format!("/v1/sandboxes/{}/selftest", sandbox.id);
    let (status, reply) = call(&state, Method::POST, &uri, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("creating"),
        "{reply}"
    );
    let (status, _) = call(&state, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, got) = call(
        &state,
        Method::GET,
        &format!("/v1/sandboxes/{}", sandbox.id),
        None,
    )
    .await;
    assert!(got.get("selftest").is_none(), "{got}");
}
