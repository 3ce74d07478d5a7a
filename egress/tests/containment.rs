//! Containment in process: the infrastructure set over every exception, refusals that never
//! name an address the client did not send, the method-case rule, the canonical Host, budgets
//! that count heads, and clients that stop reading. Everything is on loopback; the "internet"
//! is 127.0.0.2, admitted by the operator exception as a deployment would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test-only helpers.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock_egress::config::{ENV_ALLOW_CIDRS, ENV_DENY_CIDRS, ENV_IDLE_TIMEOUT};
use airlock_egress::resolve::{NoResolver, Resolve, ResolveError, ResolveFuture, StaticResolve};
use airlock_egress_policy::DnsName;
use common::{
    at_up, connect, eventually, raw, request, upstream_setup, ProxyOptions, RawResponse, TestProxy,
};
use test_support::upstream::{EchoServer, HttpBehavior, HttpUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Whether `text` holds something shaped like an IPv4 address (`d.d.d.d`).
fn has_ipv4(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|start| {
        let mut groups = 0;
        let mut i = start;
        loop {
            let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > 3 {
                return false;
            }
            groups += 1;
            i += digits;
            if groups == 4 {
                return true;
            }
            if bytes.get(i) != Some(&b'.') {
                return false;
            }
            i += 1;
        }
    })
}

#[test]
fn the_address_detector_works() {
    assert!(has_ipv4("x 10.213.0.3 y"));
    assert!(has_ipv4("(127.0.0.2:8080)"));
    assert!(!has_ipv4("HTTP/1.1 after 1.5s"));
    assert!(!has_ipv4("a.test:8080"));
}

/// A resolver whose `dnsfail.test` fails the way hickory does, naming a resolver's address.
#[derive(Debug)]
struct FailingDns(StaticResolve);

impl Resolve for FailingDns {
    fn resolve<'a>(&'a self, name: &'a DnsName) -> ResolveFuture<'a> {
        if name.as_str() == "dnsfail.test" {
            return Box::pin(async {
                Err(ResolveError::Failed(
                    "no connections available: 10.11.12.13:53 refused".into(),
                ))
            });
        }
        self.0.resolve(name)
    }
}

/// Every way the proxy refuses a request for a *name*: the body never names an address.
#[tokio::test]
async fn refusals_for_names_never_reveal_an_address() {
    let hang = HttpUpstream::start(at_up(0), HttpBehavior::Hang)
        .await
        .unwrap();
    let echo = EchoServer::start(at_up(0)).await.unwrap();
    let dead = TcpListener::bind("127.0.0.5:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let own = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_port = own.local_addr().unwrap().port();
    let mut table = StaticResolve::new();
    for (name, addr) in [
        ("loop.test", "127.0.0.9"),
        ("infra.test", "127.0.0.8"),
        ("dead.test", "127.0.0.5"),
        ("hang.test", "127.0.0.2"),
        ("echo.test", "127.0.0.2"),
        ("self.test", "127.0.0.1"),
    ] {
        table.insert(name, [ip(addr)]);
    }
    let ports = [
        hang.addr().port(),
        echo.addr().port(),
        dead_port,
        own_port,
        8080,
    ];
    let opts = ProxyOptions::new(serde_json::json!({ "allow_ports": ports }))
        .env(
            ENV_ALLOW_CIDRS,
            "127.0.0.2/32,127.0.0.5/32,127.0.0.1/32,127.0.0.8/32",
        )
        .env(ENV_DENY_CIDRS, "127.0.0.8/32")
        .env(ENV_IDLE_TIMEOUT, "500ms")
        .listener(own);
    let proxy = TestProxy::start_with(Arc::new(FailingDns(table)), opts).await;
    let cases: Vec<(String, &str)> = vec![
        (format!("loop.test:{}", 8080), "loopback"),
        (format!("infra.test:{}", 8080), "infrastructure"),
        (format!("dead.test:{dead_port}"), "connect_failed"),
        ("dnsfail.test:8080".to_owned(), "dns_failed"),
        (
            format!("hang.test:{}", hang.addr().port()),
            "upstream_timeout",
        ),
        (format!("self.test:{own_port}"), "proxy_loop"),
        (format!("nowhere.test:{}", 8080), "dns_no_answer"),
    ];
    for (authority, code) in &cases {
        let get = request(proxy.addr, "GET", &format!("http://{authority}/"), &[]).await;
        let (tunnel, _) = connect(proxy.addr, authority, &[]).await;
        for (kind, resp) in [("GET", get), ("CONNECT", tunnel)] {
            if kind == "CONNECT" && *code == "upstream_timeout" {
                continue; // A tunnel to a silent upstream opens; nothing times out before it.
            }
            assert_eq!(
                resp.json()["error"],
                *code,
                "{kind} {authority}: {}",
                resp.text()
            );
            assert!(
                !has_ipv4(&resp.text()),
                "{kind} {authority}: {}",
                resp.text()
            );
        }
    }
    // An upstream that answers garbage (the echo server returns the request itself).
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://echo.test:{}/", echo.addr().port()),
        &[],
    )
    .await;
    assert_eq!(resp.json()["error"], "upstream_failed", "{}", resp.text());
    assert!(!has_ipv4(&resp.text()), "{}", resp.text());
    // The ledger keeps the resolved address for the operator.
    let events = proxy.wait_events(2 * cases.len()).await;
    let infra = events
        .iter()
        .find(|e| e.reason == "infrastructure")
        .unwrap();
    assert_eq!(infra.addr, Some("127.0.0.8:8080".parse().unwrap()));
    assert_eq!(infra.rule.as_deref(), Some("infrastructure:127.0.0.8/32"));
}

