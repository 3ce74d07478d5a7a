//! Unbound pool members end to end: the controller's admin API registers a member's address,
//! every request from it is refused `sandbox_not_claimed` (forward, CONNECT and the gateway,
//! whatever credential it carries) before any DNS lookup or upstream connect, a claim binds the
//! address to a sandbox, and a removal frees it.
//!
//! Everything runs on loopback: the proxy on 127.0.0.1, sandbox "a" connects from 127.0.0.1,
//! the member from 127.0.0.5, and the only upstream is the echo server on 127.0.0.2, named
//! `echo.test` by a resolver that counts its lookups.

// Helpers outside `#[test]` functions are test code too: a failed setup must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlock_egress::registry::{basic_credential, credential_hash};
use airlock_egress::resolve::{Resolve, ResolveFuture};
use airlock_egress_policy::DnsName;
use common::controlled::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// The member's source address.
const M_SRC: &str = "127.0.0.5";

/// `echo.test` → 127.0.0.2, counting every lookup.
#[derive(Debug, Default)]
struct CountingResolve(Arc<AtomicUsize>);

impl Resolve for CountingResolve {
    fn resolve<'a>(&'a self, _name: &'a DnsName) -> ResolveFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(vec!["127.0.0.2".parse().unwrap()]) })
    }
}

/// A rig whose resolver counts lookups.
async fn rig() -> (Rig, Arc<AtomicUsize>) {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&lookups);
    let rig = Rig::start_with(&[], move |_| Arc::new(CountingResolve(counter))).await;
    (rig, lookups)
}

async fn put_member(rig: &Rig, id: &str, src: &str, generation: u64) -> (u16, Value) {
    let body = json!({"source_addrs": [src], "generation": generation});
    admin_call(rig.admin, "PUT", &format!("/v1/members/{id}"), Some(body)).await
}

/// A sandbox push; with `member`, the claim of that member.
async fn put_sandbox(
    rig: &Rig,
    id: &str,
    src: &str,
    generation: u64,
    member: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({
        "source_addrs": [src],
        "credential_hash": credential_hash(&format!("token-{id}")),
        "policy": rig.echo_policy(json!({})),
        "generation": generation,
    });
    if let Some(member) = member {
        body["member"] = json!(member);
    }
    admin_call(rig.admin, "PUT", &format!("/v1/sandboxes/{id}"), Some(body)).await
}

fn cred(id: &str) -> String {
    basic_credential(id, &format!("token-{id}"))
}

/// Sends one raw request head from `src` and reads the answer's head.
async fn send(rig: &Rig, src: &str, head: String) -> Head {
    let mut stream = client_from(src.parse().unwrap(), rig.proxy).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    read_head(&mut stream).await
}

/// CONNECT, forward GET and a gateway request from `src`, each with `credential` if given.
async fn every_route(rig: &Rig, src: &str, credential: Option<&str>) -> Vec<(&'static str, Head)> {
    let port = rig.echo.addr().port();
    let auth = credential
        .map(|c| format!("Proxy-Authorization: {c}\r\n"))
        .unwrap_or_default();
    let connect =
        format!("CONNECT echo.test:{port} HTTP/1.1\r\nHost: echo.test:{port}\r\n{auth}\r\n");
    let forward = format!(
        "GET http://echo.test:{port}/ HTTP/1.1\r\nHost: echo.test:{port}\r\n{auth}\
         Connection: close\r\n\r\n"
    );
    let gateway = format!(
        "GET /gw/anthropic/v1/messages HTTP/1.1\r\nHost: airlock.internal:3128\r\n{auth}\
         x-api-key: airlock-placeholder\r\nConnection: close\r\n\r\n"
    );
    vec![
        ("connect", send(rig, src, connect).await),
        ("forward", send(rig, src, forward).await),
        ("gateway", send(rig, src, gateway).await),
    ]
}

fn assert_not_claimed(route: &str, head: &Head) {
    assert_eq!(head.status, 403, "{route}: {head:?}");
    assert!(
        head.raw.contains("application/json"),
        "{route}: {}",
        head.raw
    );
    assert_eq!(
        head.body["error"], "sandbox_not_claimed",
        "{route}: {head:?}"
    );
    assert!(head.body["message"].is_string(), "{route}: {head:?}");
    assert_eq!(head.body["sandbox"], Value::Null, "{route}: {head:?}");
}

