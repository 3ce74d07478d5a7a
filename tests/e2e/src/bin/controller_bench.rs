//! The controller benchmark (`bench/controller/run.sh`): against one real DinD over mTLS, in
//! one run, it compares
//! - a trivial sandbox (testbox, `true`) created, started and waited for through the API of
//!   the real `airlock serve` binary, against the same Docker requests sent directly with
//!   bollard (the network and container bodies come from the same pure builders,
//!   `airlock::docker::spec`): create-to-running and create-to-exited, p50/p99/mean, and the
//!   ratio API / direct. The two are interleaved so drift on the machine hits both alike;
//! - 50 concurrent creates through the API (sleeping sandboxes): errors, p50, p99, then all
//!   deleted and the node checked for leftovers;
//! - the controller's RSS when idle, before and after that load.
//!
//! It prints figures (`bench ...` lines and a summary); it is not a test and asserts nothing
//! except that the harness itself works. Usage:
//! `controller_bench [--airlock PATH] [--iterations N] [--concurrent N]`.
// A benchmark driver: a failed harness step must stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock::config::Config;
use airlock::config::DEFAULT_NODE;
use airlock::docker::spec::{self, Placement, LABEL_NODE};
use airlock::sandbox::names;
use airlock::sandbox::subnet::SandboxSubnet;
use airlock::sandbox::{SandboxId, SandboxRequest, SandboxSpec};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with};
use e2e::stats::{line, mib, ms, rss_kib, step_table, Latencies};
use futures_util::{stream, StreamExt};
use serde_json::json;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

const TOKEN: &str = "controller-bench-token-0123456789";
/// The node name the direct peer labels its objects with (not the controller's).
const DIRECT_NODE: &str = "bench-direct";

struct Args {
    airlock: Option<PathBuf>,
    iterations: usize,
    concurrent: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let binary = match &args.airlock {
        Some(path) => path.clone(),
        None => airlock_binary().await,
    };
    println!("bench airlock={}", binary.display());
    let dind = Dind::start(DindOptions::new("controller-bench"))
        .await
        .unwrap();
    dind.load_image(TESTBOX_IMAGE).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    // The create steps' DEBUG timings (`Create step done`) are summarised at the end.
    let steps_log = [("RUST_LOG", "info,airlock::sandboxes=debug")];
    let mut child = spawn_serve_with(&binary, &dind, data.path(), TOKEN, &steps_log);
    let pid = child.id().unwrap();
    let (addr, log) = listen_addr(&mut child).await;
    let (status, _) = http(addr, TOKEN, "GET", "/v1/sandboxes", None).await;
    assert_eq!(status, 200);
    let rss_idle = rss_kib(pid);
    println!("bench rss idle-after-start={:.1}MiB", mib(rss_idle));

    // Warm both paths once (first-use costs: image layers, connection set-up).
    api_once(addr).await;
    direct_once(dind.docker(), 0).await;

    let mut api_running = Vec::new();
    let mut api_exited = Vec::new();
    let mut direct_running = Vec::new();
    let mut direct_exited = Vec::new();
    for i in 0..args.iterations {
        let (running, exited) = api_once(addr).await;
        api_running.push(running);
        api_exited.push(exited);
        let (running, exited) = direct_once(dind.docker(), i + 1).await;
        direct_running.push(running);
        direct_exited.push(exited);
    }
    let api_running = Latencies::new(api_running);
    let api_exited = Latencies::new(api_exited);
    let direct_running = Latencies::new(direct_running);
    let direct_exited = Latencies::new(direct_exited);
    line("api create-to-running", &api_running);
    line("direct create-to-running", &direct_running);
    line("api create-to-exited", &api_exited);
    line("direct create-to-exited", &direct_exited);
    ratio("create-to-running", &api_running, &direct_running);
    ratio("create-to-exited", &api_exited, &direct_exited);

    // Concurrent creates through the API.
    let started = Instant::now();
    let created: Vec<Result<(String, Duration), String>> = stream::iter(0..args.concurrent)
        .map(|_| create_sleeping(addr))
        .buffer_unordered(args.concurrent)
        .collect()
        .await;
    let wall = started.elapsed();
    let errors: Vec<&String> = created.iter().filter_map(|r| r.as_ref().err()).collect();
    let ok: Vec<&(String, Duration)> = created.iter().filter_map(|r| r.as_ref().ok()).collect();
    let latencies = Latencies::new(ok.iter().map(|(_, d)| *d).collect());
    println!(
        "bench concurrent-create n={} errors={} wall={:.2}s p50={:.0}ms p99={:.0}ms max={:.0}ms",
        args.concurrent,
        errors.len(),
        wall.as_secs_f64(),
        ms(latencies.percentile(50)),
        ms(latencies.percentile(99)),
        ms(latencies.percentile(100)),
    );
    for error in errors.iter().take(5) {
        println!("bench concurrent-create error: {error}");
    }
    println!("bench rss under-load={:.1}MiB", mib(rss_kib(pid)));

