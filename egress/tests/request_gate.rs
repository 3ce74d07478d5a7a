//! Every request head on a connection, not only the first, is checked before hyper parses it:
//! a bad one gets the JSON refusal after the answers already owed, a client that half-closes
//! still gets its answer, a slow head gets a JSON 408, and body framing is followed exactly
//! (bodies that look like requests stay bodies). Upstreams are on 127.0.0.2 as in
//! `proxy_http.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns fail loudly on purpose.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use airlock_egress::config::{ENV_ALLOW_CIDRS, ENV_IDLE_TIMEOUT, ENV_MAX_HEADER_BYTES};
use common::{
    at_up, parse_response, policy_ports, upstream_setup, ProxyOptions, RawResponse, TestProxy, UP,
};
use test_support::dns::FakeDns;
use test_support::upstream::{EchoServer, HttpBehavior, HttpUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup_with(env: &[(&'static str, &str)]) -> (FakeDns, HttpUpstream, TestProxy) {
    upstream_setup(HttpBehavior::Respond, |mut opts| {
        for (k, v) in env {
            opts = opts.env(k, *v);
        }
        opts
    })
    .await
}

async fn setup() -> (FakeDns, HttpUpstream, TestProxy) {
    setup_with(&[]).await
}

/// Writes `bytes` on one connection, optionally half-closes, and reads until the proxy closes.
async fn exchange(proxy: SocketAddr, bytes: &[u8], half_close: bool) -> Vec<RawResponse> {
    let mut stream = test_support::upstream::connect(proxy).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if half_close {
        stream.shutdown().await.unwrap();
    }
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> Vec<RawResponse> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut buf)).await;
    let _ = read.expect("the proxy did not close the connection within 15s");
    responses(&buf)
}

/// Splits pipelined responses (each with a Content-Length).
fn responses(mut buf: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = parse_response(&buf[..end + 4]).unwrap();
        let len: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let total = (end + 4 + len).min(buf.len());
        out.push(parse_response(&buf[..total]).unwrap());
        buf = &buf[total..];
    }
    assert!(
        buf.is_empty(),
        "bytes after the last response: {:?}",
        String::from_utf8_lossy(buf)
    );
    out
}

fn get(port: u16) -> String {
    format!("GET http://up.test:{port}/ok HTTP/1.1\r\nHost: up.test:{port}\r\n\r\n")
}

#[tokio::test]
async fn a_bad_head_later_on_a_keep_alive_connection_gets_json() {
    let (_dns, upstream, proxy) = setup().await;
    let port = upstream.addr().port();
    let bad_heads: Vec<(String, u16, &str)> = vec![
        // A credential wrapped by `base64` at 76 columns: an obsolete folded header line.
        (
            format!("GET http://up.test:{port}/ HTTP/1.1\r\nProxy-Authorization: Basic YWJj\r\n ZGVm\r\n\r\n"),
            400,
            "bad_header",
        ),
        (format!("GET http://up.test:{port}/ HTTP/1.1\r\nBad Name: 1\r\n\r\n"), 400, "bad_header"),
        (
            format!("POST http://up.test:{port}/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"),
            400,
            "bad_header",
        ),
        (
            format!("POST http://up.test:{port}/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400,
            "bad_header",
        ),
        (format!("GET http://up.test:{port}/#frag HTTP/1.1\r\n\r\n"), 400, "fragment"),
        (format!("GET http://up.test:{port}\\@127.0.0.3/ HTTP/1.1\r\n\r\n"), 400, "backslash"),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(), 400, "bad_version"),
        (
            format!(
                "GET http://up.test:{port}/ HTTP/1.1\r\n{}\r\n",
                (0..120).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            431,
            "header_too_large",
        ),
    ];
    for (bad, status, code) in &bad_heads {
        // Pipelined in one write, and again after the first answer was read.
        let mut both = get(port).into_bytes();
        both.extend_from_slice(bad.as_bytes());
        let answers = exchange(proxy.addr, &both, false).await;
        assert_eq!(answers.len(), 2, "{bad:?}: {answers:?}");
        assert_eq!(answers[0].status, 200, "{bad:?}");
        answers[1].assert_refused(*status, code);
        assert_eq!(answers[1].header("connection"), Some("close"));

        let mut stream = test_support::upstream::connect(proxy.addr).await.unwrap();
        stream.write_all(get(port).as_bytes()).await.unwrap();
        let mut first = vec![0u8; 4096];
        let n = stream.read(&mut first).await.unwrap();
        assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{bad:?}");
        stream.write_all(bad.as_bytes()).await.unwrap();
        let answers = read_all(&mut stream).await;
        assert_eq!(answers.len(), 1, "{bad:?}: {answers:?}");
        answers[0].assert_refused(*status, code);
    }
    // Every refusal is in the ledger, and no bad head reached the upstream.
    let events = proxy.wait_events(bad_heads.len() * 4).await;
    let refused = events.iter().filter(|e| e.reason != "allowed").count();
    assert_eq!(refused, bad_heads.len() * 2, "{events:?}");
    assert_eq!(upstream.requests().len(), bad_heads.len() * 2);
}

#[tokio::test]
async fn bodies_that_look_like_requests_stay_bodies() {
    let (_dns, upstream, proxy) = setup().await;
    let port = upstream.addr().port();
    let sized = format!("GET http://up.test:{port}/#x HTTP/1.1\r\n\r\n");
    let chunk = "PRI * HTTP/2.0\r\n";
    let stream = format!(
        "POST http://up.test:{port}/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{sized}\
         POST http://up.test:{port}/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};name=value\r\n{chunk}\r\n0\r\nX-Trailer: 1\r\n\r\n\
         GET http://up.test:{port}/c HTTP/1.1\r\nConnection: close\r\n\r\n",
        sized.len(),
        chunk.len()
    );
    let answers = exchange(proxy.addr, stream.as_bytes(), false).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200], "{answers:?}");
    assert_eq!(answers[0].text(), sized);
    assert_eq!(answers[1].text(), chunk);
    let seen: Vec<String> = upstream.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/a", "/b", "/c"]);
}

