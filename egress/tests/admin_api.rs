//! The admin API in process: routes over plain HTTP on loopback, and the mTLS gate with
//! certificates from `airlock_certs::init` (right CA accepted; no certificate or a foreign CA
//! refused). Every socket is on 127.0.0.1, port 0.

// Helpers outside `#[test]` functions are test code too: a failed setup must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_egress::admin::{load_admin_tls, serve_admin, AdminError, AdminState, MAX_BODY_BYTES};
use airlock_egress::infra::{InfraSet, InterfaceAddr, Interfaces};
use airlock_egress::ledger::{Ledger, LedgerEvent};
use airlock_egress::metrics::Metrics;
use airlock_egress::registry::{basic_credential, credential_hash, Registry};
use airlock_egress::resolve::DnsStatus;
use airlock_wire::{EventsPage, Outcome};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const HASH_A: &str = "token-a";

/// The proxy's interfaces as the admin tests see them: one bridge address, plus loopback.
#[derive(Debug)]
struct FixedInterfaces;

impl Interfaces for FixedInterfaces {
    fn addrs(&self) -> std::io::Result<Vec<InterfaceAddr>> {
        Ok(vec![
            InterfaceAddr {
                net: "127.0.0.1/8".parse().unwrap(),
                loopback: true,
            },
            InterfaceAddr {
                net: "10.212.0.2/24".parse().unwrap(),
                loopback: false,
            },
        ])
    }
}

fn infra() -> Arc<InfraSet> {
    let set = InfraSet::new(
        vec!["192.0.2.0/24".parse().unwrap()],
        &[],
        Box::new(FixedInterfaces),
    );
    set.refresh().unwrap();
    Arc::new(set)
}

