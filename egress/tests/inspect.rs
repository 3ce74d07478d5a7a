//! Inspected endpoints, in process over loopback: a fake TLS upstream (`api.test` on 127.0.0.2,
//! its certificate from a test CA given as `--upstream-ca`), a standalone proxy with an
//! inspection CA and a credential file, and clients that CONNECT and then speak TLS trusting
//! (or not) the inspection CA. The credential reaches the upstream; the client never sends it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test harness code.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use airlock_certs::mitm::{InspectionCa, LeafIssuer};
use airlock_egress::config::{
    ENV_ALLOW_CIDRS, ENV_CREDENTIALS, ENV_IDLE_TIMEOUT, ENV_MITM_CA_CERT, ENV_MITM_CA_KEY,
    ENV_UPSTREAM_CA,
};
use airlock_egress::inspect::{Inspection, InspectionFiles};
use airlock_egress_policy::{EndpointSpec, Policy, PolicySpec};
use airlock_wire::Outcome;
use bytes::Bytes;
use common::{connect, ProxyOptions, TestProxy, UP};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use test_support::dns::FakeDns;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const SECRET: &str = "sk-ant-canary-6f1d2c";
/// A value sent in a query string: it reaches the upstream but no row and no log line.
const QUERY_CANARY: &str = "query-canary-91b7e4";
/// What the sandbox sends in the bound header; the proxy replaces it.
const PLACEHOLDER: &str = "sk-placeholder-from-the-sandbox";

/// Every log line the proxies of this test binary write, from TRACE up, as JSON.
fn logs() -> &'static Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    })
}

/// An `io::Write` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One request as the fake upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    version: http::Version,
    api_key: Option<String>,
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn body(bytes: Bytes) -> TestBody {
    Full::new(bytes).boxed()
}

