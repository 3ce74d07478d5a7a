//! The network plane end to end: a real DinD over mTLS, the real `airlock-egress` container
//! bootstrapped by the controller inside it, sandboxes created through the API in-process.
//!
//! Names are answered by the test-support fake DNS (`fake-dns`) on the sealed network, which
//! the proxy uses through `AIRLOCK_EGRESS_DNS`: `allowed.test` and `other.test` resolve to the
//! upstream, `rebind.test` to the upstream once and to the metadata address afterwards.
//!
//! "The internet" is a busybox HTTP server on the sealed outer network, admitted through the
//! operator's `AIRLOCK_EGRESS_ALLOW_CIDRS` for its exact address. Every other target (a
//! private address, the metadata address, a disallowed name) is denied by the proxy before
//! any dial, and would have nowhere to go anyway: the outer network is sealed.
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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use airlock::api::{app, AppState, Auth};
use airlock::docker::egress::EGRESS_CONTAINER;
use airlock::docker::spec::container_name;
use airlock::egress::EgressPlane;
use airlock::service::{SandboxService, ServiceSettings, DEFAULT_NODE};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use bollard::query_parameters::InspectContainerOptions;
use e2e::controller::{parts, Parts};
use e2e::Timing;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, DIND_IMAGE, PROBE_IMAGE, TESTBOX_IMAGE};
use test_support::sealed::{OuterContainer, OuterSpec, SealedNet};
use tower::ServiceExt;

const TOKEN: &str = "e2e-admin-token-0123456789";
const EGRESS_IMAGE: &str = "airlock/egress:dev";
/// The upstream's host number on the sealed /24.
const UPSTREAM_HOST: u8 = 80;
/// An address on the sealed /24 where nothing listens (private, not excepted).
const PRIVATE_HOST: u8 = 99;
const LIMIT: Duration = Duration::from_secs(30);

