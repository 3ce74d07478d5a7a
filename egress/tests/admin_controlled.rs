//! Controlled mode end to end: the controller's admin API drives the real proxy.
//!
//! Entries pushed over the admin API decide who may use the proxy (source address **and**
//! credential), a new generation or a removal closes the old generation's tunnels, budgets are
//! enforced per sandbox, and every exchange reaches the ledger spool (overflow counted).
//!
//! Everything runs on loopback: the proxy on 127.0.0.1, sandbox "a" connects from 127.0.0.1 and
//! sandbox "b" from 127.0.0.3, and the only upstream is an echo server on 127.0.0.2, admitted by
//! the operator exception `127.0.0.2/32` through the same configuration a deployment uses.

// Helpers outside `#[test]` functions are test code too: a failed setup must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock_egress::registry::basic_credential;
use airlock_wire::EventsPage;
use common::controlled::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn identity_needs_registered_source_and_matching_credential() {
    let rig = Rig::start(1024).await;
    let cred_a = basic_credential("a", "token-a");
    let cred_b = basic_credential("b", "token-b");

    // Fail closed: nothing registered yet.
    let (head, _) = rig.connect(A_SRC, Some(&cred_a)).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("unknown_source")),
        "{head:?}"
    );

    assert_eq!(
        rig.push("a", A_SRC, "token-a", 1, rig.echo_policy(json!({})))
            .await,
        201
    );
    assert_eq!(
        rig.push("b", B_SRC, "token-b", 1, rig.echo_policy(json!({})))
            .await,
        201
    );

    let (head, _) = rig.connect(A_SRC, None).await;
    assert_eq!(head.status, 407, "{head:?}");
    assert_eq!(head.body["error"], "proxy_auth_required");
    assert!(
        head.raw
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic"),
        "{}",
        head.raw
    );

    let wrong = basic_credential("a", "not-the-token");
    let cases = [
        ("wrong token", A_SRC, wrong.as_str()),
        ("B's credential from A's address", A_SRC, cred_b.as_str()),
        ("A's credential from B's address", B_SRC, cred_a.as_str()),
        ("garbage", A_SRC, "Basic %%%"),
    ];
    for (name, src, cred) in cases {
        let (head, _) = rig.connect(src, Some(cred)).await;
        assert_eq!(
            (head.status, &head.body["error"]),
            (403, &json!("bad_credential")),
            "{name}: {head:?}"
        );
    }
    assert_eq!(
        rig.echo.connections(),
        0,
        "no refused client reached the upstream"
    );

    let (head, mut a) = rig.connect(A_SRC, Some(&cred_a)).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut a).await;
    let (head, mut b) = rig.connect(B_SRC, Some(&cred_b)).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut b).await;
    assert_eq!(rig.echo.connections(), 2);

    let refused = rig
        .wait_for_event(|e| e.reason == "bad_credential" && e.client.ip().to_string() == B_SRC)
        .await;
    assert_eq!(refused.decision, airlock_wire::Outcome::Deny);
}