/// Server-sent events: 50, at least 50 ms apart, each stamped in `stamps` as it leaves. Each
/// event after the first waits for the client's `acks` of the one before (5 s at most, then
/// the stream ends): a proxy that held an event back until more bytes came would stall it.
fn sse(stamps: Arc<Mutex<Vec<std::time::Instant>>>, acks: Arc<tokio::sync::Notify>) -> TestBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        for i in 0..50 {
            tick.tick().await;
            if i > 0 {
                let wait = std::time::Duration::from_secs(5);
                if tokio::time::timeout(wait, acks.notified()).await.is_err() {
                    return;
                }
            }
            stamps.lock().unwrap().push(std::time::Instant::now());
            if tx
                .send(Bytes::from(format!("data: {i}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok(hyper::body::Frame::data(chunk)), rx))
    });
    http_body_util::StreamBody::new(frames).boxed()
}

/// A TLS upstream (h2 and http/1.1) answering 200 `upstream ok` (and server-sent events on
/// `/v1/messages/stream`), recording what it saw.
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// When each server-sent event of `/v1/messages/stream` left the upstream.
    emitted: Arc<Mutex<Vec<std::time::Instant>>>,
    /// The client's acknowledgement of each event it received.
    acks: Arc<tokio::sync::Notify>,
    /// TCP connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    ca_pem: String,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    async fn start() -> TlsUpstream {
        let ca = InspectionCa::generate("upstream-test", &[], deadline()).unwrap();
        let leaf = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem)
            .unwrap()
            .issue("api.test")
            .unwrap();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(format!("{UP}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let emitted = Arc::new(Mutex::new(Vec::new()));
        let acks = Arc::new(tokio::sync::Notify::new());
        let (stamps, acked) = (emitted.clone(), acks.clone());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (acceptor, record) = (acceptor.clone(), record.clone());
                let (stamps, acked) = (stamps.clone(), acked.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |mut req: Request<Incoming>| {
                        let (record, stamps, acked) =
                            (record.clone(), stamps.clone(), acked.clone());
                        let upgrade = req
                            .headers()
                            .contains_key("upgrade")
                            .then(|| hyper::upgrade::on(&mut req));
                        async move {
                            record.lock().unwrap().push(Seen {
                                method: req.method().to_string(),
                                target: req
                                    .uri()
                                    .path_and_query()
                                    .map_or("/", |p| p.as_str())
                                    .to_owned(),
                                version: req.version(),
                                api_key: req
                                    .headers()
                                    .get("x-api-key")
                                    .map(|v| v.to_str().unwrap().to_owned()),
                            });
                            if let Some(upgrade) = upgrade {
                                // A WebSocket-style upgrade: 101, then echo raw bytes.
                                tokio::spawn(async move {
                                    let mut io = TokioIo::new(upgrade.await.unwrap());
                                    let mut buf = [0u8; 64];
                                    use tokio::io::AsyncReadExt;
                                    while let Ok(n @ 1..) = io.read(&mut buf).await {
                                        io.write_all(&buf[..n]).await.unwrap();
                                    }
                                });
                                let mut resp = Response::new(body(Bytes::new()));
                                *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                                resp.headers_mut()
                                    .insert("upgrade", "websocket".parse().unwrap());
                                resp.headers_mut()
                                    .insert("connection", "upgrade".parse().unwrap());
                                return Ok::<_, std::convert::Infallible>(resp);
                            }
                            if req.uri().path() == "/v1/messages/stream" {
                                return Ok(Response::new(sse(stamps, acked)));
                            }
                            if req.uri().path() == "/v1/messages/stall" {
                                // One frame, then nothing, forever.
                                let first = hyper::body::Frame::data(Bytes::from("data: 1\n\n"));
                                let frames = futures_util::StreamExt::chain(
                                    futures_util::stream::once(async { Ok(first) }),
                                    futures_util::stream::pending(),
                                );
                                let body = http_body_util::StreamBody::new(frames).boxed();
                                return Ok(Response::new(body));
                            }
                            let mut resp = Response::new(body(Bytes::from("upstream ok")));
                            resp.headers_mut()
                                .insert("alt-svc", "h3=\":443\"".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsUpstream {
            addr,
            seen,
            emitted,
            acks,
            accepted,
            ca_pem: ca.cert_pem,
            _task: task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn deadline() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::hours(2)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The fake upstream, DNS, and a standalone proxy terminating `api.test:<port>`.
struct Setup {
    upstream: TlsUpstream,
    proxy: TestProxy,
    inspection_ca: String,
    _dns: FakeDns,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(|opts| opts).await
}

/// [`setup`], with more proxy options.
async fn setup_with(more: impl FnOnce(ProxyOptions) -> ProxyOptions) -> Setup {
    logs();
    let upstream = TlsUpstream::start().await;
    let dns = FakeDns::start([("api.test", vec![UP.parse().unwrap()])]).await;
    let port = upstream.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let ca = InspectionCa::generate("standalone", &["api.test".to_owned()], deadline()).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let policy = serde_json::json!({
        "allow_domains": ["api.test"],
        "allow_ports": [port],
        "endpoints": [{
            "host": "api.test", "port": port, "tls": "terminate", "gateway": "anthropic",
            "credential": {"secret": "anthropic", "header": "x-api-key", "format": "{secret}"},
            "rules": [{"methods": ["POST"], "paths": ["/v1/messages", "/v1/messages/**"]},
                      {"methods": ["GET"], "paths": ["/v1/realtime"]}]
        }]
    });
    let opts = ProxyOptions::new(policy)
        .env(ENV_ALLOW_CIDRS, format!("{UP}/32"))
        .env(ENV_MITM_CA_CERT, write("ca.pem", &ca.cert_pem))
        .env(ENV_MITM_CA_KEY, write("ca.key", &ca.key_pem))
        .env(
            ENV_CREDENTIALS,
            format!("anthropic={}", write("anthropic", &format!("{SECRET}\n"))),
        )
        .env(ENV_UPSTREAM_CA, write("upstream.pem", &upstream.ca_pem));
    let opts = more(opts);
    let proxy = TestProxy::start(dns.addr(), opts).await;
    Setup {
        upstream,
        proxy,
        inspection_ca: ca.cert_pem,
        _dns: dns,
        _dir: dir,
    }
}

impl Setup {
    fn authority(&self) -> String {
        format!("api.test:{}", self.upstream.addr.port())
    }

    /// CONNECT, then a TLS handshake trusting `ca_pem` with `sni` and `alpn`.
    async fn tls(
        &self,
        ca_pem: &str,
        sni: &str,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let (resp, tunnel) = connect(self.proxy.addr, &self.authority(), &[]).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(name, tunnel.unwrap())
            .await
    }

    /// Sends requests over one HTTP/1.1 connection in the tunnel; returns (status, body) each.
    async fn h1(&self, requests: Vec<Request<Full<Bytes>>>) -> Vec<(u16, String)> {
        let tls = self
            .tls(&self.inspection_ca, "api.test", b"http/1.1")
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut out = Vec::new();
        for req in requests {
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            assert!(resp.headers().get("alt-svc").is_none(), "Alt-Svc passed");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            out.push((status, String::from_utf8_lossy(&body).into_owned()));
        }
        out
    }

    /// A plain HTTP/1.1 connection to the proxy, for its gateway.
    async fn gateway_client(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let tcp = test_support::upstream::connect(self.proxy.addr)
            .await
            .unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    fn post(&self, path: &str) -> Request<Full<Bytes>> {
        Request::post(path)
            .header("host", self.authority())
            .header("x-api-key", PLACEHOLDER)
            .body(Full::new(Bytes::from("{}")))
            .unwrap()
    }
}

#[tokio::test]
async fn the_credential_is_added_and_only_canonical_allowed_paths_go_upstream() {
    let s = setup().await;
    let mut get = s.post("/v1/messages");
    *get.method_mut() = http::Method::GET;
    let mut other_host = s.post("/v1/messages");
    other_host
        .headers_mut()
        .insert("host", "evil.test".parse().unwrap());
    let answers = s
        .h1(vec![
            s.post("/v1/messages"),
            s.post("/v1//messages;jsessionid=1"),
            s.post("/v1/x/%2e%2e/messages?beta=true"),
            get,
            s.post("/v1/models"),
            s.post("/v1/messages/..%2F..%2Fadmin"),
            s.post("/v1/../../etc"),
            other_host,
        ])
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 403, 403, 400, 400, 421],
        "{answers:?}"
    );
    assert_eq!(answers[0].1, "upstream ok");
    assert!(answers[3].1.contains("rule_denied"), "{}", answers[3].1);
    assert!(answers[5].1.contains("path_encoded_separator"));
    assert!(answers[6].1.contains("path_escape"));

    let seen = s.upstream.seen();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/v1/messages", "/v1/messages", "/v1/messages?beta=true"]
    );
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.api_key.as_deref(),
            Some(SECRET),
            "the real key reaches the upstream"
        );
    }
    // One tunnel, recorded once it ends; its row names no secret and no query.
    drop(answers);
    let events = s.proxy.wait_events(1).await;
    let row = serde_json::to_string(&events).unwrap();
    assert!(!row.contains(SECRET) && !row.contains("beta=true"), "{row}");
}

#[tokio::test]
async fn each_request_in_a_tunnel_gets_its_own_row_under_the_tunnel() {
    let s = setup().await;
    let answers = s
        .h1(vec![
            s.post("/v1/messages"),
            s.post(&format!("/v1/./messages//batch;x?key={QUERY_CANARY}")),
            s.post("/a/./b//c;x?q=1"),
        ])
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 403], "{answers:?}");
    let seen = s.upstream.seen();
    assert_eq!(
        seen[1].target,
        format!("/v1/messages/batch?key={QUERY_CANARY}")
    );

    // Three request rows, then the tunnel's own row once the client closed it.
    let events = s.proxy.wait_events(4).await;
    let tunnel = events
        .iter()
        .find(|e| e.method == "CONNECT")
        .expect("the tunnel's row");
    let id = tunnel.tunnel.expect("the tunnel row names its tunnel");
    assert_eq!(tunnel.mode.as_deref(), Some("terminate"));
    assert_eq!((tunnel.status, tunnel.path.as_deref()), (None, None));
    assert_eq!(
        (tunnel.decision, tunnel.reason.as_str()),
        (Outcome::Allow, "allowed")
    );
    let requests: Vec<_> = events.iter().filter(|e| e.method != "CONNECT").collect();
    assert_eq!(requests.len(), 3, "{events:?}");
    for r in &requests {
        assert_eq!(r.tunnel, Some(id), "every request names its tunnel");
        assert_eq!(r.mode.as_deref(), Some("terminate"));
        assert_eq!((r.method.as_str(), r.host.as_str()), ("POST", "api.test"));
        assert!(
            r.seq < tunnel.seq,
            "requests are recorded before their tunnel ends"
        );
    }
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_deref()).collect();
    assert_eq!(
        paths,
        [
            Some("/v1/messages"),
            Some("/v1/messages/batch"),
            Some("/a/b/c")
        ]
    );
    let statuses: Vec<_> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(200), Some(200), Some(403)]);
    for r in &requests[..2] {
        assert_eq!((r.decision, r.reason.as_str()), (Outcome::Allow, "allowed"));
        assert_eq!(r.credential.as_deref(), Some("anthropic"));
        assert_eq!(r.rule.as_deref().map(str::is_empty), Some(false));
        // `{}` up, `upstream ok` down: the request's own bodies.
        assert_eq!((r.bytes_up, r.bytes_down), (2, 11));
    }
    let denied = requests[2];
    assert_eq!(
        (denied.decision, denied.reason.as_str()),
        (Outcome::Deny, "rule_denied")
    );
    assert_eq!(
        denied.credential, None,
        "no credential was added to a denied request"
    );
    assert!(
        tunnel.bytes_up > 0 && tunnel.bytes_down > 0,
        "the tunnel keeps its totals"
    );

    // Neither the credential, nor the sandbox's placeholder, nor the query string reaches a
    // row or a log line.
    let rows = serde_json::to_string(&events).unwrap();
    let logs = logs().text();
    assert!(
        logs.contains("/v1/messages/batch"),
        "the ledger lines were captured"
    );
    for canary in [SECRET, PLACEHOLDER, QUERY_CANARY, "q=1"] {
        assert!(!rows.contains(canary), "{canary} in the rows: {rows}");
        assert!(!logs.contains(canary), "{canary} in the log");
    }
}

