//! Isolation attacked from INSIDE a sandbox-like container (all capabilities dropped,
//! no-new-privileges, non-root) on an internal nested network.
//!
//! TCP to the gateway, to the DinD's outer address (2376 and a listener of ours) and to other
//! nested networks fails, and so does UDP to the DinD's addresses.
//!
//! Every "blocked" assertion has a positive control in the same test, so none can pass
//! vacuously: the same listener answers from the DinD namespace, and a peer on the sandbox's own
//! network answers the very same probe container.
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{dind_with_testbox, Timing};
use test_support::dind::{Dind, DindOptions, DIND_TLS_PORT, TESTBOX_IMAGE};
use test_support::nested::{self, ContainerSpec, NestedNet, NetKind};
use test_support::probe::{self, ProbeOutcome, ProbeResult};

/// Port of the listener started in the DinD's own network namespace. Each DinD has its own
/// namespace, so a fixed port there cannot collide across parallel tests.
const DIND_LISTENER_PORT: u16 = 17001;
/// Port of nested test servers (unprivileged, as they run as user 65534).
const SERVER_PORT: u16 = 8080;
const PROBE_LIMIT: Duration = Duration::from_secs(30);
const READY_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn sandbox_cannot_reach_gateway_or_dind() {
    let mut timing = Timing::start("sandbox_cannot_reach_gateway_or_dind");
    let dind = dind_with_testbox(DindOptions::new("iso_dind"), &mut timing)
        .await
        .unwrap();
    let docker = dind.docker();
    let net = nested::create_network(docker, "iso-sbx", 1, NetKind::Internal)
        .await
        .unwrap();

    // A listener in the DinD namespace, on every address (outer, gateway, loopback).
    let listener = ["busybox", "nc", "-ll", "-p", "17001", "-e", "echo", "pong"];
    dind.spawn_in_dind(&listener).await.unwrap();
    let dind_ip = IpAddr::V4(dind.ip());
    let gateway = IpAddr::V4(net.gateway());
    // Positive controls from the DinD namespace itself: its outer address and the very gateway
    // address the sandbox will try.
    wait_pong_from_dind(&dind, dind_ip, DIND_LISTENER_PORT).await;
    wait_pong_from_dind(&dind, gateway, DIND_LISTENER_PORT).await;
    // A peer server on the sandbox's own network (control for the probe container itself).
    let peer = start_server(&dind, &net, 10).await;
    timing.phase("setup");

    let targets = [
        SocketAddr::new(gateway, DIND_TLS_PORT),
        SocketAddr::new(gateway, DIND_LISTENER_PORT),
        SocketAddr::new(dind_ip, DIND_TLS_PORT),
        SocketAddr::new(dind_ip, DIND_LISTENER_PORT),
        peer,
    ];
    let results = probe_from(&dind, &net, &targets).await;
    timing.phase("probe");

    assert_connected(&results, peer, "peer on the sandbox's own network");
    for target in &targets[..4] {
        let outcome = outcome(&results, *target);
        assert!(
            outcome.is_blocked(),
            "sandbox reached {target}: {outcome:?}"
        );
    }
    // The host side still reaches 2376 (the fixture pinged it), so 2376 is up, not absent.
    dind.docker().ping().await.unwrap();
}

#[tokio::test]
async fn sandbox_cannot_reach_other_network() {
    let mut timing = Timing::start("sandbox_cannot_reach_other_network");
    let dind = dind_with_testbox(DindOptions::new("iso_net"), &mut timing)
        .await
        .unwrap();
    let docker = dind.docker();
    let net_a = nested::create_network(docker, "iso-a", 2, NetKind::Internal)
        .await
        .unwrap();
    let net_b = nested::create_network(docker, "iso-b", 3, NetKind::Internal)
        .await
        .unwrap();
    let server = start_server(&dind, &net_a, 10).await;
    timing.phase("setup");

    let targets = [server];
    let (from_a, from_b) = tokio::join!(
        probe_from(&dind, &net_a, &targets),
        probe_from(&dind, &net_b, &targets),
    );
    timing.phase("probe");

    assert_connected(&from_a, server, "server from its own network");
    let outcome = outcome(&from_b, server);
    assert!(
        outcome.is_blocked(),
        "a sandbox on another network reached {server}: {outcome:?}"
    );
}

