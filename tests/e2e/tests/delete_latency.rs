//! How long `DELETE /v1/sandboxes/{id}` takes on the real `airlock serve` with the network plane
//! on (the proxy's entry, the container, its /29 network with the proxy attached, the CA
//! volume), against a DinD over mTLS. Prints the p50, p90 and max of sequential deletes of
//! running sandboxes; asserts only that each delete succeeds and leaves nothing behind, never
//! a time (the machine is shared).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::plane::{EGRESS_IMAGE, TOKEN};
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with};
use e2e::Timing;
use serde_json::json;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

/// Deletes measured.
const DELETES: usize = 10;

#[tokio::test]
async fn delete_latency_with_the_network_plane() {
    let mut timing = Timing::start("delete_latency_with_the_network_plane");
    let binary = airlock_binary().await;
    let dind = Dind::start(DindOptions::new("delete_latency"))
        .await
        .unwrap();
    for image in [TESTBOX_IMAGE, EGRESS_IMAGE] {
        dind.load_image(image).await.unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let extra = [
        ("AIRLOCK_EGRESS", "true"),
        ("RUST_LOG", "info,airlock::sandboxes=debug"),
    ];
    let mut child = spawn_serve_with(&binary, &dind, data.path(), TOKEN, &extra);
    let (addr, log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let mut took: Vec<Duration> = Vec::with_capacity(DELETES);
    for _ in 0..DELETES {
        let create = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
        let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create)).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "running", "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/sandboxes/{id}");
        let started = Instant::now();
        let (status, body) = http(addr, TOKEN, "DELETE", &path, None).await;
        took.push(started.elapsed());
        assert_eq!(status, 204, "{body}");
        let (status, _) = http(addr, TOKEN, "GET", &path, None).await;
        assert_eq!(status, 404);
    }
    timing.phase("deletes");
    let containers = dind.docker().list_containers(None).await.unwrap();
    let left: Vec<_> = containers
        .iter()
        .filter_map(|c| c.names.as_ref()?.first().cloned())
        .filter(|name| name.starts_with("/airlock-sbx-"))
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");

    took.sort();
    // The nearest-rank quantile over `percent` of the sorted times.
    let at = |percent: usize| took[(took.len() - 1) * percent / 100];
    eprintln!(
        "delete-latency n={} p50={:?} p90={:?} max={:?} all={took:?}",
        took.len(),
        at(50),
        at(90),
        took[took.len() - 1]
    );
    child.kill().await.unwrap();
    print_steps(&log.await.unwrap());
}

/// The p50 of each `Delete step done` in the controller's JSON log.
fn print_steps(log: &str) {
    let mut steps: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &event["fields"];
        if fields["message"] != "Delete step done" {
            continue;
        }
        let (Some(name), Some(us)) = (
            fields["delete.step"].as_str(),
            fields["elapsed_us"].as_u64(),
        ) else {
            continue;
        };
        steps.entry(name.to_owned()).or_default().push(us);
    }
    for (name, mut us) in steps {
        us.sort_unstable();
        eprintln!(
            "delete-step {name} n={} p50={}ms max={}ms",
            us.len(),
            us[us.len() / 2] / 1000,
            us[us.len() - 1] / 1000
        );
    }
}