#[tokio::test]
async fn the_gateway_serves_origin_form_requests_like_a_terminated_tunnel() {
    let s = setup().await;
    let send = |method: &'static str, target: String| {
        let proxy = s.proxy.addr;
        async move {
            let head = format!(
                "{method} {target} HTTP/1.1\r\nHost: airlock.internal:3128\r\n\
                 x-api-key: {PLACEHOLDER}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            common::raw(proxy, head.as_bytes()).await
        }
    };
    let ok = send(
        "POST",
        format!("/gw/anthropic/v1/x/%2e%2e/messages?key={QUERY_CANARY}"),
    )
    .await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "upstream ok"));
    let denied = send("GET", "/gw/anthropic/v1/messages".into()).await;
    assert_eq!(
        (denied.status, &denied.json()["error"]),
        (403, &serde_json::json!("rule_denied"))
    );
    send("POST", "/gw/nope/v1/messages".into())
        .await
        .assert_refused(404, "unknown_gateway");
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1, "only the allowed request went upstream");
    assert_eq!(seen[0].target, format!("/v1/messages?key={QUERY_CANARY}"));
    assert_eq!(seen[0].api_key.as_deref(), Some(SECRET));

    // The allowed request: its own row (mode `gateway`, canonical path, credential) and the
    // exchange's row with the bytes; the unknown gateway's refusal is recorded too.
    let events = s.proxy.wait_events(5).await;
    let request = events
        .iter()
        .find(|e| e.status == Some(200))
        .expect("the request row");
    assert_eq!(request.mode.as_deref(), Some("gateway"));
    assert_eq!(request.path.as_deref(), Some("/v1/messages"));
    assert_eq!(request.credential.as_deref(), Some("anthropic"));
    assert_eq!((request.bytes_up, request.bytes_down), (2, 11));
    let exchange = events
        .iter()
        .find(|e| e.tunnel == request.tunnel && e.status.is_none())
        .expect("the exchange row");
    assert_eq!(exchange.host, "api.test");
    assert!(
        exchange.bytes_up >= 2 && exchange.bytes_down >= 11,
        "{exchange:?}"
    );
    assert!(events.iter().any(|e| e.reason == "unknown_gateway"));
    let rows = serde_json::to_string(&events).unwrap();
    for canary in [SECRET, PLACEHOLDER, QUERY_CANARY] {
        assert!(!rows.contains(canary), "{canary} in the rows: {rows}");
    }
}

