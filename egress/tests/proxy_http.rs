//! In-process tests of the proxy over loopback: "the internet" is upstreams on 127.0.0.2,
//! admitted by the operator exception `AIRLOCK_EGRESS_ALLOW_CIDRS=127.0.0.2/32`; DNS is
//! `FakeDns`. Nothing here asks for a non-loopback destination (see `forbidden_netns.rs`).

#![allow(clippy::unwrap_used)] // Helpers outside #[test] fns fail loudly on purpose.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use airlock_egress::config::{ENV_ALLOW_CIDRS, ENV_IDLE_TIMEOUT, ENV_MAX_HEADER_BYTES};
use common::{connect, policy_ports, raw, request, upstream_setup, ProxyOptions, TestProxy, UP};
use test_support::dns::FakeDns;
use test_support::upstream::{EchoServer, HttpBehavior, HttpUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CANARY: &str = "127.0.0.3";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(ip_str: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(ip_str), port)
}

/// DNS with `up.test → 127.0.0.2`, an HTTP upstream there, and a proxy admitting it.
async fn setup(behavior: HttpBehavior) -> (FakeDns, HttpUpstream, TestProxy) {
    upstream_setup(behavior, |opts| opts).await
}

#[tokio::test]
async fn get_is_forwarded_by_name_with_hop_by_hop_removed() {
    let (dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let target = format!("http://UP.test:{port}/a/b?c=d");
    let resp = request(
        proxy.addr,
        "GET",
        &target,
        &[
            &format!("Host: up.test:{port}"),
            "Proxy-Authorization: Basic c2VjcmV0",
            "Proxy-Connection: keep-alive",
            "X-Drop: 1",
            "Connection: close, X-Drop",
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), format!("hello from {}", upstream.addr()));
    assert_eq!(resp.header("x-upstream"), Some("yes"));
    assert!(resp.header("x-hop").is_none() && resp.header("keep-alive").is_none());
    assert!(resp.header("via").unwrap().contains("airlock-egress"));

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a/b?c=d"));
    assert_eq!(r.header("host"), Some(format!("up.test:{port}").as_str()));
    assert!(r.header("via").unwrap().contains("airlock-egress"));
    for gone in ["proxy-authorization", "proxy-connection", "x-drop"] {
        assert!(
            r.header(gone).is_none(),
            "{gone} reached the upstream: {r:?}"
        );
    }
    assert!(dns.queries_for("up.test") >= 1);

    let events = proxy.wait_events(1).await;
    let e = &events[0];
    assert_eq!(e.method, "GET");
    assert_eq!(e.host, "up.test");
    assert_eq!(e.port, port);
    assert_eq!(e.addr, Some(upstream.addr()));
    assert_eq!(e.reason, "allowed");
    assert!(e.bytes_down > 0);
    assert_eq!(proxy.metrics.requests("allow", "allowed"), 1);
}

#[tokio::test]
async fn post_body_streams_both_ways() {
    let (_dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let body: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    // Chunked request body: the proxy must stream it, not require a length.
    let mut req = format!(
        "POST http://up.test:{port}/upload HTTP/1.1\r\nHost: up.test:{port}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(64 * 1024) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(proxy.addr, &req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body == body, "echoed body differs");
    let seen = upstream.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body.len(), body.len());
    let events = proxy.wait_events(1).await;
    // The heads count too (the budget counts everything on the wire); each is well under 1 KiB.
    let (up, down) = (events[0].bytes_up, events[0].bytes_down);
    let body_len = body.len() as u64;
    assert!((body_len + 50..body_len + 1024).contains(&up), "{up}");
    assert!((body_len + 50..body_len + 1024).contains(&down), "{down}");
}

#[tokio::test]
async fn connect_tunnel_echoes_and_half_closes() {
    let echo = EchoServer::start(at(UP, 0)).await.unwrap();
    let dns = FakeDns::start([("echo.test", vec![ip(UP)])]).await;
    let port = echo.addr().port();
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port])).env(ENV_ALLOW_CIDRS, "127.0.0.2/32"),
    )
    .await;
    let (resp, tunnel) = connect(proxy.addr, &format!("echo.test:{port}"), &[]).await;
    assert_eq!(resp.status, 200);
    let mut tunnel = tunnel.unwrap();
    tunnel.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
    // Half-close: our EOF reaches the echo server, which then closes its side.
    tunnel.write_all(b"last").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"last");
    let events = proxy.wait_events(1).await;
    let e = &events[0];
    assert_eq!(
        (e.method.as_str(), e.host.as_str()),
        ("CONNECT", "echo.test")
    );
    // The CONNECT head up and the 200 down are counted with the 27 tunnel bytes.
    let head = format!("CONNECT echo.test:{port} HTTP/1.1\r\nHost: echo.test:{port}\r\n\r\n");
    assert_eq!(
        (e.bytes_up, e.bytes_down),
        (27 + head.len() as u64, 27 + 17 + 37 + 2)
    );
    assert_eq!(e.reason, "allowed");
    assert_eq!(echo.connections(), 1);
}

