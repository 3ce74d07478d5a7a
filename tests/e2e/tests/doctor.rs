//! `airlock doctor` (the real binary) against a DinD fixture: all checks pass after
//! `airlock images load` (the disk-limit and volume-quota probes report that the DinD cannot
//! enforce either, and the quota probe leaves no volume), and the INPUT-rule check fails
//! precisely once the rules are deleted inside the DinD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use e2e::serve::airlock_binary;
use e2e::Timing;
use test_support::dind::{Dind, DindOptions, DIND_TLS_PORT, TESTBOX_IMAGE};
use tokio::process::Command;

async fn airlock(binary: &Path, dind: &Dind, data: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env_clear()
        .env("AIRLOCK_DATA_DIR", data)
        .env("AIRLOCK_INIT_BINARY", e2e::init_binary())
        // No controller runs here, so no proxy: the compose deploy test checks that line.
        .env("AIRLOCK_EGRESS", "false")
        .env(
            "AIRLOCK_DOCKER_HOST",
            format!("tcp://{}:{DIND_TLS_PORT}", dind.ip()),
        )
        .env("AIRLOCK_DOCKER_CERT_PATH", dind.cert_dir().join("client"))
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{report}"))
}

#[tokio::test]
async fn doctor_passes_then_flags_missing_input_rules() {
    let mut timing = Timing::start("doctor_passes_then_flags_missing_input_rules");
    let binary = airlock_binary().await;
    let dind = Dind::start(DindOptions::new("doctor")).await.unwrap();
    timing.phase("dind-start");
    let data = tempfile::tempdir().unwrap();
    let saved = data.path().join("testbox.tar");
    let status = Command::new("docker")
        .args(["save", "-o"])
        .arg(&saved)
        .arg(TESTBOX_IMAGE)
        .status()
        .await
        .unwrap();
    assert!(status.success());

    // The CLI load path: verify, send, record.
    let load = airlock(
        &binary,
        &dind,
        data.path(),
        &["images", "load", saved.to_str().unwrap()],
    )
    .await;
    let load_text = text(&load);
    eprintln!("{load_text}");
    assert!(load.status.success(), "{load_text}");
    assert!(
        load_text.contains("recorded airlock/testbox:dev"),
        "{load_text}"
    );
    timing.phase("images-load");

    let healthy = airlock(&binary, &dind, data.path(), &["doctor"]).await;
    let report = text(&healthy);
    eprintln!("{report}");
    assert!(healthy.status.success(), "{report}");
    for check in [
        "dind-mtls",
        "plain-refused",
        "storage-driver",
        "input-rules",
        "init-binary",
        "store",
        "tables",
        "images",
        "certificates",
    ] {
        assert!(
            line(&report, check).starts_with("PASS"),
            "{check}:\n{report}"
        );
    }
    assert!(
        line(&report, "egress-proxy").starts_with("SKIP"),
        "{report}"
    );
    // The DinD's overlay2 has no XFS project quotas: reported, and a pass without
    // AIRLOCK_MAX_DISK_MB (writable roots are then refused anyway).
    let disk = line(&report, "disk-limit");
    assert!(
        disk.starts_with("PASS") && disk.contains("cannot enforce"),
        "{disk}"
    );
    // Nor quota support for volumes: probed, soft, with the daemon's reason.
    let quota = line(&report, "volume-quota");
    assert!(
        quota.starts_with("PASS") && quota.contains("soft (") && quota.contains("quota support"),
        "{quota}"
    );
    let volumes = dind
        .exec_in_dind(&["docker", "volume", "ls", "-q"])
        .await
        .unwrap();
    assert!(volumes.success(), "{}", volumes.stderr);
    assert!(
        !volumes.stdout.contains("quotaprobe"),
        "the probe leaves no volume: {}",
        volumes.stdout
    );
    timing.phase("doctor-healthy");

    // Delete the INPUT jump (IPv4 and IPv6) inside the DinD: doctor must say exactly that.
    for ipt in ["iptables", "ip6tables"] {
        let out = dind
            .exec_in_dind(&[ipt, "-w", "-D", "INPUT", "-j", "AIRLOCK-INPUT"])
            .await
            .unwrap();
        assert!(out.success() || ipt == "ip6tables", "{}", out.stderr);
    }
    let broken = airlock(&binary, &dind, data.path(), &["doctor"]).await;
    let report = text(&broken);
    eprintln!("{report}");
    assert_eq!(broken.status.code(), Some(1), "{report}");
    let input = line(&report, "input-rules");
    assert!(input.starts_with("FAIL"), "{report}");
    assert!(
        input.contains("AIRLOCK-INPUT") && input.contains(":2376"),
        "{input}"
    );
    assert!(
        report.contains("fix: restart the dind container"),
        "{report}"
    );
    assert!(line(&report, "dind-mtls").starts_with("PASS"), "{report}");
    timing.phase("doctor-broken");
}