#[tokio::test]
async fn a_gateway_client_connection_keeps_its_upstream_connection() {
    let s = setup().await;
    let send = |sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>| {
        let mut req = s.post("/v1/messages");
        *req.uri_mut() = "/gw/anthropic/v1/messages".parse().unwrap();
        let sent = sender.send_request(req);
        async move {
            let resp = sent.await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap();
        }
    };
    let accepted = || {
        s.upstream
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut a = s.gateway_client().await;
    for _ in 0..3 {
        send(&mut a).await;
    }
    assert_eq!(
        accepted(),
        1,
        "one client connection's requests share one upstream"
    );
    let mut b = s.gateway_client().await;
    send(&mut b).await;
    assert_eq!(accepted(), 2, "another client connection never shares it");
    assert_eq!(s.upstream.seen().len(), 4);
    assert!(s
        .upstream
        .seen()
        .iter()
        .all(|r| r.api_key.as_deref() == Some(SECRET)));
}

/// Reads from `tls` until the end of a response head.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(tls: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn a_websocket_upgrade_gets_the_credential_then_a_raw_splice() {
    use tokio::io::AsyncReadExt;
    let s = setup().await;
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             x-api-key: {PLACEHOLDER}\r\n\r\n",
            s.authority()
        )
    };
    let mut tls = s
        .tls(&s.inspection_ca, "api.test", b"http/1.1")
        .await
        .unwrap();
    tls.write_all(upgrade("/v1/realtime").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tls).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for frame in [&b"hello"[..], b"again"] {
        tls.write_all(frame).await.unwrap();
        let mut echo = vec![0u8; frame.len()];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, frame);
    }
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1/realtime");
    assert_eq!(seen[0].api_key.as_deref(), Some(SECRET));

    // An upgrade to a path no rule allows is refused like any request.
    let mut tls = s
        .tls(&s.inspection_ca, "api.test", b"http/1.1")
        .await
        .unwrap();
    tls.write_all(upgrade("/v1/admin").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(s.upstream.seen().len(), 1);
}

