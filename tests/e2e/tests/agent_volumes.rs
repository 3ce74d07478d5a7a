//! Volumes as workspaces, checked from inside real sandboxes on a DinD over mTLS: a
//! read-write mount is the workdir and owned by the sandbox user; one live sandbox holds a
//! volume read-write (409 `volume_in_use` for a second, and for a delete); after A ends, B
//! mounts it read-only and reads A's file, where `touch` fails with EROFS, mountinfo shows
//! `ro` and a remount fails; another tenant gets 404 for the volume and cannot name it in a
//! mount; a volume sampled over its size (soft quota, sampled at the sandbox's end) refuses
//! new read-write mounts with 409 `volume_over_quota`; a home volume keeps `HOME` across
//! sandboxes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use e2e::agents::AgentApi;
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, TESTBOX_IMAGE};

/// Longest any wait on the node may take.
const DEADLINE: Duration = Duration::from_secs(90);

async fn controller(test: &'static str, timing: &mut Timing) -> AgentApi {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    AgentApi::start(dind, &[], timing).await
}

async fn sandbox(c: &AgentApi, token: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    c.call(token, Method::POST, "/v1/sandboxes", Some(body))
        .await
}

async fn running(c: &AgentApi, token: &str, extra: Value) -> String {
    let (status, made) = sandbox(c, token, extra).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

/// Stops sandbox `id` and waits until it has ended.
async fn end(c: &AgentApi, token: &str, id: &str) {
    let uri = format!("/v1/sandboxes/{id}/stop");
    let (status, body) = c.call(token, Method::POST, &uri, None).await;
    assert!(status.is_success(), "{status}: {body}");
    let uri = format!("/v1/sandboxes/{id}/wait?timeout_s=60");
    let (status, body) = c.call(token, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn agent_volumes_share_lock_readonly_quota_home() {
    let mut timing = Timing::start("agent_volumes");
    let c = controller("agent_volumes", &mut timing).await;
    let (_, a) = c.member("tenant-a").await;
    let (_, b) = c.member("tenant-b").await;
    let repo = c.volume(&a, "repo", 64).await;

    // A writes into its workspace, which is the workdir and owned by the sandbox user.
    let mount = json!({"mounts": [{"volume": "repo", "target": "/workspace"}]});
    let writer = running(&c, &a, mount.clone()).await;
    let (code, out) = c
        .sh(
            &a,
            &writer,
            "pwd; echo from-a > a.txt && stat -c %u /workspace",
        )
        .await;
    assert_eq!((code, out.as_str()), (0, "/workspace\n65534\n"), "{out}");
    let (status, seen) = c
        .call(&a, Method::GET, &format!("/v1/volumes/{repo}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(
        seen["in_use_by"][0]["sandbox_id"],
        writer.as_str(),
        "{seen}"
    );
    assert_eq!(seen["in_use_by"][0]["read_only"], false, "{seen}");
    timing.phase("writer");

    // One live read-write holder: a second is refused, and so is a delete.
    let (status, refused) = sandbox(&c, &a, mount.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "volume_in_use", "{refused}");
    let (status, refused) = c
        .call(&a, Method::DELETE, &format!("/v1/volumes/{repo}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "volume_in_use", "{refused}");

    // Tenant B: A's volume does not exist for B, by id or by name.
    for method in [Method::GET, Method::DELETE] {
        let uri = format!("/v1/volumes/{repo}");
        let (status, body) = c.call(&b, method, &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, refused) = sandbox(&c, &b, mount.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(refused["error"], "volume_not_found", "{refused}");
    let (status, listed) = c.call(&b, Method::GET, "/v1/volumes", None).await;
    assert_eq!((status, listed), (StatusCode::OK, json!([])));
    timing.phase("refusals");

    // A ends; B (another of A's sandboxes) mounts the volume read-only and reads A's file.
    end(&c, &a, &writer).await;
    let ro = json!({"mounts": [{"volume": "repo", "target": "/data", "read_only": true}]});
    let reader = running(&c, &a, ro).await;
    let (code, out) = c.sh(&a, &reader, "cat /data/a.txt").await;
    assert_eq!((code, out.as_str()), (0, "from-a\n"));
    let (code, out) = c.sh(&a, &reader, "touch /data/x").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let (code, out) = c
        .sh(&a, &reader, "grep ' /data ' /proc/self/mountinfo")
        .await;
    assert_eq!(code, 0, "{out}");
    let options = out.split_whitespace().nth(5).unwrap_or_default();
    assert!(options.split(',').any(|o| o == "ro"), "{out}");
    let (code, out) = c.sh(&a, &reader, "mount -o remount,rw /data").await;
    assert_ne!(code, 0, "a remount must fail: {out}");
    let (code, out) = c.sh(&a, &reader, "touch /data/x").await;
    assert_ne!(code, 0, "still read-only after the remount attempt: {out}");
    timing.phase("read-only");

    // Soft quota: a 1 MiB volume filled with 2 MiB is sampled at the sandbox's end, and then
    // refuses read-write mounts (read-only still works).
    let small = c.volume(&a, "small", 1).await;
    let fill = json!({"mounts": [{"volume": "small", "target": "/w"}]});
    let filler = running(&c, &a, fill.clone()).await;
    let (code, out) = c
        .sh(&a, &filler, "dd if=/dev/zero of=/w/big bs=1M count=2 2>&1")
        .await;
    assert_eq!(code, 0, "a soft quota does not stop the write: {out}");
    end(&c, &a, &filler).await;
    let started = Instant::now();
    loop {
        let uri = format!("/v1/volumes/{small}");
        let (_, seen) = c.call(&a, Method::GET, &uri, None).await;
        if seen["used_bytes"].as_u64().unwrap_or(0) >= 2 * 1024 * 1024 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "never sampled: {seen}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, refused) = sandbox(&c, &a, fill).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "volume_over_quota", "{refused}");
    let ro = json!({"mounts": [{"volume": "small", "target": "/w", "read_only": true}]});
    let small_reader = running(&c, &a, ro).await;
    timing.phase("soft-quota");

    // A home volume keeps HOME across sandboxes.
    c.volume(&a, "state", 16).await;
    let home = json!({"home": {"volume": "state"}});
    let first = running(&c, &a, home.clone()).await;
    let (code, out) = c
        .sh(
            &a,
            &first,
            "mkdir -p $HOME/.config && echo kept > $HOME/.config/x && pwd",
        )
        .await;
    assert_eq!(code, 0, "{out}");
    end(&c, &a, &first).await;
    let second = running(&c, &a, home).await;
    let (code, out) = c.sh(&a, &second, "cat $HOME/.config/x").await;
    assert_eq!((code, out.as_str()), (0, "kept\n"));
    timing.phase("home-volume");

    for id in [&writer, &reader, &filler, &small_reader, &first, &second] {
        c.delete(&a, &format!("/v1/sandboxes/{id}")).await;
    }
    let (_, listed) = c.call(&a, Method::GET, "/v1/volumes", None).await;
    for volume in listed.as_array().unwrap() {
        let id = volume["id"].as_str().unwrap();
        c.delete(&a, &format!("/v1/volumes/{id}")).await;
    }
    timing.phase("cleanup");
}
