//! How long `DELETE /v1/sandboxes/{id}` takes on the real `airlock serve` with the network plane
//! on (the proxy's entry, the container, its /29 network with the proxy attached, the CA
//! volume), against a DinD over mTLS. Prints the p50, p99 and mean of sequential deletes of
//! running sandboxes and each step's times; asserts only that each delete succeeds, hides the
//! sandbox at once and leaves nothing behind, never a time (the machine is shared).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use airlock::docker::spec::LABEL_SANDBOX_ID;
use bollard::query_parameters::ListNetworksOptions;
use e2e::plane::{EGRESS_IMAGE, TOKEN};
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with};
use e2e::stats::{line, step_table, Latencies};
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
    // The containers go before a delete answers; the networks, CA volumes and rows follow in
    // the background, so those are polled for.
    let containers = dind.docker().list_containers(None).await.unwrap();
    let left: Vec<_> = containers
        .iter()
        .filter_map(|c| c.names.as_ref()?.first().cloned())
        .filter(|name| name.starts_with("/airlock-sbx-"))
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let filter = HashMap::from([("label".to_owned(), vec![LABEL_SANDBOX_ID.to_owned()])]);
        let options = ListNetworksOptions {
            filters: Some(filter),
        };
        let networks = dind.docker().list_networks(Some(options)).await.unwrap();
        if networks.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "networks left behind: {networks:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    timing.phase("settled");

    let took = Latencies::new(took);
    line("delete-latency", &took);
    child.kill().await.unwrap();
    step_table(&log.await.unwrap());
}