#[tokio::test]
async fn an_unbound_member_is_refused_on_every_route_and_reaches_nothing() {
    let (rig, lookups) = rig().await;
    assert_eq!(put_sandbox(&rig, "a", A_SRC, 1, None).await.0, 201);
    let (status, reply) = put_member(&rig, "m", M_SRC, 1).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        (&reply["member_id"], &reply["outcome"]),
        (&json!("m"), &json!("created"))
    );

    // No credential, a wrong one, and a real sandbox's: the address alone decides, so an
    // unclaimed member cannot probe credentials (no 407, no bad_credential).
    let wrong = basic_credential("a", "not-the-token");
    for credential in [None, Some(wrong.as_str()), Some(cred("a").as_str())] {
        for (route, head) in every_route(&rig, M_SRC, credential).await {
            assert_not_claimed(route, &head);
        }
    }
    assert_eq!(rig.echo.connections(), 0, "no upstream connection");
    assert_eq!(lookups.load(Ordering::SeqCst), 0, "no DNS lookup");

    // Counted like any refusal; recorded like an unknown source's, charged to no sandbox.
    assert_eq!(
        rig.state.metrics.requests("deny", "sandbox_not_claimed"),
        9,
        "three routes times three credentials"
    );
    let event = rig
        .wait_for_event(|e| e.reason == "sandbox_not_claimed")
        .await;
    assert_eq!(event.sandbox, None);
    assert_eq!(event.client.ip().to_string(), M_SRC);

    // The sandbox next door is untouched.
    let (head, mut tunnel) = rig.connect(A_SRC, Some(&cred("a"))).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut tunnel).await;

    let (status, list) = admin_call(rig.admin, "GET", "/v1/members", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["members"],
        json!([{"member_id": "m", "generation": 1, "source_addrs": [M_SRC]}])
    );
    let (_, metrics) = admin_text(&rig, "/metrics").await;
    assert!(metrics.contains("airlock_egress_members 1\n"), "{metrics}");
}

#[tokio::test]
async fn a_claim_binds_the_members_address_to_its_sandbox_once() {
    let (rig, _lookups) = rig().await;
    assert_eq!(put_member(&rig, "m", M_SRC, 1).await.0, 201);
    assert_eq!(put_member(&rig, "m", M_SRC, 1).await.0, 200, "idempotent");
    let (status, body) = put_member(&rig, "m", M_SRC, 0).await;
    assert_eq!((status, &body["error"]), (409, &json!("stale_generation")));

    let (status, reply) = put_sandbox(&rig, "s", M_SRC, 1, Some("m")).await;
    assert_eq!(
        (status, &reply["outcome"]),
        (201, &json!("created")),
        "{reply}"
    );
    let (_, list) = admin_call(rig.admin, "GET", "/v1/members", None).await;
    assert_eq!(
        list["members"],
        json!([]),
        "the member is the sandbox's now"
    );

    // The same address, with the sandbox's credential, now works.
    let (head, mut tunnel) = rig.connect(M_SRC, Some(&cred("s"))).await;
    assert_eq!(head.status, 200, "{head:?}");
    ping(&mut tunnel).await;
    assert_eq!(rig.echo.connections(), 1);

    // A second bind: idempotent at the same generation, refused at an older one.
    let (status, reply) = put_sandbox(&rig, "s", M_SRC, 1, Some("m")).await;
    assert_eq!((status, &reply["outcome"]), (200, &json!("unchanged")));
    let (status, body) = put_sandbox(&rig, "s", M_SRC, 0, Some("m")).await;
    assert_eq!((status, &body["error"]), (409, &json!("stale_generation")));
    ping(&mut tunnel).await;

    // Claiming the same member for another sandbox: its addresses are held by "s".
    let (status, body) = put_sandbox(&rig, "t", M_SRC, 1, Some("m")).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("address_in_use")),
        "{body}"
    );
    // A late registration of the member cannot take the address back either.
    let (status, body) = put_member(&rig, "m", M_SRC, 2).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("address_in_use")),
        "{body}"
    );
    ping(&mut tunnel).await;

    // Removing the member now is a no-op: the address stays the sandbox's.
    let (status, _) = admin_call(rig.admin, "DELETE", "/v1/members/m", None).await;
    assert_eq!(status, 204);
    ping(&mut tunnel).await;
    let (status, _) = admin_call(rig.admin, "DELETE", "/v1/sandboxes/s", None).await;
    assert_eq!(status, 204);
    closed_by_proxy(&mut tunnel).await;
    let (head, _) = rig.connect(M_SRC, Some(&cred("s"))).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("unknown_source"))
    );
}