#[tokio::test]
async fn rebinding_name_never_reaches_the_second_answer() {
    let upstream = HttpUpstream::start(at(UP, 0), HttpBehavior::Respond)
        .await
        .unwrap();
    let port = upstream.addr().port();
    // The canary listens on the rebinding target, same port: a wrong dial would land here.
    let canary = EchoServer::start(at(CANARY, port)).await.unwrap();
    let dns = FakeDns::start([]).await;
    dns.rebind("rebind.test", vec![ip(UP)], vec![ip(CANARY)]);
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port])).env(ENV_ALLOW_CIDRS, "127.0.0.2/32"),
    )
    .await;
    let target = format!("http://rebind.test:{port}/");
    let first = request(proxy.addr, "GET", &target, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    for _ in 0..3 {
        let again = request(proxy.addr, "GET", &target, &[]).await;
        again.assert_refused(403, "loopback");
        let (tunnel, _) = connect(proxy.addr, &format!("rebind.test:{port}"), &[]).await;
        tunnel.assert_refused(403, "loopback");
    }
    assert_eq!(
        canary.connections(),
        0,
        "the proxy dialled the rebound address"
    );
    assert_eq!(upstream.connections(), 1);
    assert!(dns.queries_for("rebind.test") >= 2, "{:?}", dns.query_log());
}

#[tokio::test]
async fn mixed_answers_are_denied() {
    let upstream = HttpUpstream::start(at(UP, 0), HttpBehavior::Respond)
        .await
        .unwrap();
    let port = upstream.addr().port();
    let canary = EchoServer::start(at(CANARY, port)).await.unwrap();
    let dns = FakeDns::start([("mixed.test", vec![ip(UP), ip(CANARY)])]).await;
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port])).env(ENV_ALLOW_CIDRS, "127.0.0.2/32"),
    )
    .await;
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://mixed.test:{port}/"),
        &[],
    )
    .await;
    resp.assert_refused(403, "loopback");
    assert_eq!(resp.json()["host"], "mixed.test");
    let (tunnel, _) = connect(proxy.addr, &format!("mixed.test:{port}"), &[]).await;
    tunnel.assert_refused(403, "loopback");
    assert_eq!((upstream.connections(), canary.connections()), (0, 0));
    let events = proxy.wait_events(2).await;
    assert!(events.iter().all(|e| e.reason == "loopback"));
}

