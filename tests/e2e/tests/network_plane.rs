//! The network plane end to end: a real DinD over mTLS, the real `airlock-egress` container
//! bootstrapped by the controller inside it, sandboxes created through the API in-process.
//!
//! Names are answered by the test-support fake DNS (`fake-dns`) on the sealed network, which
//! the proxy uses through `AIRLOCK_EGRESS_DNS`: `allowed.test` and `other.test` resolve to the
//! upstream, `rebind.test` to the upstream once and to the metadata address afterwards.
//!
//! "The internet" is a busybox HTTP server on a second sealed network that the DinD is
//! attached to (`e2e::plane`), admitted through the operator's `AIRLOCK_EGRESS_ALLOW_CIDRS`
//! for its exact address. The node network itself is infrastructure. Every other target (a
//! node-network address, the metadata address, a disallowed name) is denied by the proxy
//! before any dial, and would have nowhere to go anyway: both networks are sealed.
//!
//! Requests are made with busybox `nc` inside the sandbox (the testbox image has no HTTP
//! client), with a raw HTTP/1.1 request in absolute form.
//!
//! One test shares the (expensive) fixture and walks through phases:
//! - 1: bootstrap: the proxy comes up hardened, with its admin port on the DinD's address only;
//! - 2: a sandbox reaches the upstream through the proxy (200);
//! - 3: without a credential: 407; with another sandbox's credential: 403;
//! - 4: denied with a 403 JSON reason: a disallowed domain, a private address, metadata;
//! - 5: budget: a sandbox with `max_bytes` is cut off;
//! - 6: `PUT /v1/sandboxes/{id}/policy` bumps the generation and applies at once;
//! - 7: the ledger (pulled into the store) shows each attempt with its reason and bytes;
//! - 8: proxy restart: the sandbox is denied until the controller re-pushes, then allowed;
//! - 9: the isolation self-test passes with the proxy (through-proxy check included);
//! - 8b: proxy down: a create fails closed (503, nothing left) and `ensure` restarts it;
//! - 9b: an ended sandbox's entry is pruned; `/readyz` includes the proxy;
//! - 10: delete removes the proxy entry and the network.
//!
//! A second test runs the real `airlock serve` with the plane on: it brings the proxy up by
//! itself, and after a proxy restart its background task re-pushes the live entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use airlock::config::DEFAULT_NODE;
use airlock::docker::spec::egress::EGRESS_CONTAINER;
use airlock::egress::EgressPlane;
use axum::http::{Method, StatusCode};
use bollard::query_parameters::InspectContainerOptions;
use e2e::plane::{error_code, poll, Plane, PlaneOptions, EGRESS_IMAGE, LIMIT, TOKEN};
use e2e::Timing;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

/// An address on the node network where nothing listens: infrastructure.
const PRIVATE_HOST: u8 = 99;

async fn fixture(timing: &mut Timing) -> Plane {
    let mut opts = PlaneOptions::new("netplane", env!("CARGO_BIN_EXE_fake-dns"));
    opts.names = vec![
        "allowed.test={upstream}".to_owned(),
        "other.test={upstream}".to_owned(),
        "rebind.test={upstream}/169.254.169.254".to_owned(),
    ];
    Plane::start(opts, timing).await
}

