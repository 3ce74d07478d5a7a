//! One sandbox cannot starve or blind the others, and the controller's admin additions:
//! per-source caps answered at once, a fair ledger (a flooding sandbox is refused
//! `ledger_full`, the others keep every event), revocation re-checked after the dial, ceiling
//! labels on every event, and the pushed infrastructure list. Controlled mode, loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test-only helpers.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_egress::config::{
    ENV_MAX_CONNECTIONS_PER_SOURCE, ENV_MAX_PENDING_HEADS_PER_SOURCE, ENV_SPOOL_CAPACITY,
    ENV_SPOOL_PER_SANDBOX,
};
use airlock_egress::registry::{basic_credential, credential_hash, Registry};
use airlock_egress::resolve::{Resolve, ResolveFuture};
use airlock_egress_policy::DnsName;
use common::controlled::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const A: &str = "127.0.0.5";
const B: &str = "127.0.0.6";

fn cred(id: &str) -> String {
    basic_credential(id, &format!("token-{id}"))
}

async fn register(rig: &Rig, id: &str, src: &str, policy: serde_json::Value) {
    let status = rig.push(id, src, &format!("token-{id}"), 1, policy).await;
    assert_eq!(status, 201);
}

/// B's tunnel opens and carries a ping, and it took less than a second.
async fn b_still_works(rig: &Rig) {
    let started = Instant::now();
    let (head, mut tunnel) = rig.connect(B, Some(&cred("b"))).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut tunnel).await;
    eprintln!("B's tunnel opened and echoed in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "B waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_source_at_its_caps_does_not_slow_another_source() {
    let vars = [
        (ENV_MAX_CONNECTIONS_PER_SOURCE, "8".to_owned()),
        (ENV_MAX_PENDING_HEADS_PER_SOURCE, "2".to_owned()),
    ];
    let rig = Rig::start_with(&vars, |_| {
        Arc::new(airlock_egress::resolve::StaticResolve::new())
    })
    .await;
    register(&rig, "a", A, rig.echo_policy(json!({}))).await;
    register(&rig, "b", B, rig.echo_policy(json!({}))).await;

    // A holds its 8 open connections (tunnels); the 9th is refused at once.
    let mut held = Vec::new();
    for _ in 0..8 {
        let (head, tunnel) = rig.connect(A, Some(&cred("a"))).await;
        assert_eq!(head.status, 200, "{head:?}");
        held.push(tunnel);
    }
    let started = Instant::now();
    let (head, _) = rig.connect(A, Some(&cred("a"))).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (429, &json!("connection_limit"))
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    b_still_works(&rig).await;

    // Another source holds its 2 partial heads; its next connection is refused at once.
    let slow: IpAddr = "127.0.0.8".parse().unwrap();
    for _ in 0..2 {
        let mut s = client_from(slow, rig.proxy).await;
        s.write_all(b"CONNECT 127.0.0.2:").await.unwrap();
        held.push(s);
    }
    let refused = first_head_limit(slow, &rig, &mut held).await;
    assert_eq!(
        refused.body["message"].as_str().map(|m| m.contains('2')),
        Some(true)
    );
    b_still_works(&rig).await;

    let connection = rig.wait_for_event(|e| e.reason == "connection_limit").await;
    assert_eq!(
        connection.sandbox.as_deref(),
        Some("a"),
        "attributed by source"
    );
    rig.wait_for_event(|e| e.reason == "head_limit").await;
}

/// Connects from `src` until the proxy answers `429 head_limit` (the partial heads are
/// counted once the proxy has read them); probes it accepted meanwhile stay open.
async fn first_head_limit(src: IpAddr, rig: &Rig, held: &mut Vec<TcpStream>) -> Head {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "never refused");
        let mut probe = client_from(src, rig.proxy).await;
        match tokio::time::timeout(Duration::from_millis(200), read_head(&mut probe)).await {
            Ok(head) => {
                assert_eq!(
                    (head.status, &head.body["error"]),
                    (429, &json!("head_limit"))
                );
                return head;
            }
            Err(_still_open) => held.push(probe),
        }
    }
}

