//! Native HTTPS on the API (`AIRLOCK_TLS_CERT`/`AIRLOCK_TLS_KEY`), served on loopback with the
//! API certificate `airlock certs init --api-san` issues from the stack CA: a real TLS client that trusts the CA gets its
//! answer with `Strict-Transport-Security`; plain HTTP to the TLS port gets no HTTP answer; a
//! client that stalls the handshake (silent, or half a ClientHello) is closed within the
//! header timeout; a key that does not match its certificate is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::api::edge::Edge;
use airlock::api::listener::Listener;
use airlock::config::TlsFiles;
use airlock::serve::serve_with;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

mod common;
use common::{app_with, AppOptions};

/// The header timeout the server runs with.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

struct Served {
    addr: SocketAddr,
    certs: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

fn files(dir: &std::path::Path) -> TlsFiles {
    TlsFiles {
        cert: dir.join("api/cert.pem"),
        key: dir.join("api/key.pem"),
    }
}

async fn serve() -> Served {
    let certs = tempfile::tempdir().unwrap();
    let mut options = airlock_certs::InitOptions::new(certs.path());
    options.api_sans = vec!["airlock.test".parse().unwrap()];
    airlock_certs::init(&options).unwrap();
    let cert = files(certs.path());
    let vars = [
        ("AIRLOCK_HEADER_TIMEOUT", "500ms"),
        ("AIRLOCK_TLS_CERT", cert.cert.to_str().unwrap()),
        ("AIRLOCK_TLS_KEY", cert.key.to_str().unwrap()),
    ];
    let app = app_with(AppOptions {
        vars: &vars,
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.config.http.tls, Some(cert));
    let listen = Listener::from_config(app.config.http.clone()).unwrap();
    assert!(listen.tls.is_some());
    let state = app
        .state
        .clone()
        .with_edge(Edge::new(&app.config.http, true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move { drop(stopped.await) };
        serve_with(listener, state, listen, shutdown).await.unwrap();
        drop(app);
    });
    Served {
        addr,
        certs,
        stop: Some(stop),
    }
}

/// Reads until the server closes, bounded by `limit`; what it sent and how long after
/// `started` it closed.
async fn read_until_closed(
    stream: &mut TcpStream,
    started: Instant,
    limit: Duration,
) -> (Vec<u8>, Duration) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection past {limit:?}"
    );
    (got, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_gets_https_with_hsts() {
    let served = serve().await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(served.certs.path().join("ca/cert.pem")).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = connect(served.addr).await.unwrap();
    // The name given with --api-san (the connection goes to 127.0.0.1).
    let name = ServerName::try_from("airlock.test").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: airlock.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    // A close without close_notify is fine once the answer is in.
    drop(read.unwrap());
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.contains("strict-transport-security: max-age="),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_gets_no_answer() {
    let served = serve().await;
    let mut plain = connect(served.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_until_closed(&mut plain, Instant::now(), Duration::from_secs(10)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_within_the_header_timeout() {
    let served = serve().await;
    let started = Instant::now();
    // Silent after connecting.
    let mut silent = connect(served.addr).await.unwrap();
    // Half a ClientHello: a handshake record header promising 512 bytes, then nothing.
    let mut half = connect(served.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let limit = HEADER_TIMEOUT * 6;
    let (_, silent_for) = read_until_closed(&mut silent, started, limit).await;
    let (_, half_for) = read_until_closed(&mut half, started, limit).await;
    eprintln!("tls-stall: silent closed after {silent_for:?}, half hello after {half_for:?}");
    for took in [silent_for, half_for] {
        assert!(took < HEADER_TIMEOUT * 4, "{took:?}");
    }
}

#[test]
fn a_key_that_does_not_match_is_refused() {
    let one = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    airlock_certs::init(&airlock_certs::InitOptions::new(one.path())).unwrap();
    airlock_certs::init(&airlock_certs::InitOptions::new(other.path())).unwrap();
    let mismatched = TlsFiles {
        cert: one.path().join("server/cert.pem"),
        key: other.path().join("server/key.pem"),
    };
    let Err(error) = airlock::api::listener::tls::acceptor(&mismatched) else {
        panic!("a mismatched key was accepted")
    };
    assert!(error.to_string().contains("cannot serve TLS"), "{error}");
    let missing = TlsFiles {
        cert: one.path().join("nope.pem"),
        key: one.path().join("server/key.pem"),
    };
    let Err(error) = airlock::api::listener::tls::acceptor(&missing) else {
        panic!("a missing certificate was accepted")
    };
    assert!(error.to_string().contains("nope.pem"), "{error}");
}

/// A TCP connection to the loopback `addr` (a socket address, never a name).
async fn connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    tokio::net::TcpSocket::new_v4()?.connect(addr).await
}

// `airlock health` (the compose health check) speaks HTTPS when given the served certificate
// and accepts only that one: the pinned leaf passes, another leaf of the same CA is refused,
// and plain HTTP to the TLS port is no 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_pins_the_served_certificate() {
    let served = serve().await;
    let check = |pin: Option<std::path::PathBuf>| {
        let args = airlock::ops::health::HealthArgs {
            addr: served.addr,
            path: "/healthz".to_owned(),
            timeout_s: 5,
            pin,
        };
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let verdict = args.run(&mut out);
            (
                verdict.map_err(|e| format!("{e:#}")),
                String::from_utf8(out).unwrap(),
            )
        })
    };
    let api = served.certs.path().join("api/cert.pem");
    let (verdict, out) = check(Some(api)).await.unwrap();
    assert_eq!(verdict, Ok(true), "{out}");
    assert!(out.contains(" 200"), "{out}");
    let other = served.certs.path().join("server/cert.pem");
    let (verdict, _) = check(Some(other)).await.unwrap();
    let error = verdict.unwrap_err();
    assert!(error.contains("not the pinned one"), "{error}");
    let (verdict, _) = check(None).await.unwrap();
    assert_ne!(verdict, Ok(true), "plain HTTP to the TLS port");
}