#[tokio::test]
async fn network_plane_end_to_end() {
    let mut timing = Timing::start("network_plane_end_to_end");
    let f = fixture(&mut timing).await;

    // 1. The proxy runs hardened, admin published on the DinD's address only.
    let inspected = f
        .dind
        .docker()
        .inspect_container(EGRESS_CONTAINER, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let config = inspected.config.unwrap();
    let host = inspected.host_config.unwrap();
    assert_eq!(config.user.as_deref(), Some("65532:65532"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    let bindings = host.port_bindings.unwrap();
    let admin = bindings["3129/tcp"].clone().unwrap();
    assert_eq!(
        admin[0].host_ip.as_deref(),
        Some(f.dind.ip().to_string().as_str())
    );
    assert_eq!(bindings.len(), 1, "{bindings:?}");

    // 2. A sandbox reaches the upstream through the proxy.
    let a = f.create(Value::Null).await;
    let b = f.create(json!({"allow_domains": ["allowed.test"]})).await;
    timing.phase("create-two-sandboxes");
    let (a_proxy, a_cred) = f.credential(&a).await;
    let (_b_proxy, b_cred) = f.credential(&b).await;
    let up = f.upstream;
    let ok = f
        .fetch(&a, a_proxy, &format!("http://{up}/"), Some(&a_cred))
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.contains("hello-from-upstream"), "{ok:?}");
    timing.phase("allowed-fetch");

    // 3. Identity: no credential is 407, another sandbox's credential is 403.
    let none = f.fetch(&a, a_proxy, &format!("http://{up}/"), None).await;
    assert_eq!(none.status, 407, "{none:?}");
    let stolen = f
        .fetch(&a, a_proxy, &format!("http://{up}/"), Some(&b_cred))
        .await;
    assert_eq!(stolen.status, 403, "{stolen:?}");
    assert_eq!(error_code(&stolen), "bad_credential", "{stolen:?}");

    // 4. Denials, each a 403 with a JSON reason.
    let domain = f
        .fetch(&b, _b_proxy, "http://blocked.test/", Some(&b_cred))
        .await;
    assert_eq!(domain.status, 403, "{domain:?}");
    let private_ip = f.dind.outer_network().host(PRIVATE_HOST);
    let private = f
        .fetch(&a, a_proxy, &format!("http://{private_ip}/"), Some(&a_cred))
        .await;
    assert_eq!(private.status, 403, "{private:?}");
    assert_eq!(
        error_code(&private),
        "infrastructure",
        "the node network: {private:?}"
    );
    let metadata = f
        .fetch(
            &a,
            a_proxy,
            "http://169.254.169.254/latest/meta-data/",
            Some(&a_cred),
        )
        .await;
    assert_eq!(metadata.status, 403, "{metadata:?}");
    eprintln!(
        "denials: domain={} private={} metadata={} stolen={}",
        error_code(&domain),
        error_code(&private),
        error_code(&metadata),
        error_code(&stolen)
    );
    timing.phase("denials");

    // 4b. Names: an allowed name resolves and is fetched; a rebinding name is allowed while it
    // points at the upstream and denied once it points at the metadata address (the proxy
    // decides on what it resolved and dials exactly that).
    let named = f
        .fetch(&b, _b_proxy, "http://allowed.test/", Some(&b_cred))
        .await;
    assert_eq!(named.status, 200, "{named:?}");
    let first = f
        .fetch(&a, a_proxy, "http://rebind.test/", Some(&a_cred))
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let rebound = f
        .fetch(&a, a_proxy, "http://rebind.test/", Some(&a_cred))
        .await;
    assert_eq!(rebound.status, 403, "{rebound:?}");
    assert_eq!(error_code(&rebound), "metadata", "{rebound:?}");
    timing.phase("dns");

    // 5. Budget: 4 KB allowed, the 2 MB file is cut off.
    let c = f.create(json!({"max_bytes": 4096})).await;
    let (c_proxy, c_cred) = f.credential(&c).await;
    let big = f
        .fetch(&c, c_proxy, &format!("http://{up}/big"), Some(&c_cred))
        .await;
    assert!(
        big.body.len() < 100_000,
        "the budget did not cut: {} bytes",
        big.body.len()
    );
    timing.phase("budget");

    // 6. Policy update: B may now reach the upstream's address too.
    let before = f
        .call(Method::GET, &format!("/v1/sandboxes/{b}"), None)
        .await;
    assert_eq!(before.status, StatusCode::OK);
    let bad = f
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{b}/policy"),
            Some(json!({"allow_domains": ["*.com"]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let put = f
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{b}/policy"),
            Some(json!({"mode": "report"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["policy_generation"], 2, "{}", put.body);
    assert_eq!(put.body["id"], b.as_str());
    let reported = f
        .fetch(&b, _b_proxy, &format!("http://{up}/"), Some(&b_cred))
        .await;
    assert_eq!(reported.status, 200, "report mode admits it: {reported:?}");
    let would = f
        .fetch(&b, _b_proxy, "http://other.test/", Some(&b_cred))
        .await;
    assert_eq!(
        would.status, 200,
        "report mode only records a would-deny: {would:?}"
    );
    timing.phase("policy-update");

    // 7. The ledger: pulled into the store, each attempt with its reason and bytes.
    f.plane.pull_ledger().await.unwrap();
    let ledger = f.ledger(&a, 5).await;
    for event in &ledger {
        eprintln!(
            "ledger A {} {} {} {} up={} down={}",
            event["method"],
            event["host"],
            event["decision"],
            event["reason"],
            event["bytes_up"],
            event["bytes_down"]
        );
    }
    let allowed = ledger.iter().find(|e| e["decision"] == "allow").unwrap();
    assert!(allowed["bytes_down"].as_i64().unwrap() > 0, "{allowed}");
    let reasons: Vec<&str> = ledger.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"proxy_auth_required"), "{reasons:?}");
    assert!(reasons.len() >= 5, "{reasons:?}");
    let denied = f
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{a}/egress?decision=deny&limit=2"),
            None,
        )
        .await;
    assert_eq!(denied.status, StatusCode::OK);
    assert_eq!(
        denied.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        denied.body
    );
    assert!(denied.body["next"].is_string(), "{}", denied.body);
    let budget = f.ledger(&c, 1).await;
    eprintln!("ledger C {budget:?}");
    assert!(
        budget.iter().any(|e| e["reason"] == "max_bytes"),
        "the ledger says why C was cut off: {budget:?}"
    );
    let summary = f
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{b}/egress/summary"),
            None,
        )
        .await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.body["mode"], "report", "{}", summary.body);
    assert_eq!(
        summary.body["suggested_allow_domains"],
        json!(["allowed.test", "other.test"]),
        "{}",
        summary.body
    );
    eprintln!("summary B {}", summary.body);
    timing.phase("ledger");

    // 7b. Controller restart: events recorded while no controller pulled are not lost; a new
    // plane over the same store (and data dir) picks them up from the stored cursor.
    let seen = f.ledger(&a, 1).await.len();
    let unseen = f
        .fetch(&a, a_proxy, &format!("http://{up}/"), Some(&a_cred))
        .await;
    assert_eq!(unseen.status, 200, "{unseen:?}");
    let restarted =
        EgressPlane::from_config(&f.config, f.docker.clone(), f.store.clone(), DEFAULT_NODE)
            .unwrap()
            .unwrap();
    let deadline = Instant::now() + LIMIT;
    while restarted.pull_ledger().await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the new controller found no event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        f.ledger(&a, seen + 1).await.len(),
        seen + 1,
        "exactly one new event"
    );
    timing.phase("controller-restart");

    // 8. Proxy restart: denied (fail closed) until re-pushed, then allowed again.
    let new_boot = f.restart_proxy().await;
    let closed = f
        .fetch(&a, a_proxy, &format!("http://{up}/"), Some(&a_cred))
        .await;
    assert_eq!(
        closed.status, 403,
        "no egress before the re-push: {closed:?}"
    );
    assert_eq!(error_code(&closed), "unknown_source", "{closed:?}");
    assert_eq!(f.plane.ensure().await.unwrap(), new_boot);
    let back = f
        .fetch(&a, a_proxy, &format!("http://{up}/"), Some(&a_cred))
        .await;
    assert_eq!(back.status, 200, "policies came back: {back:?}");
    timing.phase("proxy-restart");

    // 8b. Proxy down: a create fails closed (503) and leaves no network behind; the next
    // `ensure` starts the proxy again and re-pushes every live entry.
    let networks = sandbox_networks(&f.dind).await;
    f.dind
        .docker()
        .stop_container(EGRESS_CONTAINER, None)
        .await
        .unwrap();
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let refused = f.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["error"], "egress_unavailable",
        "{}",
        refused.body
    );
    assert_eq!(
        sandbox_networks(&f.dind).await,
        networks,
        "the failed create left nothing"
    );
    f.plane.ensure().await.unwrap();
    let again = f
        .fetch(&a, a_proxy, &format!("http://{up}/"), Some(&a_cred))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    timing.phase("proxy-down");

    // 9. The isolation self-test passes with the proxy wired.
    let selftest = f
        .call(Method::POST, &format!("/v1/sandboxes/{a}/selftest"), None)
        .await;
    assert_eq!(selftest.status, StatusCode::OK, "{}", selftest.body);
    for check in selftest.body["report"]["checks"].as_array().unwrap() {
        eprintln!(
            "selftest-report {} {} {} {} ({})",
            check["check"], check["target"], check["result"], check["outcome"], check["detail"]
        );
    }
    assert_eq!(selftest.body["status"], "passed", "{:#}", selftest.body);
    timing.phase("selftest");

    // 9b. A sandbox that ended (not deleted) loses its proxy entry at the next prune, so its
    // /29 can go to a new sandbox.
    let before = f.plane.admin().health().await.unwrap().sandboxes;
    let stopped = f
        .call(Method::POST, &format!("/v1/sandboxes/{c}/stop"), None)
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(f.plane.prune().await.unwrap(), 1);
    assert_eq!(
        f.plane.admin().health().await.unwrap().sandboxes,
        before - 1
    );
    let ready = f.call(Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    timing.phase("prune");

    // 10. Delete removes the entry and the network (the proxy is detached first).
    let entries = f.plane.admin().health().await.unwrap().sandboxes;
    for id in [&a, &b, &c] {
        let deleted = f
            .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    }
    let left = f.plane.admin().health().await.unwrap().sandboxes;
    assert_eq!(left, entries - 2, "A and B went; C was pruned already");
    let network = f
        .dind
        .docker()
        .inspect_network(&format!("airlock-sbx-{a}"), None)
        .await;
    assert!(network.is_err(), "the sandbox network is gone");
    timing.phase("delete");
}

#[tokio::test]
async fn serve_brings_the_proxy_up_and_resyncs_it() {
    let mut timing = Timing::start("serve_brings_the_proxy_up_and_resyncs_it");
    let binary = e2e::serve::airlock_binary().await;
    timing.phase("build");
    let dind = Dind::start(DindOptions::new("netplane_serve"))
        .await
        .unwrap();
    for image in [TESTBOX_IMAGE, EGRESS_IMAGE] {
        dind.load_image(image).await.unwrap();
    }
    timing.phase("dind-and-images");
    let data = tempfile::tempdir().unwrap();
    let extra = [("AIRLOCK_EGRESS", "true")];
    let mut child = e2e::serve::spawn_serve_with(&binary, &dind, data.path(), TOKEN, &extra);
    let (addr, log) = e2e::serve::listen_addr(&mut child).await;
    timing.phase("serve-up");
    let admin_addr = SocketAddr::new(IpAddr::V4(dind.ip()), 3129);
    let client_dir = data.path().join("egress-certs").join("client");
    let admin = airlock::egress::admin::AdminClient::new(admin_addr, &client_dir).unwrap();
    let health = admin.health().await.unwrap();
    assert_eq!(health.sandboxes, 0);

    let create = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"],
        "policy": {"allow_domains": ["example.com"]}});
    let (status, body) = e2e::serve::http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(admin.health().await.unwrap().sandboxes, 1);
    timing.phase("create");

    dind.docker()
        .restart_container(EGRESS_CONTAINER, None)
        .await
        .unwrap();
    let resynced = poll(|| async {
        admin
            .health()
            .await
            .ok()
            .filter(|h| h.boot_id != health.boot_id && h.sandboxes == 1)
    })
    .await;
    eprintln!("re-pushed to boot id {}", resynced.boot_id);
    timing.phase("proxy-restart-resync");

    let (status, body) =
        e2e::serve::http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(admin.health().await.unwrap().sandboxes, 0);
    child.start_kill().unwrap();
    drop(child.wait().await);
    let log = log.await.unwrap();
    assert!(log.contains("Egress proxy synced"), "{log}");
    timing.phase("delete");
}

/// The names of the sandbox networks in the DinD, sorted.
async fn sandbox_networks(dind: &Dind) -> Vec<String> {
    let mut names: Vec<String> = dind
        .docker()
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| n.name)
        .filter(|n| n.starts_with("airlock-sbx-"))
        .collect();
    names.sort();
    names
}
