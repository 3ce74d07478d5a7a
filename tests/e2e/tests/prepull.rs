//! The start-up pre-pull against a fresh DinD over mTLS, through the real `airlock serve`:
//! `/readyz` answers while a ~40 MB bundle is still loading, a create for it gives up after
//! `AIRLOCK_IMAGE_WAIT` with `503 image_loading`, `GET /v1/images` shows the bytes moving and
//! then `ready` with the recorded digest, after which the same create runs to exit 0. A
//! truncated archive in the same folder is refused, so the image only it holds ends `missing`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with, DEADLINE};
use e2e::Timing;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tokio::process::{Child, Command};

const TOKEN: &str = "e2e-prepull-token-0123456789";

/// Removes the host image built for the test.
struct HostImage(String);

impl Drop for HostImage {
    fn drop(&mut self) {
        drop(
            std::process::Command::new("docker")
                .args(["rmi", "-f", &self.0])
                .output(),
        );
    }
}

async fn docker(args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `e2e-prepull-<run>:big`: the testbox plus 40 MB of random bytes, saved into `bundles`.
async fn big_bundle(bundles: &Path) -> HostImage {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let tag = format!("e2e-prepull-{}:big", &run[..12]);
    let guard = HostImage(tag.clone());
    let ctx = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..40_000_000u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    std::fs::write(ctx.path().join("blob"), blob).unwrap();
    let dockerfile = format!("FROM {TESTBOX_IMAGE}\nCOPY blob /blob\n");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    docker(&["build", "-q", "-t", &tag, ctx.path().to_str().unwrap()]).await;
    let out = bundles.join("big.tar");
    docker(&["save", "-o", out.to_str().unwrap(), &tag]).await;
    guard
}

/// A `docker save` of the testbox with its last 10 KiB cut off.
async fn truncated_testbox(bundles: &Path) {
    let out = bundles.join("testbox-truncated.tar");
    docker(&["save", "-o", out.to_str().unwrap(), TESTBOX_IMAGE]).await;
    let len = std::fs::metadata(&out).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    file.set_len(len - 10 * 1024).unwrap();
}

fn spawn(binary: &Path, dind: &Dind, data: &Path, bundles: &Path, images: &str) -> Child {
    let bundles = bundles.to_str().unwrap();
    let extra = [
        ("AIRLOCK_IMAGES", images),
        ("AIRLOCK_BUNDLE_DIR", bundles),
        ("AIRLOCK_IMAGE_WAIT", "1ms"),
    ];
    spawn_serve_with(binary, dind, data, TOKEN, &extra)
}

fn row<'a>(images: &'a Value, image: &str) -> &'a Value {
    images["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["image"] == image)
        .unwrap_or_else(|| panic!("no {image} in {images}"))
}

#[tokio::test]
async fn prepull_loads_bundles_beside_a_ready_api() {
    let mut timing = Timing::start("prepull_loads_bundles_beside_a_ready_api");
    let binary = airlock_binary().await;
    let bundles = tempfile::tempdir().unwrap();
    let big = big_bundle(bundles.path()).await;
    truncated_testbox(bundles.path()).await;
    timing.phase("bundles");
    let dind = Dind::start(DindOptions::new("prepull")).await.unwrap();
    timing.phase("dind-start");
    let data = tempfile::tempdir().unwrap();
    let images = format!("{},{TESTBOX_IMAGE}", big.0);
    let mut child = spawn(&binary, &dind, data.path(), bundles.path(), &images);
    let (addr, log) = listen_addr(&mut child).await;

    // Ready at once, while the big image is still pending or loading.
    let (status, _) = http(addr, TOKEN, "GET", "/readyz", None).await;
    assert_eq!(status, 200);
    let create = json!({"image": big.0, "cmd": ["true"]});
    let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create.clone())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "image_loading", "{body}");
    timing.phase("serve-up");

    let deadline = Instant::now() + DEADLINE * 2;
    let mut saw_bytes = false;
    let listed = loop {
        let (status, listed) = http(addr, TOKEN, "GET", "/v1/images", None).await;
        assert_eq!(status, 200);
        let big_row = row(&listed, &big.0);
        saw_bytes |= big_row["bytes_done"].as_u64().unwrap() > 0;
        if !["pending", "loading"].contains(&big_row["status"].as_str().unwrap())
            && !["pending", "loading"]
                .contains(&row(&listed, TESTBOX_IMAGE)["status"].as_str().unwrap())
        {
            break listed;
        }
        assert!(Instant::now() < deadline, "pre-pull too slow: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    timing.phase("prepull");
    let big_row = row(&listed, &big.0);
    assert_eq!(big_row["status"], "ready", "{listed}");
    assert_eq!(big_row["source"], "bundle", "{listed}");
    assert!(saw_bytes || big_row["bytes_total"].as_u64().unwrap() > 40_000_000);
    let recorded = &listed["recorded"][0];
    assert_eq!(recorded["reference"], big.0.as_str());
    assert_eq!(big_row["digest"], recorded["image_id"], "{listed}");
    let testbox = row(&listed, TESTBOX_IMAGE);
    assert_eq!(testbox["status"], "missing", "{listed}");

    let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    let (status, ended) = http(
        addr,
        TOKEN,
        "GET",
        &format!("/v1/sandboxes/{id}/wait"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["exit_code"], 0, "{ended}");
    let (status, _) = http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert!(status == 200 || status == 204, "{status}");
    timing.phase("sandbox");

    drop(child);
    let log = log.await.unwrap();
    assert!(log.contains("Bundle archive refused"), "{log}");
}