#[tokio::test]
async fn sandbox_udp_to_dind_is_dropped() {
    let mut timing = Timing::start("sandbox_udp_to_dind_is_dropped");
    let dind = dind_with_testbox(DindOptions::new("iso_udp"), &mut timing)
        .await
        .unwrap();
    let net = nested::create_network(dind.docker(), "iso-udp", 4, NetKind::Internal)
        .await
        .unwrap();
    // A UDP listener (the logging DNS sink) on port 53 of every DinD address.
    let sink = Path::new(env!("CARGO_BIN_EXE_dns-sink"));
    dind.copy_into_dind(sink, "/usr/local/bin/dns-sink")
        .await
        .unwrap();
    let run_sink = "/usr/local/bin/dns-sink >/tmp/dns-sink.log 2>&1";
    dind.spawn_in_dind(&["sh", "-c", run_sink]).await.unwrap();
    wait_dind_log(&dind, &["LISTENING"]).await;
    timing.phase("setup");

    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let servers = [net.gateway().to_string(), dind.ip().to_string()];
    let mut script = String::new();
    for (n, server) in servers.iter().enumerate() {
        let name = format!("sbx{n}-{id}.airlock-e2e.test");
        script.push_str(&format!(
            "busybox timeout 5 busybox nslookup {name} {server} & "
        ));
    }
    script.push_str("wait");
    let cmd = ["/bin/busybox", "sh", "-c", &script];
    let spec = ContainerSpec::new("udp-probe", TESTBOX_IMAGE, &cmd).on(&net, None);
    let sandbox = nested::run_to_exit(dind.docker(), &spec, PROBE_LIMIT)
        .await
        .unwrap();
    eprintln!("sandbox lookups: {sandbox:?}");
    timing.phase("sandbox-udp");

    // Positive control: the same datagrams sent from the DinD namespace arrive.
    let mut controls = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        let name = format!("ctl{n}-{id}.airlock-e2e.test");
        let out = dind
            .exec_in_dind(&["busybox", "nslookup", &name, server])
            .await
            .unwrap();
        eprintln!("control lookup via {server}: {out:?}");
        controls.push(name);
    }
    let controls: Vec<&str> = controls.iter().map(String::as_str).collect();
    let log = wait_dind_log(&dind, &controls).await;
    timing.phase("controls");
    eprintln!("sink log in the DinD namespace:\n{log}");
    assert!(
        !log.contains("sbx"),
        "UDP from the sandbox reached the DinD: {log}"
    );
}

/// Polls the sink log in the DinD namespace until it holds every needle; returns it.
async fn wait_dind_log(dind: &Dind, needles: &[&str]) -> String {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let out = dind
            .exec_in_dind(&["cat", "/tmp/dns-sink.log"])
            .await
            .unwrap();
        if needles.iter().all(|n| out.stdout.contains(n)) {
            return out.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "{needles:?} never logged in the DinD namespace: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a testbox server answering "pong" on `net` at host `n`, and waits until it answers
/// (from the DinD namespace, which routes to every nested bridge).
async fn start_server(dind: &Dind, net: &NestedNet, n: u8) -> SocketAddr {
    let cmd = ["nc", "-ll", "-p", "8080", "-e", "echo", "pong"];
    let spec = ContainerSpec::new("server", TESTBOX_IMAGE, &cmd).on(net, Some(net.host(n)));
    nested::start(dind.docker(), &spec).await.unwrap();
    let addr = SocketAddr::new(IpAddr::V4(net.host(n)), SERVER_PORT);
    wait_pong_from_dind(dind, addr.ip(), addr.port()).await;
    addr
}

/// Polls `nc ip port` from the DinD namespace until it answers "pong", with a deadline.
async fn wait_pong_from_dind(dind: &Dind, ip: IpAddr, port: u16) {
    let deadline = Instant::now() + READY_LIMIT;
    let (ip, port) = (ip.to_string(), port.to_string());
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
            "{ip}:{port} never answered from the DinD namespace: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one sandbox-like probe container on `net` against every target.
async fn probe_from(dind: &Dind, net: &NestedNet, targets: &[SocketAddr]) -> Vec<ProbeResult> {
    let cmd = probe::tcp_probe_cmd(targets);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let spec = ContainerSpec::new("probe", TESTBOX_IMAGE, &cmd).on(net, None);
    let run = nested::run_to_exit(dind.docker(), &spec, PROBE_LIMIT)
        .await
        .unwrap();
    eprintln!("probe from {}:\n{}{}", net.subnet(), run.stdout, run.stderr);
    let results = probe::parse(&run.stdout);
    assert_eq!(results.len(), targets.len(), "one line per target: {run:?}");
    results
}

fn outcome(results: &[ProbeResult], target: SocketAddr) -> ProbeOutcome {
    probe::outcome_for(results, target)
        .cloned()
        .unwrap_or_else(|| panic!("no probe result for {target}"))
}

fn assert_connected(results: &[ProbeResult], target: SocketAddr, what: &str) {
    let outcome = outcome(results, target);
    assert!(
        outcome.is_connected(),
        "control failed, {what}: {outcome:?}"
    );
}