/// Server-sent events pass unbuffered: each of 50 events, 50 ms apart, reaches the client
/// while the upstream waits for it to arrive before it sends the next (see `sse`). The
/// latencies are printed; `bench/egress-credentials` measures them on a quiet machine.
#[tokio::test]
async fn server_sent_events_are_streamed_unbuffered() {
    for gateway in [false, true] {
        sse_through(gateway).await;
    }
}

/// One SSE run through a terminated tunnel, or through the gateway.
async fn sse_through(gateway: bool) {
    let s = setup().await;
    let mut sender = if gateway {
        s.gateway_client().await
    } else {
        let tls = s
            .tls(&s.inspection_ca, "api.test", b"http/1.1")
            .await
            .unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    };
    let mut req = s.post("/v1/messages/stream");
    if gateway {
        *req.uri_mut() = "/gw/anthropic/v1/messages/stream".parse().unwrap();
    }
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut arrived = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            let events = data.windows(6).filter(|w| w == b"data: ").count();
            arrived.extend(std::iter::repeat_n(std::time::Instant::now(), events));
            for _ in 0..events {
                s.upstream.acks.notify_one();
            }
        }
    }
    let emitted = s.upstream.emitted.lock().unwrap().clone();
    assert_eq!(
        (arrived.len(), emitted.len()),
        (50, 50),
        "an event was held back until the next one (the upstream stalled waiting for it)"
    );
    let mut lags: Vec<_> = arrived
        .iter()
        .zip(&emitted)
        .map(|(a, e)| a.duration_since(*e))
        .collect();
    lags.sort();
    eprintln!(
        "sse (gateway: {gateway}): p50 {:?}, max {:?}",
        lags[25], lags[49]
    );
}