#[tokio::test]
async fn without_a_resolver_every_name_is_refused_and_says_why() {
    let opts = ProxyOptions::new(serde_json::json!({}));
    let proxy = TestProxy::start_with(Arc::new(NoResolver), opts).await;
    let resp = request(proxy.addr, "GET", "http://example.test/", &[]).await;
    resp.assert_refused(502, "dns_failed");
    assert!(resp.json()["message"]
        .as_str()
        .unwrap()
        .contains("AIRLOCK_EGRESS_DNS"));
}

/// The infrastructure set wins over the operator's own exception, for literals and names, on
/// any port, whether configured (`--deny-cidr`) or pushed.
#[tokio::test]
async fn infrastructure_wins_over_operator_exceptions() {
    let (dns, upstream, proxy) = upstream_setup(HttpBehavior::Respond, |o| {
        o.env(ENV_DENY_CIDRS, "127.0.0.2/32")
    })
    .await;
    dns.set("b.test", vec![ip("127.0.0.4")]);
    let port = upstream.addr().port();
    for target in [
        format!("127.0.0.2:{port}"),
        format!("up.test:{port}"),
        "127.0.0.2:22".into(),
    ] {
        let (resp, _) = connect(proxy.addr, &target, &[]).await;
        resp.assert_refused(403, "infrastructure");
        let resp = request(proxy.addr, "GET", &format!("http://{target}/"), &[]).await;
        resp.assert_refused(403, "infrastructure");
    }
    assert_eq!(upstream.connections(), 0);
    proxy
        .infra
        .set_pushed(vec!["127.0.0.4/32".parse().unwrap()]);
    let (resp, _) = connect(proxy.addr, &format!("b.test:{port}"), &[]).await;
    resp.assert_refused(403, "infrastructure");
}

#[tokio::test]
async fn a_lower_case_connect_is_a_bad_method() {
    let (_dns, upstream, proxy) = upstream_setup(HttpBehavior::Respond, |o| o).await;
    let port = upstream.addr().port();
    for method in ["connect", "Connect", "cONNECT"] {
        let req = format!("{method} up.test:{port} HTTP/1.1\r\nHost: up.test:{port}\r\n\r\n");
        raw(proxy.addr, req.as_bytes())
            .await
            .assert_refused(400, "bad_method");
    }
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn the_forwarded_host_is_the_canonical_target() {
    let (_dns, upstream, proxy) = upstream_setup(HttpBehavior::Respond, |o| o).await;
    let port = upstream.addr().port();
    let resp = request(
        proxy.addr,
        "GET",
        &format!("http://UP.Test:{port}/"),
        &[&format!("Host: Up.TEST:{port}")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        upstream.requests()[0].header("host"),
        Some(format!("up.test:{port}").as_str())
    );
}

/// Header-only requests: the bodies are a few bytes, the heads 30 KiB; the budget counts them.
#[tokio::test]
async fn max_bytes_counts_the_heads() {
    let (_dns, upstream, proxy) = upstream_setup(HttpBehavior::Respond, |o| {
        let port = o.policy["allow_ports"][0].clone();
        ProxyOptions {
            policy: serde_json::json!({"allow_ports": [port], "max_bytes": 100_000}),
            ..o
        }
    })
    .await;
    let port = upstream.addr().port();
    let header = format!("X-Data: {}", "x".repeat(30 * 1024));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = request(
            proxy.addr,
            "GET",
            &format!("http://up.test:{port}/"),
            &[&header],
        )
        .await;
        statuses.push(resp.json_or_status());
    }
    assert_eq!(
        statuses,
        ["200", "200", "200", "max_bytes", "max_bytes", "max_bytes"],
        "three 30 KiB heads fit in 100,000 bytes, the fourth does not"
    );
    assert_eq!(
        upstream.requests().len(),
        3,
        "the refused head never went upstream"
    );
}

/// A client that never reads a large response is cut off after the idle timeout, and its
/// exchange ends as `idle_timeout`.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let source = TcpListener::bind(at_up(0)).await.unwrap();
    let port = source.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (mut s, _) = source.accept().await.unwrap();
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0usize;
        // Bounded: the proxy must give up long before a GiB.
        while sent < 1 << 30 {
            if s.write_all(&chunk).await.is_err() {
                return sent;
            }
            sent += chunk.len();
        }
        sent
    });
    let opts = |o: ProxyOptions| o.env(ENV_IDLE_TIMEOUT, "300ms");
    let (_dns, _upstream, proxy) = upstream_setup(HttpBehavior::Respond, |o| {
        let o = opts(o);
        ProxyOptions {
            policy: serde_json::json!({"allow_ports": [port]}),
            ..o
        }
    })
    .await;
    let mut client = test_support::upstream::connect(proxy.addr).await.unwrap();
    let req = format!("GET http://up.test:{port}/big HTTP/1.1\r\nHost: up.test:{port}\r\n\r\n");
    client.write_all(req.as_bytes()).await.unwrap();
    // Never read. The proxy must end the exchange on its own.
    let event = eventually(|| proxy.events().into_iter().find(|e| e.method == "GET")).await;
    assert_eq!(event.reason, "idle_timeout", "{event:?}");
    let sent = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sent < 1 << 30,
        "the upstream connection was closed ({sent} bytes)"
    );
    drop(client);
}

trait JsonOrStatus {
    fn json_or_status(&self) -> String;
}

impl JsonOrStatus for RawResponse {
    /// `"200"` for a success, else the refusal code.
    fn json_or_status(&self) -> String {
        match self.status {
            200 => "200".to_owned(),
            _ => self.json()["error"].as_str().unwrap_or("?").to_owned(),
        }
    }
}
