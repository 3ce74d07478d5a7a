//! A sandbox gets no DNS: a lookup from a container on an internal network reaches no server.
//!
//! The DinD's `resolv.conf` points at `dns-sink`, a logging DNS server in a container on the
//! sealed outer network. Three lookups, each of a unique name:
//! 1. from a sandbox-like container on an internal nested network: must never reach the sink;
//! 2. control: from the DinD namespace itself: must arrive;
//! 3. control: from a container on a plain (non-internal) nested bridge, whose embedded resolver
//!    does forward: must arrive, which proves the sink sees container-originated queries too.
//!
//! The sandbox lookup runs to completion first; any forwarding it caused would have been sent
//! before its resolver gave up, so once both later controls are in the log, a missing sandbox
//! name means it was never sent.
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::Timing;
use test_support::dind::{Dind, DindOptions, DIND_IMAGE, TESTBOX_IMAGE};
use test_support::nested::{self, ContainerSpec, NetKind};
use test_support::sealed::{OuterContainer, OuterSpec, SealedNet};

const LOOKUP_LIMIT: Duration = Duration::from_secs(30);
const LOG_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn sandbox_dns_reaches_no_server() {
    let mut timing = Timing::start("sandbox_dns_reaches_no_server");
    let net = SealedNet::create("dns").await.unwrap();
    let sink = start_sink(&net).await;
    let opts = DindOptions {
        dns: Some(sink.ip().into()),
        ..DindOptions::new("dns")
    };
    let dind = Dind::start_on(net, opts).await.unwrap();
    timing.phase("dind-start");
    dind.load_image(TESTBOX_IMAGE).await.unwrap();
    timing.phase("load-testbox");
    let docker = dind.docker();
    let internal = nested::create_network(docker, "dns-sbx", 1, NetKind::Internal)
        .await
        .unwrap();
    let bridge = nested::create_network(docker, "dns-bridge", 2, NetKind::Bridge)
        .await
        .unwrap();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let sandbox_name = format!("sbx-{id}.airlock-e2e.test");
    let dind_name = format!("dind-{id}.airlock-e2e.test");
    let bridge_name = format!("bridge-{id}.airlock-e2e.test");

    let lookup =
        |name: &str| ["busybox", "timeout", "10", "busybox", "nslookup", name].map(String::from);
    let sandbox_cmd = lookup(&sandbox_name);
    let sandbox_cmd: Vec<&str> = sandbox_cmd.iter().map(String::as_str).collect();
    let spec = ContainerSpec::new("dns-sbx", TESTBOX_IMAGE, &sandbox_cmd).on(&internal, None);
    let sandbox = nested::run_to_exit(docker, &spec, LOOKUP_LIMIT)
        .await
        .unwrap();
    eprintln!("sandbox lookup: {sandbox:?}");
    assert_ne!(
        sandbox.exit_code, 0,
        "the sandbox resolved an outside name: {sandbox:?}"
    );
    timing.phase("sandbox-lookup");

    let from_dind = dind
        .exec_in_dind(&["busybox", "nslookup", &dind_name])
        .await
        .unwrap();
    eprintln!("DinD lookup: {from_dind:?}");
    let bridge_cmd = lookup(&bridge_name);
    let bridge_cmd: Vec<&str> = bridge_cmd.iter().map(String::as_str).collect();
    let spec = ContainerSpec::new("dns-bridge", TESTBOX_IMAGE, &bridge_cmd).on(&bridge, None);
    let bridged = nested::run_to_exit(docker, &spec, LOOKUP_LIMIT)
        .await
        .unwrap();
    eprintln!("bridge-network lookup: {bridged:?}");

    let log = wait_for_queries(&sink, &[&dind_name, &bridge_name]).await;
    timing.phase("controls");
    eprintln!("dns-sink log:\n{log}");
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains(&sandbox_name)).collect();
    assert!(
        leaked.is_empty(),
        "the sandbox's lookup reached a DNS server: {leaked:?}"
    );
    for line in log.lines().filter(|l| l.starts_with("QUERY ")) {
        assert!(
            line.contains(&format!("from={}:", dind.ip())),
            "every query the sink saw comes from the DinD: {line}"
        );
    }
}

/// Runs `dns-sink` (this crate's binary, glibc-linked, hence the Debian-based DinD image as its
/// rootfs) on the sealed network at the conventional DNS address, and waits until it listens.
async fn start_sink(net: &SealedNet) -> OuterContainer {
    let binary = env!("CARGO_BIN_EXE_dns-sink");
    let spec = OuterSpec::new("dns-sink", DIND_IMAGE, &[])
        .entrypoint("/dns-sink")
        .bind_ro(binary, "/dns-sink")
        .ip(net.host(SealedNet::DNS_HOST));
    let sink = net.run(spec).await.unwrap();
    let deadline = Instant::now() + LOG_LIMIT;
    loop {
        let out = sink.stdout().await.unwrap();
        if out.contains("LISTENING") {
            return sink;
        }
        assert!(
            Instant::now() < deadline,
            "dns-sink never listened: {out} {}",
            sink.stderr().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the sink's log until every name appears, with a deadline; returns the log.
async fn wait_for_queries(sink: &OuterContainer, names: &[&str]) -> String {
    let deadline = Instant::now() + LOG_LIMIT;
    loop {
        let log = sink.stdout().await.unwrap();
        if names.iter().all(|name| log.contains(name)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "control queries {names:?} never reached the sink: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