#[tokio::test]
async fn a_slow_inner_request_head_is_cut_after_ten_seconds() {
    use tokio::io::AsyncReadExt;
    let s = setup().await;
    let mut tls = s
        .tls(&s.inspection_ca, "api.test", b"http/1.1")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    tls.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: api.test")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tls.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_ok(), "the half-sent head was never cut");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(9),
        "cut too early: {waited:?}"
    );
    assert!(s.upstream.seen().is_empty());
}

#[tokio::test]
async fn a_refused_path_and_a_misdirected_request_are_rows_too() {
    let s = setup().await;
    let mut other_host = s.post("/v1/messages");
    other_host
        .headers_mut()
        .insert("host", "evil.test".parse().unwrap());
    let answers = s
        .h1(vec![s.post("/v1/messages/..%2F..%2Fadmin"), other_host])
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [400, 421], "{answers:?}");
    let events = s.proxy.wait_events(3).await;
    let requests: Vec<_> = events.iter().filter(|e| e.status.is_some()).collect();
    let seen: Vec<_> = requests
        .iter()
        .map(|r| (r.reason.as_str(), r.status, r.path.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("path_encoded_separator", Some(400), None),
            ("misdirected_request", Some(421), Some("/v1/messages")),
        ]
    );
    assert!(requests.iter().all(|r| r.decision == Outcome::Deny));
    assert!(s.upstream.seen().is_empty());
}

#[tokio::test]
async fn http2_clients_are_served_and_translated() {
    let s = setup().await;
    let tls = s.tls(&s.inspection_ca, "api.test", b"h2").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!("https://{}/v1/messages", s.authority());
    let req = Request::post(uri).body(Empty::<Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].api_key.as_deref(), Some(SECRET));
    assert_eq!(seen[0].version, http::Version::HTTP_2);
}

#[tokio::test]
async fn a_stalled_stream_is_cut_while_its_tunnel_stays_busy() {
    let s = setup_with(|opts| opts.env(ENV_IDLE_TIMEOUT, "1s")).await;
    let tls = s.tls(&s.inspection_ca, "api.test", b"h2").await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let post = |path: &str| {
        let uri = format!("https://{}{path}", s.authority());
        Request::post(uri).body(Empty::<Bytes>::new()).unwrap()
    };
    let stalled = sender.send_request(post("/v1/messages/stall")).await;
    let mut body = stalled.unwrap().into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    // Other streams keep the tunnel busy (a request every 200 ms, well under the 1 s idle
    // limit) until the stalled stream is cut.
    let started = std::time::Instant::now();
    let mut busy = tokio::time::interval(std::time::Duration::from_millis(200));
    let cut = loop {
        tokio::select! {
            frame = body.frame() => break frame,
            _ = busy.tick() => {
                assert!(started.elapsed().as_secs() < 20, "the stalled stream was never cut");
                let resp = sender.send_request(post("/v1/messages")).await.unwrap();
                assert_eq!(resp.status(), 200);
            }
        }
    };
    assert!(matches!(cut, Some(Err(_))), "{cut:?}");
    let resp = sender.send_request(post("/v1/messages")).await.unwrap();
    assert_eq!(resp.status(), 200, "the tunnel outlives its stalled stream");
    let row = common::eventually(|| {
        s.proxy
            .events()
            .into_iter()
            .find(|e| e.path.as_deref() == Some("/v1/messages/stall"))
    })
    .await;
    assert_eq!(row.reason, "idle_timeout", "{row:?}");
    assert!(row.duration_ms >= 900, "{row:?}");
}

