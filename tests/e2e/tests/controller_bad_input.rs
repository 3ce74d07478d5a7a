//! Bad input on every field of `POST /v1/sandboxes`, through the real `airlock serve` binary
//! against a real DinD over mTLS: each wrong type or out-of-range value is a 400/422 whose
//! `fields` name the field, and afterwards nothing exists: no sandbox in the API, no
//! container and no network on the node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve};
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, TESTBOX_IMAGE};

const TOKEN: &str = "e2e-bad-input-token-0123456789";

/// `(what is wrong, the body, the field its error must name)`.
fn cases() -> Vec<(&'static str, Value, &'static str)> {
    let image = TESTBOX_IMAGE;
    let with = |field: &str, value: Value| {
        let mut body = json!({ "image": image });
        body[field] = value;
        body
    };
    let limits = |value: Value| with("limits", value);
    vec![
        ("image: missing", json!({}), "image"),
        ("image: a number", json!({"image": 5}), "image"),
        ("image: empty", json!({"image": ""}), "image"),
        ("image: malformed", json!({"image": "Bad Ref!"}), "image"),
        (
            "image: not on the node",
            json!({"image": "airlock/absent:dev"}),
            "image",
        ),
        ("cmd: a string", with("cmd", json!("sleep 1")), "cmd"),
        (
            "cmd: a number inside",
            with("cmd", json!(["sleep", 1])),
            "cmd[1]",
        ),
        ("cmd: too many", with("cmd", json!(vec!["x"; 257])), "cmd"),
        ("cmd: NUL", with("cmd", json!(["a\u{0}b"])), "cmd[0]"),
        ("env: an array", with("env", json!(["A=1"])), "env"),
        ("env: a number value", with("env", json!({"A": 1})), "env.A"),
        (
            "env: bad name",
            with("env", json!({"1BAD": "x"})),
            "env.1BAD",
        ),
        (
            "env: NUL value",
            with("env", json!({"OK": "a\u{0}"})),
            "env.OK.value",
        ),
        (
            "policy: given",
            with("policy", json!({"mode": "enforce"})),
            "policy",
        ),
        ("limits: a number", limits(json!(5)), "limits"),
        (
            "limits.cpus: a string",
            limits(json!({"cpus": "two"})),
            "limits.cpus",
        ),
        (
            "limits.cpus: zero",
            limits(json!({"cpus": 0})),
            "limits.cpus",
        ),
        (
            "limits.cpus: negative",
            limits(json!({"cpus": -1})),
            "limits.cpus",
        ),
        (
            "limits.cpus: too many",
            limits(json!({"cpus": 1000})),
            "limits.cpus",
        ),
        (
            "limits.memory_mb: negative",
            limits(json!({"memory_mb": -5})),
            "limits.memory_mb",
        ),
        (
            "limits.memory_mb: zero",
            limits(json!({"memory_mb": 0})),
            "limits.memory_mb",
        ),
        (
            "limits.memory_mb: huge",
            limits(json!({"memory_mb": 1_000_000_000_000_u64})),
            "limits.memory_mb",
        ),
        (
            "limits.memory_mb: fractional",
            limits(json!({"memory_mb": 1.5})),
            "limits.memory_mb",
        ),
        (
            "limits.pids: zero",
            limits(json!({"pids": 0})),
            "limits.pids",
        ),
        (
            "limits.pids: huge",
            limits(json!({"pids": 100_000_000})),
            "limits.pids",
        ),
        (
            "limits.pids: a string",
            limits(json!({"pids": "many"})),
            "limits.pids",
        ),
        (
            "limits.disk_mb: a string",
            limits(json!({"disk_mb": "x"})),
            "limits.disk_mb",
        ),
        (
            "limits.disk_mb: disabled",
            limits(json!({"disk_mb": 100})),
            "limits.disk_mb",
        ),
        (
            "limits: unknown key",
            limits(json!({"gpus": 1})),
            "limits.gpus",
        ),
        (
            "timeout_s: negative",
            with("timeout_s", json!(-1)),
            "timeout_s",
        ),
        ("timeout_s: zero", with("timeout_s", json!(0)), "timeout_s"),
        (
            "timeout_s: huge",
            with("timeout_s", json!(10_000_000_000_u64)),
            "timeout_s",
        ),
        (
            "timeout_s: a string",
            with("timeout_s", json!("1h")),
            "timeout_s",
        ),
        (
            "idle_timeout_s: zero",
            with("idle_timeout_s", json!(0)),
            "idle_timeout_s",
        ),
        (
            "idle_timeout_s: a string",
            with("idle_timeout_s", json!("x")),
            "idle_timeout_s",
        ),
        (
            "idle_timeout_s: beyond the timeout",
            json!({"image": image, "timeout_s": 10, "idle_timeout_s": 20}),
            "idle_timeout_s",
        ),
        ("labels: an array", with("labels", json!(["a"])), "labels"),
        (
            "labels: a number value",
            with("labels", json!({"a": 1})),
            "labels.a",
        ),
        (
            "labels: reserved prefix",
            with("labels", json!({"airlock.owner": "x"})),
            "labels.airlock.owner",
        ),
        (
            "read_only_rootfs: a string",
            with("read_only_rootfs", json!("yes")),
            "read_only_rootfs",
        ),
        (
            "selftest: unknown mode",
            with("selftest", json!("sometimes")),
            "selftest",
        ),
        ("unknown field", with("gpu", json!(1)), "gpu"),
    ]
}

#[tokio::test]
async fn every_bad_field_is_named_and_nothing_is_created() {
    let mut timing = Timing::start("controller_bad_input");
    let binary = airlock_binary().await;
    let dind = dind_with_testbox(DindOptions::new("bad-input"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&binary, &dind, data.path(), TOKEN);
    let (addr, _log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let mut wrong = Vec::new();
    for (what, body, field) in cases() {
        let (status, reply) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
        let named: Vec<&str> = reply["fields"]
            .as_array()
            .map(|fields| fields.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default();
        if !(status == 400 || status == 422) || !named.contains(&field) {
            wrong.push(format!("{what}: {status} {reply}"));
        }
    }
    // Not JSON at all: a 400 without a field.
    let (status, reply) = raw_post(addr, "{\"image\": ").await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"], "invalid_json", "{reply}");
    assert!(
        wrong.is_empty(),
        "not named as expected:\n{}",
        wrong.join("\n")
    );
    timing.phase("bad-requests");

    // Nothing was created: no sandbox, no container, no network (the DinD's own networks
    // aside), and a valid request still works afterwards.
    let (status, page) = http(addr, TOKEN, "GET", "/v1/sandboxes", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"], json!([]), "{page}");
    let containers = dind
        .docker()
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..ListContainersOptions::default()
        }))
        .await
        .unwrap();
    assert!(containers.is_empty(), "{containers:?}");
    let networks = dind
        .docker()
        .list_networks(None::<ListNetworksOptions>)
        .await
        .unwrap();
    let extra: Vec<_> = networks
        .iter()
        .filter_map(|n| n.name.as_deref())
        .filter(|name| !["bridge", "host", "none"].contains(name))
        .collect();
    assert!(extra.is_empty(), "{extra:?}");
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["true"]});
    let (status, reply) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let id = reply["id"].as_str().unwrap();
    let (status, _) = http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204);
    child.kill().await.unwrap();
    timing.phase("verify-clean");
}

/// A POST with a raw (not necessarily JSON) body.
async fn raw_post(addr: std::net::SocketAddr, body: &str) -> (u16, Value) {
    use test_support::upstream::connect;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "POST /v1/sandboxes HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(e2e::serve::DEADLINE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