#[tokio::test]
async fn a_new_generation_or_removal_closes_old_tunnels() {
    let rig = Rig::start(1024).await;
    let cred = basic_credential("a", "token-a");
    assert_eq!(
        rig.push("a", A_SRC, "token-a", 1, rig.echo_policy(json!({})))
            .await,
        201
    );
    let (head, mut gen1) = rig.connect(A_SRC, Some(&cred)).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut gen1).await;

    // A stale push changes nothing and closes nothing.
    assert_eq!(rig.push("a", A_SRC, "token-a", 0, json!({})).await, 409);
    ping(&mut gen1).await;

    assert_eq!(
        rig.push("a", A_SRC, "token-a", 2, rig.echo_policy(json!({})))
            .await,
        200
    );
    closed_by_proxy(&mut gen1).await;
    let event = rig
        .wait_for_event(|e| e.generation == 1 && e.method == "CONNECT")
        .await;
    assert_eq!(event.sandbox.as_deref(), Some("a"));
    // The budget and the ledger count the heads too: the CONNECT head up, the 200 down.
    let connect_head = rig.connect_head(Some(&cred)).len() as u64;
    assert_eq!(
        event.bytes_up,
        connect_head + 8,
        "the head and two pings up"
    );
    assert_eq!(event.bytes_down, OK_HEAD + 8, "the 200 and two pings down");

    let (head, mut gen2) = rig.connect(A_SRC, Some(&cred)).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut gen2).await;

    // Generation 3 no longer admits the port: the gen-2 tunnel closes and new ones are refused.
    assert_eq!(
        rig.push("a", A_SRC, "token-a", 3, json!({"allow_ports": [443]}))
            .await,
        200
    );
    closed_by_proxy(&mut gen2).await;
    let (head, _) = rig.connect(A_SRC, Some(&cred)).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("port_not_allowed")),
        "{head:?}"
    );
    assert_eq!(head.body["sandbox"], "a");

    assert_eq!(
        rig.push("a", A_SRC, "token-a", 4, rig.echo_policy(json!({})))
            .await,
        200
    );
    let (head, mut gen4) = rig.connect(A_SRC, Some(&cred)).await;
    assert_eq!(head.status, 200, "{head:?}");
    let (status, _) = admin_call(rig.admin, "DELETE", "/v1/sandboxes/a", None).await;
    assert_eq!(status, 204);
    closed_by_proxy(&mut gen4).await;
    let (head, _) = rig.connect(A_SRC, Some(&cred)).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("unknown_source")),
        "{head:?}"
    );
}

#[tokio::test]
async fn budgets_are_per_sandbox_and_survive_a_new_generation() {
    let rig = Rig::start(1024).await;
    let cred_a = basic_credential("a", "token-a");
    let cred_b = basic_credential("b", "token-b");
    let policy = rig.echo_policy(json!({"max_connections": 1, "max_bytes": 1000}));
    assert_eq!(
        rig.push("a", A_SRC, "token-a", 1, policy.clone()).await,
        201
    );
    assert_eq!(rig.push("b", B_SRC, "token-b", 1, policy).await, 201);

    let (head, mut first) = rig.connect(A_SRC, Some(&cred_a)).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut first).await;
    let (head, _) = rig.connect(A_SRC, Some(&cred_a)).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("max_connections")),
        "{head:?}"
    );
    // B's budget is its own.
    let (head, _b) = rig.connect(B_SRC, Some(&cred_b)).await;
    assert_eq!(head.status, 200, "{head:?}");

    // Spend A's bytes: 8 so far, then 1000 more goes past the budget and the tunnel closes.
    first.write_all(&[b'x'; 1000]).await.unwrap();
    closed_by_proxy(&mut first).await;
    let spent = rig.wait_for_event(|e| e.reason == "max_bytes").await;
    assert_eq!(spent.sandbox.as_deref(), Some("a"));
    let (status, detail) = admin_call(rig.admin, "GET", "/v1/sandboxes/a", None).await;
    assert_eq!(status, 200);
    assert!(detail["bytes_used"].as_u64().unwrap() > 1000, "{detail}");
    assert_eq!(detail["policy"]["max_bytes"], 1000, "{detail}");

    // A new generation keeps the spent budget: A is still refused.
    let policy = rig.echo_policy(json!({"max_connections": 1, "max_bytes": 1000}));
    assert_eq!(rig.push("a", A_SRC, "token-a", 2, policy).await, 200);
    let (head, _) = rig.connect(A_SRC, Some(&cred_a)).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("max_bytes")),
        "{head:?}"
    );
}

