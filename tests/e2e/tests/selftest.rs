//! The isolation self-test (`airlock-probe`) run by the controller inside real sandboxes on a
//! real DinD over mTLS, driven through the API in-process.
//!
//! - A normal sandbox passes every check, at create (`true` and `"required"`) and on demand,
//!   and the probe container is gone afterwards.
//! - Negative control: the same sandbox container, also attached to a non-internal network
//!   that holds a test server, fails the self-test: the probe reaches the server directly.
//!   This proves the probe sees a hole when there is one.
//! - `"required"` fails closed: when the probe cannot produce a passing report, the create
//!   answers 422 and the sandbox ends `failed` with nothing left in Docker.
//!
//! Everything the probe targets is inside the DinD, the sealed outer network, or a metadata /
//! private / public address that has nowhere to go from there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use airlock::api::{app, AppState, Auth};
use airlock::sandbox::names::container_name;
use airlock::services::{Services, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bollard::models::NetworkConnectRequest;
use e2e::controller::{parts, Parts};
use e2e::{dind_with_testbox, Timing};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::{Dind, DindOptions, PROBE_IMAGE, TESTBOX_IMAGE};
use test_support::nested::{self, ContainerSpec, NestedNet, NetKind};
use tower::ServiceExt;

const TOKEN: &str = "e2e-admin-token-0123456789";
/// The test server's port on the open network.
const SERVER_PORT: u16 = 8080;
const READY_LIMIT: Duration = Duration::from_secs(20);

struct Controller {
    dind: Dind,
    state: AppState,
    /// Same store and node, but a probe image that prints no report.
    broken: AppState,
    _dir: TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

/// A DinD with the testbox and probe images, and a controller over it with `env`.
async fn controller(test: &'static str, timing: &mut Timing, env: &[(&str, &str)]) -> Controller {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    dind.load_image(PROBE_IMAGE).await.unwrap();
    timing.phase("load-probe");
    let node = dind.ip().to_string();
    // The controller's address as the node sees it: the host side of the sealed network.
    let controller_addr = SocketAddr::new(IpAddr::V4(dind.outer_network().gateway()), 8080);
    let controller_addr = controller_addr.to_string();
    let vars: Vec<(&str, &str)> = [
        ("AIRLOCK_STOP_GRACE", "1s"),
        ("AIRLOCK_SELFTEST_NODE_ADDRS", node.as_str()),
        ("AIRLOCK_SELFTEST_CONTROLLER", controller_addr.as_str()),
    ]
    .into_iter()
    .chain(env.iter().copied())
    .collect();
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &vars).await;
    let settings = Settings::from_config(&config);
    let mut broken_settings = settings.clone();
    broken_settings.selftest.probe_image = TESTBOX_IMAGE.to_owned();
    let services = Services::new(store.clone(), docker.clone(), settings);
    let broken = Services::new(store, docker, broken_settings);
    let auth = || Auth::new(Some(airlock::config::Secret::new(TOKEN)), admin);
    timing.phase("controller-up");
    Controller {
        dind,
        state: AppState::new(services, auth()),
        broken: AppState::new(broken, auth()),
        _dir: dir,
    }
}

async fn call(state: &AppState, method: Method, uri: &str, body: Option<Value>) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply { status, body }
}

impl Controller {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        call(&self.state, method, uri, body).await
    }

    /// Creates a `sleep 300` sandbox with `selftest` (omitted when `Null`).
    async fn create(&self, selftest: Value) -> Reply {
        let mut body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
        if !selftest.is_null() {
            body["selftest"] = selftest;
        }
        self.call(Method::POST, "/v1/sandboxes", Some(body)).await
    }

    /// Containers and networks in the nested daemon labelled for sandbox `id`, once a delete's
    /// background teardown has finished (`e2e::objects_after_delete`).
    async fn leftovers(&self, id: &str) -> (usize, usize) {
        e2e::objects_after_delete(&self.dind, id).await
    }
}