    // Deletes of running sandboxes, one at a time, interleaved with the same removal sent
    // directly (a running container and its network); the rest go concurrently below.
    let sequential = args.iterations.min(ok.len());
    let mut api_delete = Vec::new();
    let mut direct_delete = Vec::new();
    for (i, (id, _)) in ok.iter().take(sequential).enumerate() {
        let started = Instant::now();
        let (status, reply) =
            http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
        api_delete.push(started.elapsed());
        assert_eq!(status, 204, "{reply}");
        direct_delete.push(direct_delete_once(dind.docker(), args.iterations + 1 + i).await);
    }
    let api_delete = Latencies::new(api_delete);
    let direct_delete = Latencies::new(direct_delete);
    line("api delete", &api_delete);
    line("direct delete", &direct_delete);
    ratio("delete", &api_delete, &direct_delete);

    let deletes: Vec<u16> = stream::iter(ok.iter().skip(sequential).map(|(id, _)| id.clone()))
        .map(|id| async move {
            http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None)
                .await
                .0
        })
        .buffer_unordered(args.concurrent)
        .collect()
        .await;
    let failed_deletes = deletes.iter().filter(|s| **s != 204).count();
    let (containers, networks) = settled_leftovers(dind.docker(), DEFAULT_NODE).await;
    println!(
        "bench concurrent-delete failed={failed_deletes} leftovers containers={containers} networks={networks}"
    );
    // The same concurrent load sent directly, on the node as empty as the API's found it.
    let direct = direct_concurrent(dind.docker(), args.concurrent, 2 * args.iterations + 2).await;
    let rss_after = rss_kib(pid);
    println!("bench rss idle-after-load={:.1}MiB", mib(rss_after));

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| create-to-running p50 API / direct | {:.0} ms / {:.0} ms ({:.2}x) |",
        ms(api_running.percentile(50)),
        ms(direct_running.percentile(50)),
        ratio_of(&api_running, &direct_running, 50)
    );
    println!(
        "| create-to-exited p50 API / direct | {:.0} ms / {:.0} ms ({:.2}x) |",
        ms(api_exited.percentile(50)),
        ms(direct_exited.percentile(50)),
        ratio_of(&api_exited, &direct_exited, 50)
    );
    println!(
        "| {} concurrent creates | {} errors, p50 {:.0} ms, p99 {:.0} ms |",
        args.concurrent,
        errors.len(),
        ms(latencies.percentile(50)),
        ms(latencies.percentile(99))
    );
    println!(
        "| {} concurrent creates direct | p50 {:.0} ms, p99 {:.0} ms (API/direct p99 {:.2}x) |",
        args.concurrent,
        ms(direct.percentile(50)),
        ms(direct.percentile(99)),
        ratio_of(&latencies, &direct, 99)
    );
    println!(
        "| delete p50 API / direct (running) | {:.0} ms / {:.0} ms ({:.2}x) |",
        ms(api_delete.percentile(50)),
        ms(direct_delete.percentile(50)),
        ratio_of(&api_delete, &direct_delete, 50)
    );
    println!("| leftovers after delete | {containers} containers, {networks} networks |");
    println!(
        "| idle RSS before / after load | {:.1} MiB / {:.1} MiB |",
        mib(rss_idle),
        mib(rss_after)
    );
    child.kill().await.unwrap();
    step_table(&log.await.unwrap_or_default());
    // Anything the direct peer left (nothing, normally) goes with the DinD on drop.
    drop(dind);
}

fn args() -> Args {
    let mut args = Args {
        airlock: None,
        iterations: 20,
        concurrent: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--airlock" => args.airlock = Some(PathBuf::from(value)),
            "--iterations" => args.iterations = value.parse().unwrap(),
            "--concurrent" => args.concurrent = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// One trivial sandbox through the API: (create-to-running, create-to-exited). Deleted after,
/// outside the timing.
async fn api_once(addr: SocketAddr) -> (Duration, Duration) {
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["true"]});
    let started = Instant::now();
    let (status, reply) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    let running = started.elapsed();
    assert_eq!(status, 201, "{reply}");
    let id = reply["id"].as_str().unwrap().to_owned();
    let (status, reply) = http(
        addr,
        TOKEN,
        "GET",
        &format!("/v1/sandboxes/{id}/wait"),
        None,
    )
    .await;
    let exited = started.elapsed();
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204, "{reply}");
    (running, exited)
}

/// The same Docker work sent directly: network, container (same hardened bodies, without
/// the start through init), start, wait. Removed after, outside the timing.
async fn direct_once(docker: &Docker, n: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let id = direct_start(docker, n, vec!["true".into()]).await;
    let running = started.elapsed();
    let name = names::container_name(id);
    let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
    while let Some(step) = wait.next().await {
        step.unwrap();
    }
    let exited = started.elapsed();
    direct_remove(docker, id).await;
    (running, exited)
}

/// A running sleeping container on its own network, made outside the timing, then removed
/// directly the way a delete removes it: the time of the removal.
async fn direct_delete_once(docker: &Docker, n: usize) -> Duration {
    let id = direct_start(docker, n, vec!["sleep".into(), "600".into()]).await;
    let started = Instant::now();
    direct_remove(docker, id).await;
    started.elapsed()
}

