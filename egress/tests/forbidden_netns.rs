//! Every forbidden destination class, requested on purpose through the real proxy, for CONNECT
//! and absolute-form, by IP literal and by name.
//!
//! These requests must never leave the machine even if the proxy were wrong, so the test re-execs
//! itself inside a private network namespace (`unshare --net`) where only loopback is up and
//! every IPv4 and IPv6 address is routed to it (`ip route add local 0.0.0.0/0 dev lo`). A canary
//! listens on `[::]:P` (dual-stack), so any wrong dial lands on it; a positive control (an
//! operator exception for 10.99.0.1) proves the canary really catches dials. If the namespace
//! cannot be created the test fails: it never silently skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test-only helpers.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use airlock_egress::config::{ENV_ALLOW_CIDRS, ENV_DENY_CIDRS};
use common::{connect, policy_ports, request, ProxyOptions, TestProxy};
use test_support::dns::FakeDns;
use test_support::upstream::EchoServer;

/// Set on the re-exec'd child: we are inside the private namespace.
const MARKER: &str = "AIRLOCK_EGRESS_TEST_IN_NETNS";

const NETNS_SCRIPT: &str = "ip link set lo up && ip route add local 0.0.0.0/0 dev lo && \
                            ip -6 route add local ::/0 dev lo && exec \"$0\" \"$@\"";

/// Runs `test` in this binary again, alone, inside a fresh network namespace.
fn rerun_in_netns(test: &str) {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", NETNS_SCRIPT])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(MARKER, "1")
        .output()
        .expect("cannot run unshare: a private network namespace is required for this test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "netns run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

fn inside_netns() -> bool {
    std::env::var_os(MARKER).is_some()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (literal, expected deny code). Every literal routes to the canary inside the namespace.
const LITERALS: &[(&str, &str)] = &[
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("[fd12::1]", "private"),
    ("169.254.1.1", "link_local"),
    ("[fe80::1]", "link_local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("168.63.129.16", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.192", "metadata"),
    ("[fd00:ec2::254]", "metadata"),
    ("0xa9fea9fe", "metadata"),
    ("2852039166", "metadata"),
    ("0251.0376.0251.0376", "metadata"),
    ("100.64.0.1", "shared_cgnat"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("[2001:db8::1]", "documentation"),
    ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("[::ffff:10.0.0.1]", "private"),
    ("[::ffff:169.254.169.254]", "metadata"),
    // Embedded IPv4 is unwrapped: a non-global inner address denies with its own class...
    ("[64:ff9b::a9fe:a9fe]", "metadata"),
    ("[64:ff9b:1::a00:1]", "private"),
    ("[2002:a9fe:a9fe::1]", "metadata"),
    ("[::a00:1]", "private"),
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "loopback"),
    // ...and a global inner address is still denied: the translator is not ours to use.
    ("[64:ff9b::808:808]", "embedded_ipv4"),
    ("[2002:808:808::1]", "embedded_ipv4"),
    // The deployment's own range: denied although an operator exception covers it.
    ("10.98.0.5", "infrastructure"),
    ("[::ffff:10.98.0.5]", "infrastructure"),
    ("[64:ff9b::a62:5]", "infrastructure"),
];

/// (name, answers, expected deny code).
fn names() -> Vec<(&'static str, Vec<IpAddr>, &'static str)> {
    vec![
        ("private.test", vec![ip("10.1.2.3")], "private"),
        ("meta.test", vec![ip("169.254.169.254")], "metadata"),
        ("azure.test", vec![ip("168.63.129.16")], "metadata"),
        ("ll6.test", vec![ip("fe80::1")], "link_local"),
        ("cgnat.test", vec![ip("100.64.1.1")], "shared_cgnat"),
        ("doc.test", vec![ip("192.0.2.55")], "documentation"),
        ("nat64.test", vec![ip("64:ff9b::a9fe:a9fe")], "metadata"),
        (
            "nat64-global.test",
            vec![ip("64:ff9b::808:808")],
            "embedded_ipv4",
        ),
        (
            "mapped.test",
            vec![ip("::ffff:169.254.169.254")],
            "metadata",
        ),
        ("infra.test", vec![ip("10.98.0.5")], "infrastructure"),
        (
            "infra-mixed.test",
            vec![ip("10.99.0.1"), ip("10.98.7.7")],
            "infrastructure",
        ),
        // One allowed answer (the operator exception) plus one private: deny.
        (
            "mixed.test",
            vec![ip("10.99.0.1"), ip("10.0.0.2")],
            "private",
        ),
    ]
}

#[test]
fn forbidden_destinations_never_dialled() {
    if !inside_netns() {
        rerun_in_netns("forbidden_destinations_never_dialled");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(forbidden_inside());
}

/// The interfaces of this process's network namespace (`/proc/self/net/dev` is per-namespace).
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/self/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

async fn forbidden_inside() {
    // Guard: a stray marker variable must never send these requests from a real network.
    let ifaces = interfaces();
    assert_eq!(
        ifaces,
        ["lo"],
        "not inside a loopback-only network namespace"
    );
    let canary = EchoServer::start("[::]:0".parse().unwrap()).await.unwrap();
    let port = canary.addr().port();
    let dns = FakeDns::start(names().iter().map(|(n, a, _)| (*n, a.clone()))).await;
    let proxy = TestProxy::start(
        dns.addr(),
        ProxyOptions::new(policy_ports(&[port]))
            .env(ENV_ALLOW_CIDRS, "10.99.0.1/32,10.98.0.0/16")
            .env(ENV_DENY_CIDRS, "10.98.0.0/16"),
    )
    .await;

    let mut hosts: Vec<(String, &str)> = LITERALS
        .iter()
        .map(|(l, c)| ((*l).to_owned(), *c))
        .collect();
    hosts.extend(names().into_iter().map(|(n, _, c)| (n.to_owned(), c)));
    let mut wrong = Vec::new();
    for (host, code) in &hosts {
        let authority = format!("{host}:{port}");
        let (tunnel, _) = connect(proxy.addr, &authority, &[]).await;
        let forward = request(proxy.addr, "GET", &format!("http://{authority}/"), &[]).await;
        for (kind, resp) in [("CONNECT", tunnel), ("GET", forward)] {
            let got = (
                resp.status,
                resp.json()["error"].as_str().unwrap_or("").to_owned(),
            );
            if got != (403, (*code).to_owned()) {
                wrong.push(format!(
                    "{kind} {authority}: want 403 {code}, got {} {}",
                    got.0, got.1
                ));
            }
            resp.assert_refused(resp.status, &got.1);
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        canary.connections(),
        0,
        "forbidden dials: {:?}",
        canary.dialed()
    );

    // Positive control: the operator exception is dialled, and lands on the canary.
    let (resp, tunnel) = connect(proxy.addr, &format!("10.99.0.1:{port}"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    drop(tunnel);
    let dialed: Vec<SocketAddr> = canary.dialed();
    assert_eq!(dialed.len(), 1, "{dialed:?}");
    assert_eq!(dialed[0].ip().to_canonical(), ip("10.99.0.1"));
    let events = proxy.events();
    let denied = events.iter().filter(|e| e.reason != "allowed").count();
    assert_eq!(denied, 2 * (LITERALS.len() + names().len()));
}