/// The report's checks as `(check, target, result, outcome, detail)`.
fn checks(selftest: &Value) -> Vec<(String, String, String, String, String)> {
    let field = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_owned();
    selftest["report"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no report: {selftest}"))
        .iter()
        .map(|c| {
            (
                field(c, "check"),
                field(c, "target"),
                field(c, "result"),
                field(c, "outcome"),
                field(c, "detail"),
            )
        })
        .collect()
}

/// Prints every check (the lead's note lists each probe and its result).
fn print_report(label: &str, selftest: &Value) {
    for (check, target, result, outcome, detail) in checks(selftest) {
        eprintln!("selftest-report {label} {check} {target} {result} {outcome} ({detail})");
    }
}

fn assert_all_passed(selftest: &Value) {
    assert_eq!(selftest["status"], "passed", "{selftest:#}");
    let failed: Vec<_> = checks(selftest)
        .into_iter()
        .filter(|c| c.2 != "pass")
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
}

#[tokio::test]
async fn selftest_passes_for_a_normal_sandbox() {
    let mut timing = Timing::start("selftest_passes_for_a_normal_sandbox");
    let c = controller("selftest_pass", &mut timing, &[]).await;

    // Another sandbox first, so the probe has a neighbour to try.
    let other = c.create(Value::Null).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let other_addr = other.body["address"].as_str().unwrap().to_owned();

    let created = c.create(json!(true)).await;
    timing.phase("create-with-selftest");
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["state"], "running");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let selftest = &created.body["selftest"];
    print_report("normal", selftest);
    assert_all_passed(selftest);
    let found = checks(selftest);
    let names: Vec<&str> = found.iter().map(|c| c.0.as_str()).collect();
    for want in [
        "gateway_port",
        "proxy_admin",
        "dind_port",
        "other_sandbox",
        "controller",
        "metadata",
        "private_range",
        "dns_gateway",
        "dns_public",
        "dns_lookup",
        "icmp_gateway",
        "icmp_raw_socket",
    ] {
        assert!(names.contains(&want), "no {want} check in {names:?}");
    }
    // The node and the neighbour are tried, and reported by role, never by address.
    assert!(found
        .iter()
        .any(|c| c.0 == "dind_port" && c.1 == "node-1:2376"));
    assert!(found
        .iter()
        .any(|c| c.0 == "other_sandbox" && c.1.starts_with("neighbour-1:")));
    let report = selftest.to_string();
    assert!(
        !report.contains(&other_addr),
        "a neighbour's address: {report}"
    );
    assert!(
        !report.contains(&c.dind.ip().to_string()),
        "the node's address: {report}"
    );
    // No upstream is configured, so no reachable check is planned.
    assert!(!names.contains(&"upstream_via_proxy"));
    // Without NET_RAW no raw socket opens.
    let raw = found.iter().find(|c| c.0 == "icmp_raw_socket").unwrap();
    assert_eq!(raw.3, "unavailable", "{raw:?}");

    // On demand, then read back, alone and on the sandbox.
    let uri = format!("/v1/sandboxes/{id}/selftest");
    let again = c.call(Method::POST, &uri, None).await;
    timing.phase("selftest-on-demand");
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_all_passed(&again.body);
    let stored = c.call(Method::GET, &uri, None).await;
    assert_eq!(stored.status, StatusCode::OK);
    assert_eq!(stored.body["ran_at"], again.body["ran_at"]);
    let sandbox = c
        .call(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert_eq!(sandbox.body["selftest"]["status"], "passed");
    // The probe containers are gone: only the sandbox's own container is labelled for it.
    assert_eq!(e2e::sandbox_objects(&c.dind, &id).await, (1, 1));
    // A sandbox that never ran it has no result.
    let other_id = other.body["id"].as_str().unwrap();
    let none = c
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{other_id}/selftest"),
            None,
        )
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    // Required mode with a working probe: created, and the result is attached.
    let required = c.create(json!("required")).await;
    assert_eq!(required.status, StatusCode::CREATED, "{}", required.body);
    assert_all_passed(&required.body["selftest"]);
    timing.phase("required-create");

    // A stopped sandbox cannot be probed.
    c.call(Method::POST, &format!("/v1/sandboxes/{id}/stop"), None)
        .await;
    let stopped = c.call(Method::POST, &uri, None).await;
    assert_eq!(stopped.status, StatusCode::CONFLICT, "{}", stopped.body);
}

