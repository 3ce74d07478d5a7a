//! The DinD fixture itself: it removes everything it created (container, volume, sealed network,
//! outer containers still attached, tempdir), both on a normal drop and while a test panics; and
//! its sealed network keeps containers off the host's own services.
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::Timing;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use test_support::probe::{self, ProbeOutcome};
use test_support::sealed::{OuterSpec, SealedNet};
use test_support::sweep::LABEL_FIXTURE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

#[tokio::test]
async fn fixture_cleans_up_on_drop() {
    let mut timing = Timing::start("fixture_cleans_up_on_drop");
    let dind = Dind::start(DindOptions::new("cleanup")).await.unwrap();
    timing.phase("dind-start");
    let fixture = dind.outer_network().fixture().to_owned();
    let certs = dind.cert_dir();
    // DNS is hermetic by default: the DinD resolves only via the sealed network's DNS address.
    let resolv = dind
        .exec_in_dind(&["cat", "/etc/resolv.conf"])
        .await
        .unwrap();
    let dns = dind.outer_network().host(SealedNet::DNS_HOST);
    assert!(
        resolv.stdout.contains(&format!("nameserver {dns}\n")),
        "{resolv:?}"
    );
    assert_eq!(resolv.stdout.matches("nameserver").count(), 1, "{resolv:?}");
    let spec = OuterSpec::new("idle", TESTBOX_IMAGE, &["sleep", "600"]);
    let idle = dind.outer_network().run(spec).await.unwrap();
    let rules = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .unwrap();
    let rules = String::from_utf8(rules.stdout).unwrap();
    assert!(rules.contains(&fixture), "host seal rule missing: {rules}");
    assert_eq!(objects(&fixture).len(), 4, "{:?}", objects(&fixture));

    // The outer container is still alive: the network's cleanup must remove it first.
    drop(dind);
    assert_gone(&fixture, &certs);
    drop(idle);
    timing.phase("drop");
}

#[test]
fn fixture_cleans_up_on_panic() {
    let _timing = Timing::start("fixture_cleans_up_on_panic");
    let (tx, rx) = std::sync::mpsc::channel::<(String, PathBuf)>();
    let test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let dind = Dind::start(DindOptions::new("cleanup_panic"))
                .await
                .unwrap();
            let fixture = dind.outer_network().fixture().to_owned();
            tx.send((fixture, dind.cert_dir())).unwrap();
            panic!("deliberate panic while the fixture is alive");
        })
    });
    assert!(test.join().is_err(), "the inner test panicked");
    let (fixture, certs) = rx.recv().unwrap();
    assert_gone(&fixture, &certs);
}

/// Every host-daemon object labelled with `fixture`, as `kind id` strings.
fn objects(fixture: &str) -> Vec<String> {
    let filter = format!("label={LABEL_FIXTURE}={fixture}");
    let mut found = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-aq"]),
        ("volume", vec!["volume", "ls", "-q"]),
        ("network", vec!["network", "ls", "-q"]),
    ] {
        let output = Command::new("docker")
            .args(args)
            .args(["--filter", &filter])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let listing = String::from_utf8(output.stdout).unwrap();
        found.extend(listing.split_whitespace().map(|id| format!("{kind} {id}")));
    }
    found
}

fn assert_gone(fixture: &str, certs: &Path) {
    assert_eq!(
        objects(fixture),
        Vec::<String>::new(),
        "leftovers of {fixture}"
    );
    assert!(!certs.exists(), "{} survived the fixture", certs.display());
    let rules = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .unwrap();
    let rules = String::from_utf8(rules.stdout).unwrap();
    assert!(!rules.contains(fixture), "host seal rule survived: {rules}");
}

#[tokio::test]
async fn sealed_network_keeps_containers_off_the_host() {
    let mut timing = Timing::start("sealed_network_keeps_containers_off_the_host");
    let net = SealedNet::create("seal").await.unwrap();
    // A host service on the bridge address, i.e. what `0.0.0.0` would expose to the network.
    let listener = TcpListener::bind((net.gateway(), 0)).await.unwrap();
    let host_service = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(b"host\n").await;
        }
    });
    // Control: the host service answers on that address.
    let socket = TcpSocket::new_v4().unwrap();
    let mut conn = socket.connect(host_service).await.unwrap();
    let mut greeting = String::new();
    conn.read_to_string(&mut greeting).await.unwrap_or_default();
    assert!(greeting.starts_with("host"), "{greeting:?}");
    drop(conn);
    // Control: a peer container on the same sealed network answers the probe container.
    let peer_ip = net.host(10);
    let peer = OuterSpec::new(
        "peer",
        TESTBOX_IMAGE,
        &["nc", "-ll", "-p", "8080", "-e", "echo", "peer"],
    );
    let _peer = net.run(peer.ip(peer_ip)).await.unwrap();
    let peer_addr = SocketAddr::new(IpAddr::V4(peer_ip), 8080);
    timing.phase("setup");

    let deadline = Instant::now() + Duration::from_secs(20);
    let results = loop {
        let cmd = probe::tcp_probe_cmd(&[host_service, peer_addr]);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let prober = net
            .run(OuterSpec::new("probe", TESTBOX_IMAGE, &cmd))
            .await
            .unwrap();
        prober.wait().await.unwrap();
        let out = prober.stdout().await.unwrap();
        eprintln!("probe on the sealed network:\n{out}");
        let results = probe::parse(&out);
        // The peer may still be starting: retry until it answers, with a deadline.
        if probe::outcome_for(&results, peer_addr).is_some_and(ProbeOutcome::is_connected) {
            break results;
        }
        assert!(Instant::now() < deadline, "peer never answered: {out}");
    };
    timing.phase("probe");
    let outcome = probe::outcome_for(&results, host_service).unwrap();
    assert!(
        outcome.is_blocked(),
        "a sealed-network container reached the host: {outcome:?}"
    );
}