#[tokio::test]
async fn a_flooding_sandbox_cannot_blind_or_block_another() {
    let vars = [
        (ENV_SPOOL_CAPACITY, "64".to_owned()),
        (ENV_SPOOL_PER_SANDBOX, "16".to_owned()),
    ];
    let rig = Rig::start_with(&vars, |_| {
        Arc::new(airlock_egress::resolve::StaticResolve::new())
    })
    .await;
    // A may not reach the echo port: every request is a refusal that wants a ledger row.
    register(&rig, "a", A, json!({"allow_ports": [1]})).await;
    register(&rig, "b", B, rig.echo_policy(json!({}))).await;
    let mut full = 0;
    for _ in 0..50 {
        let (head, _) = rig.connect(A, Some(&cred("a"))).await;
        match head.status {
            403 => assert_eq!(head.body["error"], "port_not_allowed"),
            429 => {
                assert_eq!(head.body["error"], "ledger_full");
                full += 1;
            }
            other => panic!("unexpected {other}: {head:?}"),
        }
    }
    assert_eq!(full, 50 - 16, "A's share holds 16 events");
    for _ in 0..10 {
        b_still_works(&rig).await;
    }
    // Every one of B's tunnels is in the spool.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = rig.state.ledger.events_after(0, 10_000);
        let b = page
            .events
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some("b"))
            .count();
        if b == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "B has {b} events");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Once the controller drains, A's refusals that found no room come back as one summary.
    rig.state.ledger.ack(u64::MAX);
    let summary = rig.wait_for_event(|e| e.reason == "ledger_full").await;
    assert_eq!(
        (summary.sandbox.as_deref(), summary.count),
        (Some("a"), full)
    );
    let (head, _) = rig.connect(A, Some(&cred("a"))).await;
    assert_eq!(head.status, 403, "room again: A is judged as before");
}

/// Pushes a newer generation of `a` from inside the lookup: the request was admitted under a
/// generation that is revoked by the time its upstream socket is open.
#[derive(Debug)]
struct RevokingResolve(Arc<Registry>);

impl Resolve for RevokingResolve {
    fn resolve<'a>(&'a self, _name: &'a DnsName) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut entry = self.0.get("a").unwrap();
            entry.generation += 1;
            self.0.upsert(entry).unwrap();
            Ok(vec!["127.0.0.2".parse().unwrap()])
        })
    }
}

#[tokio::test]
async fn a_policy_pushed_during_admission_revokes_the_request_before_any_byte() {
    let rig = Rig::start_with(&[], |registry| Arc::new(RevokingResolve(registry))).await;
    register(&rig, "a", A, rig.echo_policy(json!({}))).await;
    let port = rig.echo.addr().port();
    let mut s = client_from(A.parse().unwrap(), rig.proxy).await;
    let head = format!(
        "CONNECT echo.test:{port} HTTP/1.1\r\nHost: echo.test:{port}\r\nProxy-Authorization: {}\r\n\r\n",
        cred("a")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let refused = read_head(&mut s).await;
    assert_eq!(
        (refused.status, &refused.body["error"]),
        (403, &json!("policy_changed"))
    );
    let mut s = client_from(A.parse().unwrap(), rig.proxy).await;
    let get = format!(
        "GET http://echo.test:{port}/ HTTP/1.1\r\nProxy-Authorization: {}\r\n\r\n",
        cred("a")
    );
    s.write_all(get.as_bytes()).await.unwrap();
    let refused = read_head(&mut s).await;
    assert_eq!(
        (refused.status, &refused.body["error"]),
        (403, &json!("policy_changed"))
    );
    let event = rig.wait_for_event(|e| e.method == "GET").await;
    assert_eq!(
        (event.reason.as_str(), event.bytes_up),
        ("policy_changed", 0)
    );
}

#[tokio::test]
async fn the_ceiling_is_kept_and_stamped_on_every_event() {
    let rig = Rig::start(64).await;
    let label = "role:member@3f2a9c1e";
    let mut body = json!({
        "source_addrs": [A],
        "credential_hash": credential_hash("token-a"),
        "policy": rig.echo_policy(json!({})),
        "generation": 1,
        "ceiling": label,
    });
    let (status, _) = admin_call(rig.admin, "PUT", "/v1/sandboxes/a", Some(body.clone())).await;
    assert_eq!(status, 201);
    let (_, detail) = admin_call(rig.admin, "GET", "/v1/sandboxes/a", None).await;
    assert_eq!(detail["ceiling"], label);
    let (head, mut tunnel) = rig.connect(A, Some(&cred("a"))).await;
    assert_eq!(head.status, 200);
    ping(&mut tunnel).await;
    drop(tunnel);
    let (head, _) = rig.connect(A, Some(&basic_credential("a", "wrong"))).await;
    assert_eq!(head.status, 403);
    let allowed = rig.wait_for_event(|e| e.reason == "allowed").await;
    let refused = rig.wait_for_event(|e| e.reason == "bad_credential").await;
    for event in [&allowed, &refused] {
        assert_eq!(event.ceiling.as_deref(), Some(label), "{event:?}");
        assert_eq!(event.count, 1);
    }
    for bad in [
        json!("x".repeat(129)),
        json!("r\u{e9}le"),
        json!("a\nb"),
        json!(""),
    ] {
        body["ceiling"] = bad;
        body["generation"] = json!(2);
        let (status, reply) =
            admin_call(rig.admin, "PUT", "/v1/sandboxes/a", Some(body.clone())).await;
        assert_eq!((status, &reply["error"]), (400, &json!("invalid_ceiling")));
    }
}

#[tokio::test]
async fn the_pushed_infrastructure_list_beats_every_exception() {
    let rig = Rig::start(64).await;
    register(
        &rig,
        "a",
        A,
        rig.echo_policy(json!({"allow_cidrs": ["127.0.0.0/8"]})),
    )
    .await;
    let (head, _) = rig.connect(A, Some(&cred("a"))).await;
    assert_eq!(head.status, 200);
    let (status, reply) = admin_call(
        rig.admin,
        "PUT",
        "/v1/infrastructure",
        Some(json!({"cidrs": ["127.0.0.2/32", "10.213.0.0/16"]})),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["pushed"], json!(["127.0.0.2/32", "10.213.0.0/16"]));
    let effective = reply["effective"].as_array().unwrap();
    assert!(effective.contains(&json!("127.0.0.2/32")), "{reply}");
    assert!(
        reply["configured"].is_array() && reply["derived"].is_array(),
        "{reply}"
    );
    let (head, _) = rig.connect(A, Some(&cred("a"))).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("infrastructure"))
    );

    let (_, got) = admin_call(rig.admin, "GET", "/v1/infrastructure", None).await;
    assert_eq!(got, reply);
    let (_, health) = admin_call(rig.admin, "GET", "/healthz", None).await;
    assert_eq!(health["infrastructure"], json!(effective.len()));
    assert_eq!(health["dns"], "configured");
    for bad in [
        json!({"cidrs": ["10.0.0.0/33"]}),
        json!({"cidrs": ["nope"]}),
        json!({"cidr": []}),
    ] {
        let (status, reply) = admin_call(rig.admin, "PUT", "/v1/infrastructure", Some(bad)).await;
        assert_eq!(status, 400, "{reply}");
    }
    let (_, still) = admin_call(rig.admin, "GET", "/v1/infrastructure", None).await;
    assert_eq!(
        still["pushed"], reply["pushed"],
        "a refused push changes nothing"
    );
}