struct Fixture {
    dind: Dind,
    state: AppState,
    plane: EgressPlane,
    config: airlock::config::Config,
    upstream: Ipv4Addr,
    _upstream: OuterContainer,
    _dns: OuterContainer,
    _dir: tempfile::TempDir,
    _data: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

/// One proxied exchange from inside a sandbox.
#[derive(Debug)]
struct Proxied {
    status: u16,
    head: String,
    body: String,
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
    let restarted = EgressPlane::from_config(
        &f.config,
        f.state.service.docker().clone(),
        f.state.service.store().clone(),
        DEFAULT_NODE,
    )
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
    let old_boot = f.plane.synced_boot_id().await.unwrap();
    f.dind
        .docker()
        .restart_container(EGRESS_CONTAINER, None)
        .await
        .unwrap();
    let new_boot = poll(|| async {
        f.plane
            .admin()
            .health()
            .await
            .ok()
            .map(|h| h.boot_id)
            .filter(|b| *b != old_boot)
    })
    .await;
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

async fn fixture(timing: &mut Timing) -> Fixture {
    let net = SealedNet::create("netplane").await.unwrap();
    let upstream_ip = net.host(UPSTREAM_HOST);
    let script = "mkdir -p /www && echo hello-from-upstream > /www/index.html \
        && head -c 2000000 /dev/zero > /www/big && exec busybox httpd -f -p 80 -h /www";
    let spec = OuterSpec::new("upstream", DIND_IMAGE, &["-c", script])
        .entrypoint("/bin/sh")
        .ip(upstream_ip);
    let upstream = net.run(spec).await.unwrap();
    let dns_ip = net.host(SealedNet::DNS_HOST);
    let dns = start_dns(&net, dns_ip, upstream_ip).await;
    let dind = Dind::start_on(net, DindOptions::new("netplane"))
        .await
        .unwrap();
    timing.phase("dind-start");
    for image in [TESTBOX_IMAGE, EGRESS_IMAGE, PROBE_IMAGE] {
        dind.load_image(image).await.unwrap();
    }
    timing.phase("load-images");
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let allow = format!("{upstream_ip}/32");
    let dns_addr = format!("{dns_ip}:53");
    let selftest_upstream = SocketAddr::new(IpAddr::V4(upstream_ip), 80).to_string();
    let node = dind.ip().to_string();
    let controller_addr =
        SocketAddr::new(IpAddr::V4(dind.outer_network().gateway()), 8080).to_string();
    let docker_host = format!("tcp://{}:2376", dind.ip());
    let cert_path = dind.cert_dir().join("client");
    let env = [
        ("AIRLOCK_DOCKER_HOST", docker_host.as_str()),
        ("AIRLOCK_DOCKER_CERT_PATH", cert_path.to_str().unwrap()),
        ("AIRLOCK_STOP_GRACE", "1s"),
        ("AIRLOCK_DATA_DIR", data_dir.as_str()),
        ("AIRLOCK_EGRESS_ALLOW_CIDRS", allow.as_str()),
        ("AIRLOCK_EGRESS_DNS", dns_addr.as_str()),
        ("AIRLOCK_SELFTEST_UPSTREAM", selftest_upstream.as_str()),
        ("AIRLOCK_SELFTEST_NODE_ADDRS", node.as_str()),
        ("AIRLOCK_SELFTEST_CONTROLLER", controller_addr.as_str()),
    ];
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &env).await;
    let plane = EgressPlane::from_config(&config, docker.clone(), store.clone(), DEFAULT_NODE)
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let boot = match plane.ensure().await {
        Ok(boot) => boot,
        Err(error) => panic!("egress bootstrap: {error}\n{}", proxy_logs(&dind).await),
    };
    eprintln!("egress bootstrap: {:?} (boot id {boot})", started.elapsed());
    timing.phase("egress-bootstrap");
    let service = SandboxService::new(store, docker, ServiceSettings::from_config(&config))
        .with_egress(plane.clone());
    let state = AppState::new(
        service,
        Auth::new(Some(airlock::config::Secret::new(TOKEN)), admin),
    );
    Fixture {
        dind,
        state,
        plane,
        config,
        upstream: upstream_ip,
        _upstream: upstream,
        _dns: dns,
        _dir: dir,
        _data: data,
    }
}

impl Fixture {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body }
    }

    /// Creates a `sleep 300` sandbox with `policy` (omitted when `Null`); returns its id.
    async fn create(&self, policy: Value) -> String {
        let mut body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
        if !policy.is_null() {
            body["policy"] = policy;
        }
        let created = self.call(Method::POST, "/v1/sandboxes", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["state"], "running");
        created.body["id"].as_str().unwrap().to_owned()
    }

    /// The proxy address and the `Proxy-Authorization` value from the sandbox's environment.
    async fn credential(&self, id: &str) -> (SocketAddr, String) {
        let inspected = self
            .dind
            .docker()
            .inspect_container(
                &container_name(id.parse().unwrap()),
                None::<InspectContainerOptions>,
            )
            .await
            .unwrap();
        let env = inspected.config.unwrap().env.unwrap();
        let url = env
            .iter()
            .find_map(|e| e.strip_prefix("HTTP_PROXY="))
            .unwrap()
            .strip_prefix("http://")
            .unwrap()
            .to_owned();
        let (userinfo, addr) = url.split_once('@').unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode(userinfo);
        (addr.parse().unwrap(), format!("Basic {basic}"))
    }

    /// `GET url` through the proxy from inside sandbox `id` (busybox `nc`).
    async fn fetch(&self, id: &str, proxy: SocketAddr, url: &str, cred: Option<&str>) -> Proxied {
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        let auth = cred.map_or_else(String::new, |c| format!("Proxy-Authorization: {c}\r\n"));
        let request =
            format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
        // busybox `nc` half-closes at the end of its stdin; the proxy still answers.
        let script = "printf '%s' \"$1\" | nc -w 5 \"$2\" \"$3\"";
        let body = json!({
            "cmd": ["sh", "-c", script, "sh", request, proxy.ip().to_string(),
                proxy.port().to_string()],
            "timeout_s": 20,
        });
        let reply = self
            .call(
                Method::POST,
                &format!("/v1/sandboxes/{id}/exec"),
                Some(body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let out = reply.body["stdout"].as_str().unwrap_or_default().to_owned();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let head = if out.is_empty() {
            format!("<no answer: {}>", reply.body)
        } else {
            head.to_owned()
        };
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Proxied {
            status,
            head,
            body: body.to_owned(),
        }
    }

    /// Polls the ledger until it holds at least `at_least` events for `id` (pulling on
    /// each round).
    async fn ledger(&self, id: &str, at_least: usize) -> Vec<Value> {
        let deadline = Instant::now() + LIMIT;
        loop {
            self.plane.pull_ledger().await.unwrap();
            let reply = self
                .call(
                    Method::GET,
                    &format!("/v1/sandboxes/{id}/egress?limit=1000"),
                    None,
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            let items = reply.body["items"].as_array().unwrap().clone();
            if items.len() >= at_least {
                return items;
            }
            assert!(Instant::now() < deadline, "ledger of {id}: {items:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn error_code(p: &Proxied) -> String {
    serde_json::from_str::<Value>(&p.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<no JSON: {}>", p.head))
}

async fn poll<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The proxy container's state and log, for failure messages.
async fn proxy_logs(dind: &Dind) -> String {
    use futures_util::StreamExt;
    let state = dind
        .docker()
        .inspect_container(EGRESS_CONTAINER, None::<InspectContainerOptions>)
        .await
        .map(|c| format!("{:?}", c.state))
        .unwrap_or_else(|e| e.to_string());
    let options = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        tail: "50".to_owned(),
        ..Default::default()
    };
    let mut logs = dind.docker().logs(EGRESS_CONTAINER, Some(options));
    let mut out = format!("proxy state: {state}\n");
    for cmd in [
        &["iptables", "-t", "nat", "-S"][..],
        &["iptables", "-S"][..],
        &["busybox", "netstat", "-ltn"][..],
        &["ip", "-4", "addr"][..],
    ] {
        if let Ok(o) = dind.exec_in_dind(cmd).await {
            out.push_str(&format!("$ {cmd:?}\n{}{}\n", o.stdout, o.stderr));
        }
    }
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}

/// Runs `fake-dns` on the sealed network at `ip` and waits until it listens.
async fn start_dns(net: &SealedNet, ip: Ipv4Addr, upstream: Ipv4Addr) -> OuterContainer {
    let binary = env!("CARGO_BIN_EXE_fake-dns");
    let fixed = format!("allowed.test={upstream}");
    let other = format!("other.test={upstream}");
    let rebind = format!("rebind.test={upstream}/169.254.169.254");
    let spec = OuterSpec::new("fake-dns", DIND_IMAGE, &[&fixed, &other, &rebind])
        .entrypoint("/fake-dns")
        .bind_ro(binary, "/fake-dns")
        .ip(ip);
    let dns = net.run(spec).await.unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = dns.stdout().await.unwrap();
        if out.contains("LISTENING") {
            return dns;
        }
        assert!(
            Instant::now() < deadline,
            "fake-dns never listened: {out} {}",
            dns.stderr().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