#[tokio::test]
async fn a_client_that_half_closes_still_gets_its_answers() {
    let (_dns, upstream, proxy) = setup().await;
    let port = upstream.addr().port();
    let two = format!("{}{}", get(port), get(port));
    let answers = exchange(proxy.addr, two.as_bytes(), true).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200], "{answers:?}");
    assert_eq!(answers[1].text(), format!("hello from {}", upstream.addr()));
    // A head cut short by the half-close is answered too.
    let cut = format!("{}GET http://up.test:{port}/ HTTP/1.1\r\nHo", get(port));
    let answers = exchange(proxy.addr, cut.as_bytes(), true).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    answers[1].assert_refused(400, "incomplete_request");
}

#[tokio::test]
async fn a_slow_head_gets_408_and_an_idle_connection_closes_quietly() {
    let (_dns, upstream, proxy) = setup_with(&[(ENV_IDLE_TIMEOUT, "400ms")]).await;
    let port = upstream.addr().port();
    let mut slow = test_support::upstream::connect(proxy.addr).await.unwrap();
    slow.write_all(format!("GET http://up.test:{port}/ HTTP/1.1\r\nHost: up").as_bytes())
        .await
        .unwrap();
    let answers = read_all(&mut slow).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers[0].assert_refused(408, "header_timeout");

    let mut idle = test_support::upstream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(15), idle.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf));
}

#[tokio::test]
async fn an_oversized_head_gets_431_json() {
    let (_dns, upstream, proxy) = setup_with(&[(ENV_MAX_HEADER_BYTES, "8192")]).await;
    let port = upstream.addr().port();
    let big = format!(
        "{}GET http://up.test:{port}/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        get(port),
        "b".repeat(100_000)
    );
    let answers = exchange(proxy.addr, big.as_bytes(), false).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    answers[1].assert_refused(431, "header_too_large");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn data_sent_right_after_connect_reaches_the_tunnel() {
    let echo = EchoServer::start(at_up(0)).await.unwrap();
    let ip: IpAddr = UP.parse().unwrap();
    let dns = FakeDns::start([("echo.test", vec![ip])]).await;
    let port = echo.addr().port();
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port])).env(ENV_ALLOW_CIDRS, "127.0.0.2/32"),
    )
    .await;
    let mut stream = test_support::upstream::connect(proxy.addr).await.unwrap();
    // Not HTTP at all, in the same write as the CONNECT head.
    let early = b"\x16\x03\x01\x02\x00 early bytes\r\n\r\n";
    let mut bytes = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n").into_bytes();
    bytes.extend_from_slice(early);
    stream.write_all(&bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    assert_eq!(&got[head_end..], early);
}

#[tokio::test]
async fn an_upload_past_the_budget_is_refused_as_max_bytes() {
    let (_dns, upstream, proxy) = upstream_setup(HttpBehavior::Respond, |mut opts| {
        opts.policy["max_bytes"] = serde_json::json!(64 * 1024);
        opts
    })
    .await;
    let port = upstream.addr().port();
    let body = vec![b'u'; 1024 * 1024];
    let mut req = format!(
        "POST http://up.test:{port}/upload HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let mut stream = test_support::upstream::connect(proxy.addr).await.unwrap();
    // The proxy stops reading once the budget is spent: write in the background.
    let (mut read, mut write) = stream.split();
    let (_, answers) = tokio::join!(async { write.write_all(&req).await }, async {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), read.read_to_end(&mut buf)).await;
        buf
    });
    let answer = parse_response(&answers).expect("an answer");
    answer.assert_refused(403, "max_bytes");
    let events = proxy.wait_events(1).await;
    assert_eq!(events[0].reason, "max_bytes", "{events:?}");
}
