//! Hostile clients against the real listener (the API's accept loop on a loopback port, in
//! process): half-sent heads, idle keep-alives, connection floods from one source and from
//! many, and slow request bodies. Figures are printed (`--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use airlock::api::edge::Edge;
use airlock::api::listener::Listener;
use airlock::serve::serve_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use common::{app_with, AppOptions};

/// A served API and the way to stop it.
struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(vars: &[(&str, &str)]) -> Served {
        let app = app_with(AppOptions {
            vars,
            ..AppOptions::default()
        })
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let listen = Listener::plain(app.config.http.clone());
        let state = app
            .state
            .clone()
            .with_edge(Edge::new(&app.config.http, false));
        let task = tokio::spawn(async move {
            let shutdown = async move { drop(stopped.await) };
            serve_with(listener, state, listen, shutdown).await.unwrap();
            drop(app);
        });
        Served {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server drains")
            .unwrap();
    }
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `request` and reads the whole answer (the request asks the server to close).
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nhost: airlock\r\nconnection: close\r\n\r\n";

/// Waits until the peer closes `stream` (EOF or reset), up to `limit`; returns when.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut buf = [0u8; 512];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_sent_heads_are_closed_while_others_are_served() {
    let header_timeout = Duration::from_secs(1);
    let served = Served::start(&[
        ("AIRLOCK_HEADER_TIMEOUT", "1s"),
        ("AIRLOCK_MAX_CONNECTIONS", "4000"),
        ("AIRLOCK_MAX_CONNECTIONS_PER_SOURCE", "2000"),
    ])
    .await;
    let attacker: IpAddr = [127, 0, 0, 2].into();
    let started = Instant::now();
    let mut heads = Vec::new();
    for _ in 0..1000 {
        let mut stream = connect_from(attacker, served.addr).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: airlock\r\nx-slow: ")
            .await
            .unwrap();
        heads.push((stream, Instant::now()));
    }
    let opened = started.elapsed();
    // A normal client is served while the thousand heads are held open.
    let asked = Instant::now();
    let mut normal = connect_from([127, 0, 0, 1].into(), served.addr).await;
    let answer = exchange(&mut normal, HEALTHZ).await;
    let served_in = asked.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(asked.elapsed() < header_timeout, "served in {served_in:?}");
    // Every half-sent head is closed within the timeout (plus the watchdog's tick).
    let limit = header_timeout + Duration::from_secs(2);
    let mut slowest = Duration::ZERO;
    for (stream, sent) in &mut heads {
        let at = closed_within(stream, limit)
            .await
            .expect("a half-sent head is closed");
        slowest = slowest.max(at - *sent);
    }
    // The watchdog's tick, and slack for a loaded 2-core machine: the heads are read one after
    // another, so a late read also delays the timestamps of those read after it (1.79 s was
    // seen with a CI build beside the tests). Each is closed within `limit` regardless.
    assert!(
        slowest <= header_timeout + Duration::from_millis(1200),
        "{slowest:?}"
    );
    println!(
        "slowloris: 1000 half-sent heads opened in {opened:?}; a normal GET /healthz answered \
         in {served_in:?} meanwhile; every head closed, the slowest {slowest:?} after its \
         bytes (header timeout {header_timeout:?})"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alives_last_the_idle_time_not_the_head_timeout() {
    let served = Served::start(&[
        ("AIRLOCK_HEADER_TIMEOUT", "300ms"),
        ("AIRLOCK_KEEPALIVE_IDLE", "2s"),
    ])
    .await;
    let mut stream = connect_from([127, 0, 0, 1].into(), served.addr).await;
    let request = "GET /healthz HTTP/1.1\r\nhost: airlock\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    // Past the head timeout the idle connection still serves the next request.
    assert!(closed_within(&mut stream, Duration::from_secs(1))
        .await
        .is_none());
    stream.write_all(request.as_bytes()).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then, silent, it is closed after about the idle time.
    let closed = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive is closed");
    let idle = closed - answered;
    assert!(idle >= Duration::from_secs(2), "{idle:?}");
    println!("keep-alive: idle connection closed {idle:?} after its first answer (idle time 2s, head timeout 300ms)");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_answer_at_once() {
    let served = Served::start(&[
        ("AIRLOCK_MAX_CONNECTIONS", "8"),
        ("AIRLOCK_MAX_CONNECTIONS_PER_SOURCE", "3"),
    ])
    .await;
    let one: IpAddr = [127, 0, 0, 3].into();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(one, served.addr).await);
    }
    let mut over = connect_from(one, served.addr).await;
    let answer = exchange(&mut over, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("too_many_connections_from_source"),
        "{answer}"
    );
    // Other sources fill the global cap; the next connection anywhere gets 503.
    for last in 4..9u8 {
        held.push(connect_from([127, 0, 0, last].into(), served.addr).await);
    }
    let mut over = connect_from([127, 0, 0, 20].into(), served.addr).await;
    let answer = exchange(&mut over, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // Slots come back when connections close.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(one, served.addr).await;
        let answer = exchange(&mut again, HEALTHZ).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back: {answer}");
        tokio::task::yield_now().await;
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_meets_the_request_timeout() {
    let served = Served::start(&[("AIRLOCK_REQUEST_TIMEOUT", "1s")]).await;
    let mut stream = connect_from([127, 0, 0, 1].into(), served.addr).await;
    let head =
        "POST /v1/auth/login HTTP/1.1\r\nhost: airlock\r\ncontent-type: application/json\r\n\
                content-length: 100\r\nconnection: close\r\n\r\n{\"email\":";
    let sent = Instant::now();
    let answer = exchange(&mut stream, head).await;
    let took = sent.elapsed();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        answer
            .to_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{answer}"
    );
    assert!(
        answer.to_lowercase().contains("cache-control: no-store"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    served.stop().await;
}