#[tokio::test]
async fn refused_handshakes_are_ledgered_and_never_relayed() {
    let s = setup().await;
    // A client that does not trust the inspection CA (it trusts the upstream's own CA).
    let err = s.tls(&s.upstream.ca_pem, "api.test", b"http/1.1").await;
    assert!(err.is_err());
    // SNI other than the CONNECT host.
    let err = s.tls(&s.inspection_ca, "other.test", b"http/1.1").await;
    assert!(err.is_err());
    // Plain text inside the tunnel.
    let (resp, tunnel) = connect(s.proxy.addr, &s.authority(), &[]).await;
    assert_eq!(resp.status, 200);
    let mut tunnel = tunnel.unwrap();
    tunnel
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let events = s.proxy.wait_events(3).await;
    let mut reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["client_rejected_ca", "not_tls", "sni_mismatch"]);
    assert!(s.upstream.seen().is_empty(), "nothing reached the upstream");
}

fn compile(endpoints: serde_json::Value, ca: bool, creds: &[&str]) -> Result<(), &'static str> {
    let policy: PolicySpec =
        serde_json::from_value(serde_json::json!({"allow_domains": ["api.test"]})).unwrap();
    let policy = Policy::compile(&policy).unwrap();
    let specs: Vec<EndpointSpec> = serde_json::from_value(endpoints).unwrap();
    let ca = ca.then(|| InspectionCa::generate("t", &[], deadline()).unwrap());
    let credentials = creds
        .iter()
        .map(|c| {
            let (k, v) = c.split_once('=').unwrap();
            (
                k.to_owned(),
                airlock_egress::inspect::SecretValue::new(v.as_bytes().to_vec()),
            )
        })
        .collect();
    let ca = ca
        .as_ref()
        .map(|c| (c.cert_pem.as_str(), c.key_pem.as_str()));
    Inspection::new(&specs, &policy, ca, credentials, Vec::new())
        .map(drop)
        .map_err(|e| e.code())
}

#[test]
fn load_errors_have_codes() {
    let cred =
        serde_json::json!({"secret": "k", "header": "authorization", "format": "Bearer {secret}"});
    let ep = |tls: &str| serde_json::json!([{"host": "api.test", "tls": tls, "credential": cred}]);
    assert_eq!(
        compile(ep("passthrough"), true, &["k=v"]),
        Err("credential_on_passthrough")
    );
    assert_eq!(
        compile(ep("http"), true, &["k=v"]),
        Err("credential_on_plain_http")
    );
    assert_eq!(
        compile(ep("terminate"), false, &["k=v"]),
        Err("terminate_without_ca")
    );
    assert_eq!(
        compile(ep("terminate"), true, &[]),
        Err("missing_credential")
    );
    assert_eq!(
        compile(ep("terminate"), true, &["k=a\rb"]),
        Err("bad_credential_value")
    );
    assert_eq!(compile(ep("terminate"), true, &["k=v"]), Ok(()));
    let files = InspectionFiles {
        ca_cert: Some("/nonexistent".into()),
        ..InspectionFiles::default()
    };
    let policy = Policy::compile(&PolicySpec::default()).unwrap();
    let specs: Vec<EndpointSpec> =
        serde_json::from_value(serde_json::json!([{"host": "a.test", "tls": "passthrough"}]))
            .unwrap();
    let err = Inspection::load(Some(&specs), &policy, &files).unwrap_err();
    assert_eq!(err.code(), "half_inspection_ca");
}