#[tokio::test]
async fn loopback_and_local_names_are_denied_without_dns() {
    let (dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    for (target, code) in [
        (format!("127.0.0.1:{port}"), "loopback"),
        (format!("[::1]:{port}"), "loopback"),
        (format!("127.1:{port}"), "loopback"),
        (format!("0x7f000001:{port}"), "loopback"),
        (format!("localhost:{port}"), "localhost_name"),
        (format!("api.localhost:{port}"), "localhost_name"),
        (format!("metadata.google.internal:{port}"), "metadata_name"),
        (
            format!("up.test:{}", port.wrapping_add(1).max(1)),
            "port_not_allowed",
        ),
    ] {
        let (resp, _) = connect(proxy.addr, &target, &[]).await;
        resp.assert_refused(403, code);
        let resp = request(proxy.addr, "GET", &format!("http://{target}/"), &[]).await;
        resp.assert_refused(403, code);
    }
    assert_eq!(dns.queries(), 0, "{:?}", dns.query_log());
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn domain_rules_apply() {
    let upstream = HttpUpstream::start(at(UP, 0), HttpBehavior::Respond)
        .await
        .unwrap();
    let port = upstream.addr().port();
    let dns = FakeDns::start([
        ("ok.allowed.test", vec![ip(UP)]),
        ("bad.allowed.test", vec![ip(UP)]),
        ("other.test", vec![ip(UP)]),
    ])
    .await;
    let policy = serde_json::json!({
        "allow_domains": ["*.allowed.test"],
        "deny_domains": ["bad.allowed.test"],
        "allow_ports": [port],
    });
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy).env(ENV_ALLOW_CIDRS, "127.0.0.2/32"),
    )
    .await;
    let ok = request(
        proxy.addr,
        "GET",
        &format!("http://ok.allowed.test:{port}/"),
        &[],
    )
    .await;
    assert_eq!(ok.status, 200);
    let bad = request(
        proxy.addr,
        "GET",
        &format!("http://bad.allowed.test:{port}/"),
        &[],
    )
    .await;
    bad.assert_refused(403, "domain_denied");
    let (other, _) = connect(proxy.addr, &format!("other.test:{port}"), &[]).await;
    other.assert_refused(403, "domain_not_allowed");
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn malformed_requests_get_400_json() {
    let (dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            "GET /index.html".into(),
            vec!["Host: up.test".into()],
            "origin_form",
        ),
        (
            format!("GET http://user:pw@up.test:{port}/"),
            vec![],
            "userinfo",
        ),
        (format!("GET ftp://up.test:{port}/"), vec![], "bad_scheme"),
        (format!("GET https://up.test:{port}/"), vec![], "bad_scheme"),
        (
            format!("GET http://up.test:{port}/"),
            vec!["Host: evil.test".into()],
            "host_mismatch",
        ),
        (
            format!("GET http://up.test:{port}/"),
            vec![format!("Host: up.test:{}", port ^ 1)],
            "host_mismatch",
        ),
        ("GET http://up.test:0/".into(), vec![], "bad_port"),
        ("CONNECT up.test:0".into(), vec![], "bad_port"),
        ("CONNECT up.test:65536".into(), vec![], "bad_port"),
        // http::Uri silently drops fragments; the raw-line sniffer catches them.
        (
            format!("GET http://up.test:{port}/#frag"),
            vec![],
            "fragment",
        ),
        (
            format!("GET http://up.test:{port}#@127.0.0.3/"),
            vec![],
            "fragment",
        ),
        (
            format!("GET http://up.test:{port}/a\\b"),
            vec![],
            "backslash",
        ),
        (format!("GET http://[::1%25lo]:{port}/"), vec![], "zone_id"),
        (format!("CONNECT user@up.test:{port}"), vec![], "userinfo"),
    ];
    for (line, headers, code) in cases {
        let mut req = format!("{line} HTTP/1.1\r\nConnection: close\r\n");
        for h in &headers {
            req.push_str(&format!("{h}\r\n"));
        }
        req.push_str("\r\n");
        let resp = raw(proxy.addr, req.as_bytes()).await;
        assert_eq!(resp.status, 400, "{line}: {}", resp.text());
        resp.assert_refused(400, code);
    }
    assert_eq!(upstream.connections(), 0);
    assert_eq!(dns.queries(), 0);
}

