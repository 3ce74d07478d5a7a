//! `GET /metrics` in-process: `app(state).oneshot(request)` over in-memory SQLite, with a Docker
//! client pointed at a loopback port where nothing listens (so the DinD shows as down).
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
use tokio::net::TcpSocket;
use tower::ServiceExt;

const TOKEN: &str = "test-metrics-token-0123456789";

async fn send(state: &AppState, method: Method, uri: &str) -> (StatusCode, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The value of the sample `series` (name plus labels, exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_requests_and_sandboxes_without_a_token() {
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
    for _ in 0..2 {
        let spec = SandboxRequest {
            image: "airlock/testbox:dev".to_owned(),
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
        assert!(matches!(
            store.create_sandbox(new).await.unwrap(),
            Created::New(_)
        ));
    }
    let services = Services::new(store, docker, Settings::from_config(&config));
    let state = AppState::new(services, Auth::new(Some(Secret::new(TOKEN)), admin));

    // Some traffic: a 200, two 404s on a templated route, a 404 off any route.
    assert_eq!(
        send(&state, Method::GET, "/healthz").await.0,
        StatusCode::OK
    );
    for id in [
        "01aaaaaa-0000-7000-8000-000000000000",
        "01bbbbbb-0000-7000-8000-000000000000",
    ] {
        let (status, _, _) = send(&state, Method::GET, &format!("/v1/sandboxes/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        send(&state, Method::GET, "/nope").await.0,
        StatusCode::NOT_FOUND
    );

    // No token needed.
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (status, content_type, text) = send(&state, Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let requests = |labels: &str| value(&text, &format!("airlock_http_requests_total{{{labels}}}"));
    assert_eq!(
        requests(r#"method="GET",route="/healthz",status="200""#),
        Some(1.0)
    );
    assert_eq!(
        requests(r#"method="GET",route="/v1/sandboxes/{id}",status="404""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        requests(r#"method="GET",route="other",status="404""#),
        Some(1.0)
    );
    // The first scrape has been counted; no sandbox id leaks into a label.
    assert_eq!(
        requests(r#"method="GET",route="/metrics",status="200""#),
        Some(1.0)
    );
    assert!(!text.contains("01aaaaaa"), "{text}");
    // Two rows in `creating`, every other state at zero.
    assert_eq!(
        value(&text, r#"airlock_sandboxes{state="creating"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"airlock_sandboxes{state="running"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(&text, r#"airlock_sandboxes{state="lost"}"#),
        Some(0.0)
    );
    // The store answers; the DinD (a closed loopback port) does not.
    assert_eq!(
        value(&text, r#"airlock_dependency_up{dependency="store"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"airlock_dependency_up{dependency="docker"}"#),
        Some(0.0)
    );
    assert!(value(
        &text,
        r#"airlock_dependency_ping_seconds{dependency="store"}"#
    )
    .is_some());
    assert_eq!(value(&text, "airlock_sandbox_creates_total"), Some(0.0));
    assert_eq!(
        value(&text, r#"airlock_reconcile_passes_total{kind="full"}"#),
        Some(0.0)
    );
    // Every non-comment line is `series value`, and every series has HELP and TYPE.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        assert!(text.contains(&format!("# HELP {name} ")), "{line}");
    }
}

#[tokio::test]
async fn metrics_token_when_set_is_required() {
    const METRICS: &str = "scrape-only-token-0123456789";
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
    let config =
        Config::from_lookup(|var| (var == "AIRLOCK_METRICS_TOKEN").then(|| METRICS.to_owned()))
            .unwrap();
    let services = Services::new(store, docker, Settings::from_config(&config));
    let state = AppState::new(services, Auth::new(Some(Secret::new(TOKEN)), admin))
        .with_metrics_token(config.metrics_token.clone());
    let scrape = |bearer: Option<&str>| {
        let mut request = Request::builder().method(Method::GET).uri("/metrics");
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        app(state.clone()).oneshot(request.body(Body::empty()).unwrap())
    };
    for refused in [None, Some("wrong"), Some(TOKEN), Some(&METRICS[..10])] {
        let response = scrape(refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
    }
    let response = scrape(Some(METRICS)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("airlock_"));
}
