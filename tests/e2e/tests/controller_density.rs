//! Density: 100 sleeping testbox sandboxes and a warm pool of 100 ready members alive at once
//! on one DinD node (200 containers, 200 /29 networks), through the API of the real
//! `airlock serve` binary. The sandboxes are created cold (they carry a label, which no member
//! can take) while the pool fills beside them; one more create is then served warm by a
//! member. Everything created is deleted, with nothing left behind but the pool: no sandbox
//! row or subnet allocation, and on the node only the ready members' containers and networks.
//! Creates and deletes run with bounded concurrency; the timing figures go to stderr
//! (`density ...` lines).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use airlock::config::DEFAULT_NODE;
use airlock::config::{DatabaseConfig, DEFAULT_SQLITE_FILE};
use airlock::docker::spec::pool::LABEL_MEMBER;
use airlock::docker::spec::LABEL_NODE;
use airlock::store::Store;
use bollard::query_parameters::ListContainersOptions;
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with};
use e2e::stats::{ms, Latencies};
use e2e::{dind_with_testbox, Timing};
use futures_util::{stream, StreamExt};
use serde_json::json;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

const TOKEN: &str = "e2e-density-token-0123456789";
/// Sandboxes alive at once.
const SANDBOXES: usize = 100;
/// Ready members kept beside them.
const MEMBERS: u64 = 100;
/// Requests in flight at once (the node has two cores; more only queues in dockerd).
const CONCURRENCY: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sandboxes_and_a_hundred_members_alive_at_once_then_only_the_pool_left() {
    let mut timing = Timing::start("controller_density");
    let binary = airlock_binary().await;
    let dind = dind_with_testbox(DindOptions::new("controller-density"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let pools = json!([{"image": TESTBOX_IMAGE, "size": MEMBERS, "max_idle_s": 3600}]);
    let pools = pools.to_string();
    let vars = [("AIRLOCK_POOLS", pools.as_str())];
    let mut child = spawn_serve_with(&binary, &dind, data.path(), TOKEN, &vars);
    let (addr, _log) = listen_addr(&mut child).await;
    timing.phase("serve-up");
    let pool_started = Instant::now();

    let started = Instant::now();
    let created: Vec<(String, Duration)> = stream::iter(0..SANDBOXES)
        .map(|_| create(addr))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let create_wall = started.elapsed();
    timing.phase("create-100");
    report(
        "create",
        created.iter().map(|(_, d)| *d).collect(),
        create_wall,
    );

    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, pools) = http(addr, TOKEN, "GET", "/v1/pools", None).await;
        assert_eq!(status, 200, "{pools}");
        if pools[0]["ready"] == MEMBERS {
            break;
        }
        assert!(Instant::now() < deadline, "the pool did not fill: {pools}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "density pool of {MEMBERS} ready {:.1}s after the start (beside the creates)",
        pool_started.elapsed().as_secs_f64()
    );
    timing.phase("pool-100");

    let (status, page) = http(addr, TOKEN, "GET", "/v1/sandboxes?limit=500", None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let ended: Vec<_> = items.iter().filter(|s| s["state"] != "running").collect();
    assert!(ended.is_empty(), "sandboxes not running: {ended:?}");
    assert_eq!(items.len(), SANDBOXES);
    let members = usize::try_from(MEMBERS).unwrap();
    assert_eq!(
        running_containers(&dind).await,
        SANDBOXES + members,
        "all alive at once"
    );
    timing.phase("verify-alive");

    // At this density a create is still served warm.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "600"]});
    let started = Instant::now();
    let (status, warm) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, 201, "{warm}");
    eprintln!(
        "density warm claim beside 200 containers: {:?}",
        started.elapsed()
    );
    let (_, pools) = http(addr, TOKEN, "GET", "/v1/pools", None).await;
    assert_eq!(pools[0]["claims"], 1, "{pools}");
    let warm_id = warm["id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let ids = created.iter().map(|(id, _)| id.clone()).chain([warm_id]);
    let deletes: Vec<Duration> = stream::iter(ids)
        .map(|id| delete(addr, id))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let delete_wall = started.elapsed();
    timing.phase("delete-101");
    report("delete", deletes, delete_wall);

    let (status, page) = http(addr, TOKEN, "GET", "/v1/sandboxes?limit=500", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    // Only the pool is left: its ready members (refilled after the claim).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (containers, networks) = labelled_objects(&dind).await;
        let only_members = containers.iter().chain(&networks).all(|member| *member);
        if only_members && containers.len() == members && networks.len() == members {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left on the node: {} containers, {} networks (member or not: {containers:?} {networks:?})",
            containers.len(),
            networks.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every sandbox's subnet is free again once the deletes' background teardowns (or the
    // reconciler, for one cut short) have removed the rows: read the server's store beside it.
    let store = Store::connect(&DatabaseConfig::Sqlite {
        path: data.path().join(DEFAULT_SQLITE_FILE),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = store.subnet_allocations().await.unwrap();
        if held.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "subnets still held: {held:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().await.unwrap();
    store.close().await;
    timing.phase("verify-clean");
}

/// Creates one sleeping sandbox and returns its id and the request's latency.
async fn create(addr: SocketAddr) -> (String, Duration) {
    // A label keeps it off the pool (labels are fixed at create): it is made cold.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "600"], "labels": {"density": "1"}});
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

fn node_label() -> String {
    format!("{LABEL_NODE}={DEFAULT_NODE}")
}

async fn running_containers(dind: &Dind) -> usize {
    let options = ListContainersOptions {
        filters: Some(HashMap::from([("label".to_owned(), vec![node_label()])])),
        ..ListContainersOptions::default()
    };
    dind.docker()
        .list_containers(Some(options))
        .await
        .unwrap()
        .len()
}

/// This node's labelled containers (stopped ones included) and networks, each as whether it
/// is a pool member's.
async fn labelled_objects(dind: &Dind) -> (Vec<bool>, Vec<bool>) {
    let (containers, networks) = e2e::labelled(dind.docker(), &node_label()).await;
    let member = |labels: Option<&HashMap<String, String>>| {
        labels.is_some_and(|l| l.contains_key(LABEL_MEMBER))
    };
    (
        containers
            .iter()
            .map(|c| member(c.labels.as_ref()))
            .collect(),
        networks.iter().map(|n| member(n.labels.as_ref())).collect(),
    )
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