/// Targets `http::Uri` cannot parse (hyper would answer them with an empty 400): the first
/// request line of a connection is checked before hyper, so they get the JSON refusal too.
#[tokio::test]
async fn unparsable_targets_get_json_400_without_dialing() {
    let (dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    for (line, code) in [
        (
            format!("GET http://up.test:{port}\\@127.0.0.3/"),
            "backslash",
        ),
        (format!("GET http://up%2etest:{port}/"), "percent_escape"),
        (format!("CONNECT up.test:{port}#x"), "fragment"),
        (
            format!("GET http://127.0.0.1\t.evil:{port}/"),
            "control_char",
        ),
        (format!("GET http://up.test:{port}/\u{7f}"), "control_char"),
    ] {
        let req = format!("{line} HTTP/1.1\r\nConnection: close\r\n\r\n");
        let resp = raw(proxy.addr, req.as_bytes()).await;
        resp.assert_refused(400, code);
    }
    assert_eq!(upstream.connections(), 0);
    assert_eq!(dns.queries(), 0);
    let events = proxy.wait_events(5).await;
    assert!(events
        .iter()
        .all(|e| e.decision == airlock_wire::Outcome::Deny));
}

#[tokio::test]
async fn huge_header_is_refused_without_crashing() {
    let (_dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let big = "a".repeat(200 * 1024);
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://up.test:{port}/"),
        &[&format!("X-Big: {big}")],
    )
    .await;
    assert!(resp.status == 431 || resp.status == 400, "{}", resp.status);
    // The proxy still serves.
    let ok = request(proxy.addr, "GET", &format!("http://up.test:{port}/"), &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn slow_upstream_is_504_and_dead_upstream_is_502() {
    let slow = HttpUpstream::start(at(UP, 0), HttpBehavior::Hang)
        .await
        .unwrap();
    let dead = tokio::net::TcpListener::bind(at(UP, 0)).await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let dns = FakeDns::start([("slow.test", vec![ip(UP)]), ("dead.test", vec![ip(UP)])]).await;
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[slow.addr().port(), dead_port]))
            .env(ENV_ALLOW_CIDRS, "127.0.0.2/32")
            .env(ENV_IDLE_TIMEOUT, "500ms"),
    )
    .await;
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://slow.test:{}/", slow.addr().port()),
        &[],
    )
    .await;
    resp.assert_refused(504, "upstream_timeout");
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://dead.test:{dead_port}/"),
        &[],
    )
    .await;
    resp.assert_refused(502, "connect_failed");
    let (resp, _) = connect(proxy.addr, &format!("dead.test:{dead_port}"), &[]).await;
    resp.assert_refused(502, "connect_failed");
    let events = proxy.wait_events(3).await;
    let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["upstream_timeout", "connect_failed", "connect_failed"]
    );
}

#[tokio::test]
async fn unknown_name_is_dns_no_answer() {
    let (_dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://nowhere.test:{port}/"),
        &[],
    )
    .await;
    resp.assert_refused(403, "dns_no_answer");
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests_and_reuses_upstreams() {
    let (_dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let mut stream = test_support::upstream::connect(proxy.addr).await.unwrap();
    for i in 0..10 {
        let req = format!("GET http://up.test:{port}/{i} HTTP/1.1\r\nHost: up.test:{port}\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let resp = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(r) = common::parse_response(&buf) {
                let want: usize = r.header("content-length").unwrap().parse().unwrap();
                if r.body.len() == want {
                    break r;
                }
            }
        };
        assert_eq!(resp.status, 200);
    }
    let targets: Vec<_> = upstream.requests().into_iter().map(|r| r.target).collect();
    let want: Vec<String> = (0..10).map(|i| format!("/{i}")).collect();
    assert_eq!(targets, want);
    // Each request was judged on its own, but idle upstream connections were reused.
    assert!(
        upstream.connections() < 10,
        "no reuse: {}",
        upstream.connections()
    );
    let events = proxy.wait_events(10).await;
    assert!(events.iter().all(|e| e.addr == Some(upstream.addr())));
}

#[tokio::test]
async fn pooled_connections_serve_only_their_checked_address() {
    let a = HttpUpstream::start(at(UP, 0), HttpBehavior::Respond)
        .await
        .unwrap();
    let port = a.addr().port();
    let b = HttpUpstream::start(at("127.0.0.4", port), HttpBehavior::Respond)
        .await
        .unwrap();
    let dns = FakeDns::start([("a.test", vec![ip(UP)]), ("b.test", vec![ip("127.0.0.4")])]).await;
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port])).env(ENV_ALLOW_CIDRS, "127.0.0.2/32,127.0.0.4/32"),
    )
    .await;
    for name in ["a.test", "b.test", "a.test", "b.test", "a.test"] {
        let resp = request(proxy.addr, "GET", &format!("http://{name}:{port}/"), &[]).await;
        assert_eq!(resp.status, 200);
    }
    let hosts = |u: &HttpUpstream| -> Vec<String> {
        u.requests()
            .iter()
            .map(|r| r.header("host").unwrap().to_owned())
            .collect()
    };
    assert_eq!(hosts(&a), vec![format!("a.test:{port}"); 3]);
    assert_eq!(hosts(&b), vec![format!("b.test:{port}"); 2]);
}