#[tokio::test]
async fn member_addresses_are_exclusive_and_a_removal_frees_them() {
    let (rig, _lookups) = rig().await;
    assert_eq!(put_sandbox(&rig, "a", A_SRC, 1, None).await.0, 201);
    assert_eq!(put_member(&rig, "m", M_SRC, 1).await.0, 201);

    // A member on a sandbox's address, another member on m's, a plain push on m's.
    let (status, body) = put_member(&rig, "n", A_SRC, 1).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("address_in_use")),
        "{body}"
    );
    let (status, body) = put_member(&rig, "n", M_SRC, 1).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("address_in_use")),
        "{body}"
    );
    let (status, body) = put_sandbox(&rig, "t", M_SRC, 1, None).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("address_in_use")),
        "{body}"
    );
    // A claim of m on other addresses than m's, and a claim of m over sandbox a's address.
    let (status, body) = put_sandbox(&rig, "t", B_SRC, 1, Some("m")).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("member_mismatch")),
        "{body}"
    );
    let (status, body) = put_sandbox(&rig, "t", A_SRC, 1, Some("m")).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("member_mismatch")),
        "{body}"
    );
    for (route, head) in every_route(&rig, M_SRC, Some(&cred("t"))).await {
        assert_not_claimed(route, &head);
    }

    let (status, _) = admin_call(rig.admin, "DELETE", "/v1/members/m", None).await;
    assert_eq!(status, 204);
    let (status, _) = admin_call(rig.admin, "DELETE", "/v1/members/m", None).await;
    assert_eq!(status, 204, "idempotent");
    let (head, _) = rig.connect(M_SRC, Some(&cred("a"))).await;
    assert_eq!(
        (head.status, &head.body["error"]),
        (403, &json!("unknown_source")),
        "{head:?}"
    );
    // Freed: a plain push may take the address now.
    assert_eq!(put_sandbox(&rig, "t", M_SRC, 1, None).await.0, 201);
    assert_eq!(rig.echo.connections(), 0);
}

#[tokio::test]
async fn bad_member_requests_get_typed_errors() {
    let (rig, _lookups) = rig().await;
    let cases = [
        (
            "PUT",
            "/v1/members/a%20b",
            json!({"source_addrs": [M_SRC], "generation": 1}),
            400,
            "invalid_member_id",
        ),
        (
            "PUT",
            "/v1/members/m",
            json!({"source_addrs": [], "generation": 1}),
            400,
            "no_source_addrs",
        ),
        (
            "PUT",
            "/v1/members/m",
            json!({"source_addrs": [M_SRC], "generation": 1, "credential_hash": "ab"}),
            400,
            "bad_json",
        ),
        (
            "PUT",
            "/v1/members/m",
            json!({"source_addrs": [M_SRC]}),
            400,
            "bad_json",
        ),
        ("POST", "/v1/members", json!({}), 405, "method_not_allowed"),
        (
            "POST",
            "/v1/members/m",
            json!({}),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = admin_call(rig.admin, method, path, Some(body)).await;
        assert_eq!(
            (got, &answer["error"]),
            (status, &json!(code)),
            "{method} {path}: {answer}"
        );
    }
    let bad_claim = json!({
        "source_addrs": [M_SRC],
        "credential_hash": credential_hash("token-s"),
        "generation": 1,
        "member": "a b",
    });
    let (status, body) = admin_call(rig.admin, "PUT", "/v1/sandboxes/s", Some(bad_claim)).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_member_id")));
    let (_, list) = admin_call(rig.admin, "GET", "/v1/members", None).await;
    assert_eq!(list["members"], json!([]));
}

/// A plain-text admin GET: (status, body).
async fn admin_text(rig: &Rig, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut stream = client_from("127.0.0.1".parse().unwrap(), rig.admin).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw)
}