/// Inside a terminated tunnel every request wants its own ledger row: once the sandbox's share
/// is full, the request is refused in the tunnel (`429 ledger_full`, JSON) before anything goes
/// upstream, and the refusals come back as one summary once the controller drains.
#[tokio::test]
async fn a_full_share_refuses_requests_inside_a_terminated_tunnel() {
    use airlock_certs::mitm::InspectionCa;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls_pki_types::pem::PemObject;

    let vars = [
        (ENV_SPOOL_CAPACITY, "64".to_owned()),
        (ENV_SPOOL_PER_SANDBOX, "3".to_owned()),
    ];
    let rig = Rig::start_with(&vars, |_| {
        let mut table = airlock_egress::resolve::StaticResolve::new();
        table.insert("api.test", ["127.0.0.2".parse().unwrap()]);
        Arc::new(table)
    })
    .await;
    let port = rig.echo.addr().port();
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let ca = InspectionCa::generate("sb", &["api.test".to_owned()], deadline).unwrap();
    let body = json!({
        "source_addrs": [A],
        "credential_hash": credential_hash("token-a"),
        "generation": 1,
        "policy": {"allow_domains": ["api.test"], "allow_ports": [port],
            "endpoints": [{"host": "api.test", "port": port, "tls": "terminate",
                "credential": {"secret": "k", "header": "x-api-key", "format": "{secret}"}}]},
        "inspection": {"ca_cert_pem": ca.cert_pem, "ca_key_pem": ca.key_pem,
            "credentials": {"k": "sk-canary"}},
    });
    let (status, answer) = admin_call(rig.admin, "PUT", "/v1/sandboxes/a", Some(body)).await;
    assert_eq!(status, 201, "{answer}");

    let mut tunnel = client_from(A.parse().unwrap(), rig.proxy).await;
    let head = format!(
        "CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\n\
         Proxy-Authorization: {}\r\n\r\n",
        cred("a")
    );
    tunnel.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut tunnel).await.status, 200);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("api.test").unwrap(), tunnel)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut refused = None;
    for sent in 1..=10 {
        let req = hyper::Request::get("/v1/x")
            .header("host", format!("api.test:{port}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if status == 429 {
            refused = Some((
                sent,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            ));
            break;
        }
    }
    let (sent, body) = refused.expect("the share never filled");
    assert_eq!(body["error"], "ledger_full", "request {sent}: {body}");
    assert!(sent <= 3, "the share of 3 admitted {sent} requests");
    rig.state.ledger.ack(u64::MAX);
    let summary = rig.wait_for_event(|e| e.reason == "ledger_full").await;
    assert_eq!(summary.sandbox.as_deref(), Some("a"));
}