#[tokio::test]
async fn max_header_bytes_is_configurable() {
    let upstream = HttpUpstream::start(at(UP, 0), HttpBehavior::Respond)
        .await
        .unwrap();
    let port = upstream.addr().port();
    let dns = FakeDns::start([("up.test", vec![ip(UP)])]).await;
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port]))
            .env(ENV_ALLOW_CIDRS, "127.0.0.2/32")
            .env(ENV_MAX_HEADER_BYTES, "8192"),
    )
    .await;
    let header = format!("X-Big: {}", "b".repeat(10_000));
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://up.test:{port}/"),
        &[&header],
    )
    .await;
    assert_eq!(resp.status, 431);
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn graceful_shutdown_drains_and_stops() {
    let (_dns, upstream, proxy) = setup(HttpBehavior::Respond).await;
    let port = upstream.addr().port();
    let ok = request(proxy.addr, "GET", &format!("http://up.test:{port}/"), &[]).await;
    assert_eq!(ok.status, 200);
    let addr = proxy.addr;
    tokio::time::timeout(Duration::from_secs(15), proxy.stop())
        .await
        .unwrap();
    assert!(
        test_support::upstream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn proxy_refuses_to_dial_itself() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = listener.local_addr().unwrap();
    let dns = FakeDns::start([("self.test", vec![ip("127.0.0.1")])]).await;
    // Even an operator exception covering the proxy's own address does not allow a loop.
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[own.port()]))
            .env(ENV_ALLOW_CIDRS, "127.0.0.1/32")
            .listener(listener),
    )
    .await;
    let (resp, _) = connect(proxy.addr, &own.to_string(), &[]).await;
    resp.assert_refused(403, "proxy_loop");
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://self.test:{}/", own.port()),
        &[],
    )
    .await;
    resp.assert_refused(403, "proxy_loop");
}

#[tokio::test]
async fn report_mode_allows_but_records_would_deny() {
    let upstream = HttpUpstream::start(at(UP, 0), HttpBehavior::Respond)
        .await
        .unwrap();
    let port = upstream.addr().port();
    let canary = EchoServer::start(at(CANARY, port)).await.unwrap();
    let dns = FakeDns::start([("up.test", vec![ip(UP)]), ("local.test", vec![ip(CANARY)])]).await;
    let policy = serde_json::json!({"mode": "report", "allow_domains": ["only.test"], "allow_ports": [port]});
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy).env(ENV_ALLOW_CIDRS, "127.0.0.2/32"),
    )
    .await;
    let resp = request(proxy.addr, "GET", &format!("http://up.test:{port}/"), &[]).await;
    assert_eq!(resp.status, 200);
    // Address rules are still enforced in report mode.
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://local.test:{port}/"),
        &[],
    )
    .await;
    resp.assert_refused(403, "loopback");
    assert_eq!(canary.connections(), 0);
    let events = proxy.wait_events(2).await;
    assert_eq!(events[0].decision, airlock_wire::Outcome::WouldDeny);
    assert_eq!(events[0].reason, "domain_not_allowed");
    assert_eq!(events[1].decision, airlock_wire::Outcome::Deny);
    assert_eq!(
        proxy.metrics.requests("would_deny", "domain_not_allowed"),
        1
    );
}
