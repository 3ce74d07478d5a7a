//! A disk limit on a node that cannot enforce one, through the real `airlock serve` binary
//! against a real DinD over mTLS. The DinD's Docker runs overlay2 on a filesystem without XFS
//! project quotas, so `StorageOpt size` is refused there: a create asking for
//! `limits.disk_mb` (with a writable root) is answered 400 `disk_limit_unsupported` naming the
//! field (not a Docker 500), nothing is left behind (no sandbox, no container: the probe
//! container is never created there, and would be removed), the answer is the same on a
//! repeat, and a read-only create still works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bollard::query_parameters::ListContainersOptions;
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with};
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, TESTBOX_IMAGE};

const TOKEN: &str = "e2e-disk-limit-token-0123456789";

#[tokio::test]
async fn unenforceable_disk_limit_is_a_typed_refusal() {
    let mut timing = Timing::start("disk_limit");
    let binary = airlock_binary().await;
    let dind = dind_with_testbox(DindOptions::new("disk-limit"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let extra = [("AIRLOCK_MAX_DISK_MB", "1024")];
    let mut child = spawn_serve_with(&binary, &dind, data.path(), TOKEN, &extra);
    let (addr, _log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let writable = json!({
        "image": TESTBOX_IMAGE,
        "cmd": ["true"],
        "read_only_rootfs": false,
        "limits": {"disk_mb": 100},
    });
    for attempt in ["probed", "cached"] {
        let started = std::time::Instant::now();
        let (status, reply) =
            http(addr, TOKEN, "POST", "/v1/sandboxes", Some(writable.clone())).await;
        assert_eq!(status, 400, "{attempt}: {reply}");
        assert_eq!(reply["error"], "disk_limit_unsupported", "{reply}");
        let fields: Vec<&str> = reply["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["field"].as_str())
            .collect();
        assert_eq!(fields, ["limits.disk_mb"], "{reply}");
        let reason = reply["fields"][0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("storage-opt"),
            "the daemon's reason: {reply}"
        );
        eprintln!("disk_limit: {attempt} refusal in {:?}", started.elapsed());
    }
    timing.phase("refused");

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

    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["true"]});
    let (status, reply) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let id = reply["id"].as_str().unwrap();
    let (status, _): (u16, Value) =
        http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204);
    child.kill().await.unwrap();
    timing.phase("verify-clean");
}