#[tokio::test]
async fn spool_serves_every_event_and_counts_overflow() {
    let rig = Rig::start(3).await;
    let cred = basic_credential("a", "token-a");
    // Five refusals (unknown source): three fit the spool, two wait for a summary.
    for _ in 0..5 {
        let (head, _) = rig.connect(A_SRC, Some(&cred)).await;
        assert_eq!(head.status, 403);
    }
    let (status, body) = admin_call(rig.admin, "GET", "/v1/events?after=0&limit=2", None).await;
    assert_eq!(status, 200);
    let page: EventsPage = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(page.overflowed, 0);
    assert_eq!(rig.state.ledger.waiting(), 2);
    assert_eq!(body["boot_id"], rig.state.registry.boot_id());
    assert!(page
        .events
        .iter()
        .all(|e| e.reason == "unknown_source" && e.sandbox.is_none()));

    let (status, _) =
        admin_call(rig.admin, "POST", "/v1/events/ack", Some(json!({"seq": 3}))).await;
    assert_eq!(status, 204);
    // Room came back: the two that found none come out as one summary, then new events.
    let summary = rig.wait_for_event(|e| e.seq == 4).await;
    assert_eq!((summary.reason.as_str(), summary.count), ("ledger_full", 2));
    let (head, _) = rig.connect(A_SRC, Some(&cred)).await;
    assert_eq!(head.status, 403);
    let next = rig.wait_for_event(|e| e.seq == 5).await;
    assert_eq!(next.reason, "unknown_source");
    assert_eq!(rig.state.ledger.overflowed(), 0, "nothing was lost");

    let metrics = rig.state.metrics.render(&rig.state.ledger);
    assert!(
        metrics.contains("airlock_egress_spool_overflow_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "airlock_egress_requests_total{decision=\"deny\",reason=\"unknown_source\"} 6\n"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn pushed_endpoints_need_their_ca_and_every_bound_credential() {
    let rig = Rig::start(64).await;
    let ca = airlock_certs::mitm::InspectionCa::generate(
        "sb",
        &["api.test".to_owned()],
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    )
    .unwrap();
    let policy = json!({
        "allow_domains": ["api.test"],
        "endpoints": [{"host": "api.test", "tls": "terminate",
            "credential": {"secret": "anthropic", "header": "x-api-key", "format": "{secret}"}}]
    });
    let put = |generation: u64, inspection: Option<serde_json::Value>| {
        let mut body = json!({
            "source_addrs": [A_SRC],
            "credential_hash": airlock_egress::registry::credential_hash("t"),
            "policy": policy.clone(),
            "generation": generation,
        });
        if let Some(inspection) = inspection {
            body["inspection"] = inspection;
        }
        admin_call(rig.admin, "PUT", "/v1/sandboxes/sb", Some(body))
    };
    let (status, body) = put(1, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("terminate_without_ca"))
    );
    let no_credential = json!({"ca_cert_pem": ca.cert_pem, "ca_key_pem": ca.key_pem});
    let (status, body) = put(1, Some(no_credential)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_credential"))
    );
    let split = json!({"ca_cert_pem": ca.cert_pem, "ca_key_pem": ca.key_pem,
        "credentials": {"anthropic": "sk-1\r\nX-Evil: 1"}});
    let (status, body) = put(1, Some(split)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_credential_value"))
    );
    let good = json!({"ca_cert_pem": ca.cert_pem, "ca_key_pem": ca.key_pem,
        "credentials": {"anthropic": "sk-canary-9"}});
    assert_eq!(put(1, Some(good.clone())).await.0, 201);
    // The same generation with the same secret is idempotent; a rotated one needs a new one.
    let (status, body) = put(1, Some(good)).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("unchanged")));
    let rotated = json!({"ca_cert_pem": ca.cert_pem, "ca_key_pem": ca.key_pem,
        "credentials": {"anthropic": "sk-canary-10"}});
    assert_eq!(put(1, Some(rotated.clone())).await.0, 409);
    assert_eq!(put(2, Some(rotated)).await.0, 200);
    // Nothing the proxy answers about the entry shows the key or the value.
    let (_, detail) = admin_call(rig.admin, "GET", "/v1/sandboxes/sb", None).await;
    let text = detail.to_string();
    assert!(
        !text.contains("sk-canary") && !text.contains("PRIVATE KEY"),
        "{text}"
    );
}

/// The gateway admits a request only from a registered source carrying that sandbox's own
/// placeholder: sandbox A sending B's placeholder, or none, is a 401, and so is an
/// unregistered source; a gateway the sandbox lacks is a 404.
#[tokio::test]
async fn the_gateway_needs_the_senders_own_placeholder() {
    use airlock_egress::registry::credential_hash;
    let rig = Rig::start(64).await;
    let ca = airlock_certs::mitm::InspectionCa::generate(
        "sb",
        &["api.test".to_owned()],
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    )
    .unwrap();
    let policy = json!({
        "allow_domains": ["api.test"],
        "endpoints": [{"host": "api.test", "tls": "terminate", "gateway": "anthropic",
            "credential": {"secret": "anthropic", "header": "x-api-key", "format": "{secret}"}}]
    });
    for (id, src, token) in [("a", A_SRC, "tok-a"), ("b", B_SRC, "tok-b")] {
        let body = json!({
            "source_addrs": [src],
            "credential_hash": credential_hash(&format!("proxy-{token}")),
            "policy": policy,
            "generation": 1,
            "inspection": {"ca_cert_pem": ca.cert_pem, "ca_key_pem": ca.key_pem,
                "credentials": {"anthropic": "sk-canary-gw"},
                "gateway_hash": credential_hash(token)},
        });
        let path = format!("/v1/sandboxes/{id}");
        let (status, answer) = admin_call(rig.admin, "PUT", &path, Some(body)).await;
        assert_eq!(status, 201, "{answer}");
    }
    let send = |src: &'static str, path: &'static str, key: Option<String>| {
        let proxy = rig.proxy;
        async move {
            let mut stream = client_from(src.parse().unwrap(), proxy).await;
            let key = key
                .map(|k| format!("x-api-key: {k}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: airlock.internal:3128\r\n{key}\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            read_head(&mut stream).await
        }
    };
    let placeholder = |token: &str| airlock_wire::placeholder_value("anthropic", token);
    let gw = "/gw/anthropic/v1/messages";
    for (src, key, why) in [
        (
            A_SRC,
            Some(placeholder("tok-b")),
            "another sandbox's placeholder",
        ),
        (A_SRC, None, "no placeholder"),
        (
            A_SRC,
            Some("sk-real-looking".to_owned()),
            "a key that is no placeholder",
        ),
        (
            "127.0.0.5",
            Some(placeholder("tok-a")),
            "an unregistered source",
        ),
    ] {
        let head = send(src, gw, key).await;
        assert_eq!(
            (head.status, head.body["error"].as_str()),
            (401, Some("gateway_unauthorized")),
            "{why}: {head:?}"
        );
    }
    let head = send(A_SRC, "/gw/openai/v1/chat", Some(placeholder("tok-a"))).await;
    assert_eq!(head.status, 404, "{head:?}");
    // A's own placeholder passes the gateway's checks; the name then fails to resolve here
    // (the rig resolves nothing), which is judged like any other request.
    let head = send(A_SRC, gw, Some(placeholder("tok-a"))).await;
    assert!(
        head.status != 401 && head.status != 404,
        "A's own placeholder is admitted: {head:?}"
    );
    let head = send(B_SRC, gw, Some(placeholder("tok-b"))).await;
    assert!(
        head.status != 401,
        "B's own placeholder is admitted: {head:?}"
    );
    let refused = rig
        .wait_for_event(|e| e.reason == "gateway_unauthorized" && e.sandbox.as_deref() == Some("a"))
        .await;
    assert_eq!(refused.host, "api.test");
}