/// `count` sleeping containers started directly at once (network, create, start; the
/// `first`-th direct subnet on), beside the API's sandboxes, then removed: each one's time.
async fn direct_concurrent(docker: &Docker, count: usize, first: usize) -> Latencies {
    let made: Vec<(SandboxId, Duration)> = stream::iter(first..first + count)
        .map(|n| async move {
            let started = Instant::now();
            let id = direct_start(docker, n, vec!["sleep".into(), "600".into()]).await;
            (id, started.elapsed())
        })
        .buffer_unordered(count)
        .collect()
        .await;
    let latencies = Latencies::new(made.iter().map(|(_, took)| *took).collect());
    println!(
        "bench concurrent-create-direct n={count} p50={:.0}ms p99={:.0}ms",
        ms(latencies.percentile(50)),
        ms(latencies.percentile(99)),
    );
    stream::iter(made)
        .for_each_concurrent(8, |(id, _)| direct_remove(docker, id))
        .await;
    latencies
}

/// Creates the `n`-th direct network and a container running `cmd` on it (the hardened body
/// of `airlock::docker::spec`, minus the start through airlock-init: no runtime volume here,
/// so the baseline is Docker's own work), starts it and returns the id its names derive from.
async fn direct_start(docker: &Docker, n: usize, cmd: Vec<String>) -> SandboxId {
    let id = SandboxId::new();
    let placement = Placement {
        id,
        generation: 1,
        node: DIRECT_NODE,
        subnet: direct_subnet(n),
        proxy_token: "bench",
    };
    let mut container = spec::container_body(&trivial_spec(), &placement, "direct");
    container.entrypoint = None;
    container.cmd = Some(cmd);
    (container.open_stdin, container.attach_stdin) = (None, None);
    if let Some(mounts) = container
        .host_config
        .as_mut()
        .and_then(|h| h.mounts.as_mut())
    {
        mounts.retain(|m| m.target.as_deref() != Some(spec::runtime::RUNTIME_MOUNT));
    }
    let name = names::container_name(id);
    docker
        .create_network(spec::network_body(&placement))
        .await
        .unwrap();
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..CreateContainerOptions::default()
    };
    docker
        .create_container(Some(options), container)
        .await
        .unwrap();
    docker.start_container(&name, None).await.unwrap();
    id
}

/// Removes a direct container (forced, as a delete does) and then its network.
async fn direct_remove(docker: &Docker, id: SandboxId) {
    let options = RemoveContainerOptions {
        force: true,
        ..RemoveContainerOptions::default()
    };
    let name = names::container_name(id);
    docker.remove_container(&name, Some(options)).await.unwrap();
    docker
        .remove_network(&names::network_name(id))
        .await
        .unwrap();
}

/// [`leftovers`] once the node has settled: a delete answers before its network is gone, so
/// this polls (up to 30 s) until nothing is left, and returns what is left then.
async fn settled_leftovers(docker: &Docker, node: &str) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = leftovers(docker, node).await;
        if left == (0, 0) || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `n`-th /29 of 10.214.0.0/16, a pool the controller does not use.
fn direct_subnet(n: usize) -> SandboxSubnet {
    let base = u32::from(std::net::Ipv4Addr::new(10, 214, 0, 0));
    let offset = u32::try_from(n % 8192).unwrap() * 8;
    let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(base + offset), 29).unwrap();
    SandboxSubnet::new(net).unwrap()
}

fn trivial_spec() -> SandboxSpec {
    SandboxRequest {
        image: TESTBOX_IMAGE.into(),
        cmd: vec!["true".into()],
        ..SandboxRequest::default()
    }
    .validate(&defaults().maximums)
    .unwrap()
}

/// The configuration `airlock serve` runs with when nothing is set (its operator maximums).
fn defaults() -> Config {
    Config::from_lookup(|_| None).unwrap()
}

async fn create_sleeping(addr: SocketAddr) -> Result<(String, Duration), String> {
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "600"]});
    let started = Instant::now();
    let (status, reply) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    let took = started.elapsed();
    if status != 201 {
        return Err(format!("{status} {reply}"));
    }
    Ok((reply["id"].as_str().unwrap().to_owned(), took))
}

/// `node`'s labelled (containers, networks), stopped containers included.
async fn leftovers(docker: &Docker, node: &str) -> (usize, usize) {
    let (containers, networks) = e2e::labelled(docker, &format!("{LABEL_NODE}={node}")).await;
    (containers.len(), networks.len())
}

fn ratio(what: &str, api: &Latencies, direct: &Latencies) {
    println!(
        "bench ratio {what} api/direct p50={:.2} p99={:.2} mean={:.2}",
        ratio_of(api, direct, 50),
        ratio_of(api, direct, 99),
        api.mean().as_secs_f64() / direct.mean().as_secs_f64(),
    );
}

fn ratio_of(api: &Latencies, direct: &Latencies, p: usize) -> f64 {
    api.percentile(p).as_secs_f64() / direct.percentile(p).as_secs_f64()
}