/// A running admin server; dropping `stop` (or calling [`Admin::shutdown`]) stops it.
struct Admin {
    addr: SocketAddr,
    state: AdminState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Admin {
    async fn start(registry: Registry, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AdminState {
            registry: Arc::new(registry),
            ledger: Arc::new(Ledger::new(16)),
            metrics: Arc::new(Metrics::new()),
            infra: infra(),
            dns: DnsStatus::Configured,
            upstream_ca: Vec::new(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_admin(listener, tls, state.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            state,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        drop(self.stop.take());
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("admin server stops within the drain deadline");
        result.unwrap().unwrap();
    }
}

/// Opens a loopback TCP connection to the admin listener.
async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpSocket::new_v4().unwrap().connect(addr).await.unwrap()
}

/// Sends one HTTP/1.1 request on `io` and returns the status and body.
async fn send<S>(
    io: S,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> hyper::Result<(StatusCode, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let body = body.map_or_else(Bytes::new, |v| Bytes::from(v.to_string()));
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

async fn plain(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, bytes) = send(tcp(addr).await, method, path, body).await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

fn put_body(addr: &str, token: &str, generation: u64, policy: Value) -> Value {
    json!({
        "sandbox_id": "sbx-a",
        "source_addrs": [addr],
        "credential_hash": credential_hash(token),
        "policy": policy,
        "generation": generation,
    })
}

fn event(n: u64) -> LedgerEvent {
    LedgerEvent {
        sandbox: Some("sbx-a".to_owned()),
        generation: 1,
        method: "GET".to_owned(),
        host: "example.com".to_owned(),
        port: 80,
        addr: None,
        decision: Outcome::Deny,
        reason: "loopback",
        rule: None,
        bytes_up: n,
        bytes_down: 0,
        start: std::time::SystemTime::now(),
        duration: Duration::from_millis(1),
        client: "10.213.0.2:1234".parse().unwrap(),
        ceiling: None,
        count: 1,
        inspected: None,
    }
}

#[tokio::test]
async fn sandbox_lifecycle_over_plain_loopback() {
    let admin = Admin::start(Registry::controlled(), None).await;
    let addr = admin.addr;
    let (status, health) = plain(addr, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["sandboxes"], 0);
    assert_eq!(health["boot_id"], admin.state.registry.boot_id());

    let path = "/v1/sandboxes/sbx-a";
    // A null policy is the default policy.
    let (status, body) = plain(addr, Method::PUT, "/v1/sandboxes/sbx-z", Some(json!({
        "source_addrs": ["10.213.0.9"], "credential_hash": credential_hash("z"), "policy": null, "generation": 1
    }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = plain(addr, Method::DELETE, "/v1/sandboxes/sbx-z", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let policy = json!({"allow_domains": ["*.github.com"], "max_connections": 4});
    let (status, body) = plain(
        addr,
        Method::PUT,
        path,
        Some(put_body("10.213.0.2", HASH_A, 1, policy.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["outcome"], "created");
    let (status, body) = plain(
        addr,
        Method::PUT,
        path,
        Some(put_body("10.213.0.2", HASH_A, 1, policy.clone())),
    )
    .await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &json!("unchanged"))
    );

    // The pushed entry identifies the sandbox with its credential.
    let cred = basic_credential("sbx-a", HASH_A);
    let ctx = admin
        .state
        .registry
        .identify("10.213.0.2".parse().unwrap(), Some(cred.as_bytes()))
        .unwrap();
    assert_eq!(ctx.sandbox.as_deref(), Some("sbx-a"));
    assert_eq!(ctx.budget.max_connections(), Some(4));

    let (status, body) = plain(
        addr,
        Method::PUT,
        path,
        Some(put_body("10.213.0.2", HASH_A, 0, json!({}))),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "stale_generation");

    let (status, body) = plain(
        addr,
        Method::PUT,
        path,
        Some(put_body("10.213.0.3", HASH_A, 2, json!({}))),
    )
    .await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &json!("replaced"))
    );
    assert!(ctx.revoked.is_cancelled(), "the old generation is revoked");

    let (status, list) = plain(addr, Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["sandboxes"],
        json!([{"sandbox_id": "sbx-a", "generation": 2, "source_addrs": ["10.213.0.3"]}])
    );
    let (status, one) = plain(addr, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["generation"], 2);

    for _ in 0..2 {
        let (status, body) = plain(addr, Method::DELETE, path, None).await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    }
    let (status, _) = plain(addr, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(admin.state.registry.is_empty());
    admin.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let admin = Admin::start(Registry::controlled(), None).await;
    let addr = admin.addr;
    let path = "/v1/sandboxes/sbx-a";
    let cases = [
        (
            put_body("10.213.0.2", "t", 1, json!({"allow_domains": ["*"]})),
            "bad_policy",
        ),
        (
            put_body("10.213.0.2", "t", 1, json!({"allow_ports": [0]})),
            "bad_policy",
        ),
        (
            put_body("10.213.0.2", "t", 1, json!({"bogus": true})),
            "bad_json",
        ),
        (
            json!({"source_addrs": ["10.213.0.2"], "credential_hash": "x", "generation": 1}),
            "invalid_credential_hash",
        ),
        (
            json!({"source_addrs": [], "credential_hash": credential_hash("t"), "generation": 1}),
            "no_source_addrs",
        ),
        (
            json!({"sandbox_id": "other", "source_addrs": ["10.213.0.2"], "credential_hash": credential_hash("t"), "generation": 1}),
            "id_mismatch",
        ),
        (
            json!({"source_addrs": ["not-an-ip"], "credential_hash": credential_hash("t"), "generation": 1}),
            "bad_json",
        ),
        (
            json!({"extra": 1, "source_addrs": ["10.213.0.2"], "credential_hash": credential_hash("t"), "generation": 1}),
            "bad_json",
        ),
    ];
    for (body, code) in cases {
        let (status, reply) = plain(addr, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {reply}");
        assert_eq!(reply["error"], code, "{body} -> {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
    let (status, reply) = plain(
        addr,
        Method::PUT,
        "/v1/sandboxes/a:b",
        Some(put_body("10.213.0.2", "t", 1, json!({}))),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_sandbox_id"))
    );
    let (status, reply) = plain(addr, Method::GET, "/nope", None).await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, reply) = plain(addr, Method::POST, "/v1/sandboxes", None).await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::METHOD_NOT_ALLOWED, &json!("method_not_allowed"))
    );
    let (status, reply) = plain(addr, Method::GET, "/v1/events?after=-1", None).await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad_query"))
    );

    // A body over the cap is refused without being buffered whole.
    let huge = json!({ "source_addrs": ["10.213.0.2"], "credential_hash": "x".repeat(MAX_BODY_BYTES), "generation": 1 });
    let (status, reply) = plain(addr, Method::PUT, path, Some(huge)).await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("body_too_large"))
    );
    assert!(admin.state.registry.is_empty());
    admin.shutdown().await;
}

#[tokio::test]
async fn address_conflict_and_standalone_mode_are_409() {
    let admin = Admin::start(Registry::controlled(), None).await;
    let (status, _) = plain(
        admin.addr,
        Method::PUT,
        "/v1/sandboxes/sbx-a",
        Some(put_body("10.213.0.2", "t", 1, json!({}))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut other = put_body("10.213.0.2", "t", 1, json!({}));
    other["sandbox_id"] = json!("sbx-b");
    let (status, reply) = plain(admin.addr, Method::PUT, "/v1/sandboxes/sbx-b", Some(other)).await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::CONFLICT, &json!("address_in_use"))
    );
    admin.shutdown().await;

    let standalone = Registry::standalone(Arc::new(airlock_egress_policy::Policy::default()), None);
    let admin = Admin::start(standalone, None).await;
    let (status, reply) = plain(
        admin.addr,
        Method::PUT,
        "/v1/sandboxes/sbx-a",
        Some(put_body("10.213.0.2", "t", 1, json!({}))),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::CONFLICT, &json!("standalone_mode"))
    );
    admin.shutdown().await;
}

#[tokio::test]
async fn events_page_and_ack_over_http() {
    let admin = Admin::start(Registry::controlled(), None).await;
    let addr = admin.addr;
    for n in 0..20 {
        admin.state.ledger.record(event(n));
    }
    // Capacity 16: four refusals found no room; they wait for a summary, none is lost.
    let (status, body) = plain(addr, Method::GET, "/v1/events?after=0&limit=10", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["boot_id"], admin.state.registry.boot_id());
    let page: EventsPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.events.len(), 10);
    assert_eq!(page.next, 10);
    assert_eq!(page.overflowed, 0);
    assert_eq!(admin.state.ledger.waiting(), 4);
    let (_, body) = plain(addr, Method::GET, "/v1/events?after=10", None).await;
    let page: EventsPage = serde_json::from_value(body).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (11..=16).collect::<Vec<_>>()
    );

    let (status, _) = plain(
        addr,
        Method::POST,
        "/v1/events/ack",
        Some(json!({"seq": 12})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Four left, and the summary of the four that found no room.
    assert_eq!(admin.state.ledger.depth(), 5);
    let (_, body) = plain(addr, Method::GET, "/v1/events?after=16", None).await;
    let page: EventsPage = serde_json::from_value(body).unwrap();
    let summary = &page.events[0];
    assert_eq!((summary.seq, summary.count), (17, 4));
    assert_eq!(summary.reason, "ledger_full");
    let (status, reply) = plain(
        addr,
        Method::POST,
        "/v1/events/ack",
        Some(json!({"seq": "x"})),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad_json"))
    );

    let (status, text) = plain(addr, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    assert!(text.contains("airlock_egress_spool_depth 5\n"), "{text}");
    assert!(
        text.contains("airlock_egress_spool_overflow_total 0\n"),
        "{text}"
    );
    assert!(text.contains("airlock_egress_sandboxes 0\n"), "{text}");
    admin.shutdown().await;
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    // Binding only; no packet is sent. serve_admin must refuse before accepting anything.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let state = AdminState {
        registry: Arc::new(Registry::controlled()),
        ledger: Arc::new(Ledger::new(1)),
        metrics: Arc::new(Metrics::new()),
        infra: infra(),
        dns: DnsStatus::None,
        upstream_ca: Vec::new(),
    };
    let err = serve_admin(listener, None, state, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn shutdown_drains_and_returns() {
    let admin = Admin::start(Registry::controlled(), None).await;
    // An idle keep-alive connection must not hold shutdown past the drain deadline.
    let idle = tcp(admin.addr).await;
    let started = Instant::now();
    admin.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(idle);
}

// === mTLS ===

fn certs(dir: &Path) {
    airlock_certs::init(&airlock_certs::InitOptions::new(dir)).unwrap();
}

fn client_config(trust: &Path, identity: Option<&Path>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(trust.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(dir) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects with `config` and asks for `/healthz`: the status, or the error text when refused.
async fn tls_healthz(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<StatusCode, String> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector
        .connect(name, tcp(addr).await)
        .await
        .map_err(|e| e.to_string())?;
    let (status, _) = send(stream, Method::GET, "/healthz", None)
        .await
        .map_err(|e| chain(&e))?;
    Ok(status)
}

/// An error and all its sources, joined.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

#[tokio::test]
async fn mtls_admits_only_clients_of_our_ca() {
    let ours = tempfile::tempdir().unwrap();
    let foreign = tempfile::tempdir().unwrap();
    certs(ours.path());
    certs(foreign.path());
    let server_dir = ours.path().join("server");
    let tls = load_admin_tls(&server_dir).unwrap();
    let admin = Admin::start(Registry::controlled(), Some(tls)).await;

    let good = client_config(
        &ours.path().join("client"),
        Some(&ours.path().join("client")),
    );
    assert_eq!(
        tls_healthz(admin.addr, Arc::clone(&good)).await,
        Ok(StatusCode::OK)
    );

    // A full push over mTLS works too.
    let connector = tokio_rustls::TlsConnector::from(good);
    let stream = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            tcp(admin.addr).await,
        )
        .await
        .unwrap();
    let (status, _) = send(
        stream,
        Method::PUT,
        "/v1/sandboxes/sbx-a",
        Some(put_body("10.213.0.2", "t", 1, json!({}))),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::CREATED);

    let anonymous = client_config(&ours.path().join("client"), None);
    let refused = tls_healthz(admin.addr, anonymous).await.unwrap_err();
    assert!(
        refused.contains("CertificateRequired"),
        "no client certificate must be refused: {refused}"
    );

    let wrong_ca = client_config(
        &ours.path().join("client"),
        Some(&foreign.path().join("client")),
    );
    let refused = tls_healthz(admin.addr, wrong_ca).await.unwrap_err();
    // Both CAs carry the same subject, so rustls finds "our" CA as issuer and the signature
    // check fails (DecryptError); with a different subject it would be UnknownCA.
    assert!(
        ["DecryptError", "UnknownCA", "BadCertificate"]
            .iter()
            .any(|a| refused.contains(a)),
        "a foreign CA's client certificate must be refused: {refused}"
    );

    // Plain HTTP on the TLS port gets nothing useful either.
    let plain_attempt = send(tcp(admin.addr).await, Method::GET, "/healthz", None).await;
    assert!(
        plain_attempt.is_err(),
        "plain HTTP must not be served: {plain_attempt:?}"
    );

    assert_eq!(
        admin.state.registry.len(),
        1,
        "only the authenticated push landed"
    );
    admin.shutdown().await;
}

#[test]
fn load_admin_tls_reports_missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_admin_tls(dir.path()).unwrap_err();
    assert!(matches!(err, AdminError::Pem { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    std::fs::write(dir.path().join("ca.pem"), "").unwrap();
    let err = load_admin_tls(dir.path()).unwrap_err();
    assert!(matches!(err, AdminError::NoCertificate { .. }), "{err:?}");

    let certs_dir = tempfile::tempdir().unwrap();
    certs(certs_dir.path());
    assert!(load_admin_tls(&certs_dir.path().join("server")).is_ok());
    // A client directory loads too (same layout); a key that does not match the cert does not.
    let mixed = tempfile::tempdir().unwrap();
    for (file, from) in [
        ("ca.pem", "server"),
        ("cert.pem", "server"),
        ("key.pem", "client"),
    ] {
        std::fs::copy(
            certs_dir.path().join(from).join(file),
            mixed.path().join(file),
        )
        .unwrap();
    }
    let err = load_admin_tls(mixed.path()).unwrap_err();
    assert!(matches!(err, AdminError::Tls(_)), "{err:?}");
}