#[tokio::test]
async fn selftest_sees_a_hole_and_required_fails_closed() {
    let mut timing = Timing::start("selftest_sees_a_hole_and_required_fails_closed");
    // The deliberately misconfigured part: a plain (non-internal) bridge inside the DinD with
    // a test server on it, configured as the self-test's upstream.
    let open_octet = 200;
    let server_ip = format!("10.213.{open_octet}.10");
    let upstream = format!("{server_ip}:{SERVER_PORT}");
    let c = controller(
        "selftest_hole",
        &mut timing,
        &[("AIRLOCK_SELFTEST_UPSTREAM", upstream.as_str())],
    )
    .await;
    let docker = c.dind.docker();
    let open = nested::create_network(docker, "selftest-open", open_octet, NetKind::Bridge)
        .await
        .unwrap();
    start_server(&c.dind, &open).await;
    timing.phase("open-network");

    let created = c.create(Value::Null).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/v1/sandboxes/{id}/selftest");

    // Correctly isolated, the direct path to the upstream is blocked.
    let isolated = c.call(Method::POST, &uri, None).await;
    assert_eq!(isolated.status, StatusCode::OK, "{}", isolated.body);
    print_report("isolated", &isolated.body);
    let direct = |selftest: &Value| {
        checks(selftest)
            .into_iter()
            .find(|c| c.0 == "upstream_direct")
            .unwrap()
    };
    let before = direct(&isolated.body);
    assert_eq!(
        (before.1.as_str(), before.2.as_str()),
        (upstream.as_str(), "pass")
    );

    // Misconfigure: attach the sandbox container to the open network too.
    let container = container_name(id.parse().unwrap());
    docker
        .connect_network(
            &open.name,
            NetworkConnectRequest {
                container: container.clone(),
                endpoint_config: None,
            },
        )
        .await
        .unwrap();
    let holed = c.call(Method::POST, &uri, None).await;
    timing.phase("selftest-with-hole");
    assert_eq!(holed.status, StatusCode::OK, "{}", holed.body);
    print_report("holed", &holed.body);
    assert_eq!(holed.body["status"], "failed", "{:#}", holed.body);
    let after = direct(&holed.body);
    assert_eq!(
        (after.2.as_str(), after.3.as_str()),
        ("fail", "reached"),
        "the probe must see the server through the hole: {after:?}"
    );
    assert!(holed.body["report"]["fail_count"].as_u64().unwrap() >= 1);
    // The stored result and the sandbox show the failure.
    let sandbox = c
        .call(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert_eq!(sandbox.body["selftest"]["status"], "failed");

    // Required mode fails closed when the probe cannot produce a passing report (here, an
    // image that prints none): 422, the sandbox ends failed/error, nothing left in Docker.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "selftest": "required"});
    let refused = call(&c.broken, Method::POST, "/v1/sandboxes", Some(body)).await;
    timing.phase("required-fails");
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"], "selftest_failed");
    assert_eq!(refused.body["selftest"]["status"], "error");
    assert_eq!(refused.body["sandbox"]["state"], "failed");
    assert_eq!(refused.body["sandbox"]["end_reason"]["kind"], "error");
    let failed_id = refused.body["sandbox"]["id"].as_str().unwrap().to_owned();
    assert_eq!(c.leftovers(&failed_id).await, (0, 0));
    let stored = c
        .call(Method::GET, &format!("/v1/sandboxes/{failed_id}"), None)
        .await;
    assert_eq!(stored.body["state"], "failed");
    assert_eq!(stored.body["selftest"]["status"], "error");
    // `true` (not required) with the same broken probe keeps the sandbox and records the error.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "selftest": true});
    let kept = call(&c.broken, Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(kept.status, StatusCode::CREATED, "{}", kept.body);
    assert_eq!(kept.body["state"], "running");
    assert_eq!(kept.body["selftest"]["status"], "error");
}

/// Starts a TCP server on `net` at `.10` and waits until it answers from the DinD namespace.
async fn start_server(dind: &Dind, net: &NestedNet) {
    let cmd = ["nc", "-ll", "-p", "8080", "-e", "echo", "pong"];
    let spec = ContainerSpec::new("server", TESTBOX_IMAGE, &cmd).on(net, Some(net.host(10)));
    nested::start(dind.docker(), &spec).await.unwrap();
    let (ip, port) = (net.host(10).to_string(), SERVER_PORT.to_string());
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let out = dind
            .exec_in_dind(&["busybox", "nc", "-w", "2", &ip, &port])
            .await
            .unwrap();
        if out.stdout.contains("pong") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never answered: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
