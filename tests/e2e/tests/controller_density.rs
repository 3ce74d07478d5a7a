//! Density: 200 testbox sandboxes, sleeping, alive at once on one DinD node, all created
//! through the API of the real `airlock serve` binary, then all deleted, with nothing left
//! behind: no `airlock.*` container or network on the node, no sandbox row, no subnet
//! allocation. Creates and deletes run with bounded concurrency; the timing figures go to
//! stderr (`density ...` lines).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use airlock::config::DEFAULT_NODE;
use airlock::config::{DatabaseConfig, DEFAULT_SQLITE_FILE};
use airlock::docker::spec::LABEL_NODE;
use airlock::store::Store;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve};
use e2e::stats::{ms, Latencies};
use e2e::{dind_with_testbox, Timing};
use futures_util::{stream, StreamExt};
use serde_json::json;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

const TOKEN: &str = "e2e-density-token-0123456789";
/// Sandboxes alive at once.
const SANDBOXES: usize = 200;
/// Requests in flight at once (the node has two cores; more only queues in dockerd).
const CONCURRENCY: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sandboxes_alive_at_once_then_nothing_left() {
    let mut timing = Timing::start("controller_density");
    let binary = airlock_binary().await;
    let dind = dind_with_testbox(DindOptions::new("controller-density"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&binary, &dind, data.path(), TOKEN);
    let (addr, _log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let started = Instant::now();
    let created: Vec<(String, Duration)> = stream::iter(0..SANDBOXES)
        .map(|_| create(addr))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let create_wall = started.elapsed();
    timing.phase("create-200");
    report(
        "create",
        created.iter().map(|(_, d)| *d).collect(),
        create_wall,
    );

    let (status, page) = http(addr, TOKEN, "GET", "/v1/sandboxes?limit=500", None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let ended: Vec<_> = items.iter().filter(|s| s["state"] != "running").collect();
    assert!(ended.is_empty(), "sandboxes not running: {ended:?}");
    assert_eq!(items.len(), SANDBOXES);
    assert_eq!(
        running_containers(&dind).await,
        SANDBOXES,
        "all alive at once"
    );
    timing.phase("verify-alive");

    let started = Instant::now();
    let deletes: Vec<Duration> = stream::iter(created.iter().map(|(id, _)| id.clone()))
        .map(|id| delete(addr, id))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let delete_wall = started.elapsed();
    timing.phase("delete-200");
    report("delete", deletes, delete_wall);

    let (status, page) = http(addr, TOKEN, "GET", "/v1/sandboxes?limit=500", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    assert_eq!(
        labelled_objects(&dind).await,
        (0, 0),
        "containers and networks left"
    );
    // Stop the server, then read its store: every subnet is free again.
    child.kill().await.unwrap();
    let store = Store::connect(&DatabaseConfig::Sqlite {
        path: data.path().join(DEFAULT_SQLITE_FILE),
    })
    .await
    .unwrap();
    assert_eq!(store.subnet_allocations().await.unwrap(), vec![]);
    store.close().await;
    timing.phase("verify-clean");
}

/// Creates one sleeping sandbox and returns its id and the request's latency.
async fn create(addr: SocketAddr) -> (String, Duration) {
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "600"]});
    let started = Instant::now();
    let (status, reply) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    let took = started.elapsed();
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["state"], "running", "{reply}");
    (reply["id"].as_str().unwrap().to_owned(), took)
}

async fn delete(addr: SocketAddr, id: String) -> Duration {
    let started = Instant::now();
    let (status, reply) = http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204, "{reply}");
    started.elapsed()
}

fn node_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_NODE}={DEFAULT_NODE}")],
    )])
}

async fn running_containers(dind: &Dind) -> usize {
    let options = ListContainersOptions {
        filters: Some(node_filter()),
        ..ListContainersOptions::default()
    };
    dind.docker()
        .list_containers(Some(options))
        .await
        .unwrap()
        .len()
}

/// This node's labelled (containers, networks), stopped containers included.
async fn labelled_objects(dind: &Dind) -> (usize, usize) {
    let options = ListContainersOptions {
        all: true,
        filters: Some(node_filter()),
        ..ListContainersOptions::default()
    };
    let containers = dind.docker().list_containers(Some(options)).await.unwrap();
    let options = ListNetworksOptions {
        filters: Some(node_filter()),
    };
    let networks = dind.docker().list_networks(Some(options)).await.unwrap();
    (containers.len(), networks.len())
}

/// Prints `density <what> n=.. concurrency=.. wall=..s rate=../s p50=..ms p99=..ms max=..ms`.
fn report(what: &str, sample: Vec<Duration>, wall: Duration) {
    let latencies = Latencies::new(sample);
    eprintln!(
        "density {what} n={} concurrency={CONCURRENCY} wall={:.1}s rate={:.1}/s p50={:.0}ms p99={:.0}ms max={:.0}ms",
        latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64(),
        ms(latencies.percentile(50)),
        ms(latencies.percentile(99)),
        ms(latencies.percentile(100)),
    );
}
