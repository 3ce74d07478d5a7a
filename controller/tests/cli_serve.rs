//! `airlock serve` as an operator starts it, for the failures that need no Docker daemon:
//! an invalid configuration (every problem listed, exit 64), a bootstrap admin email naming
//! an existing non-admin (exit 64) and an unreachable node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test helpers may fail loudly.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

fn serve(vars: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("serve")
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn invalid_configuration_lists_every_problem_and_exits_64() {
    let secret = "short token";
    let out = serve(&[
        ("AIRLOCK_LISTEN", "nowhere"),
        ("AIRLOCK_MAX_PIDS", "0"),
        ("AIRLOCK_ADMIN_TOKEN", secret),
        ("AIRLOCK_DOCKER_HOST", "ftp://dind"),
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    for var in [
        "AIRLOCK_LISTEN",
        "AIRLOCK_MAX_PIDS",
        "AIRLOCK_ADMIN_TOKEN",
        "AIRLOCK_DOCKER_HOST",
    ] {
        assert!(stderr.contains(var), "{var} missing from:\n{stderr}");
    }
    assert!(!stderr.contains(secret), "the secret leaked:\n{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreachable_node_fails_after_the_store_is_migrated() {
    let tmp = tempfile::tempdir().unwrap();
    // Bound but not listening: the port stays ours, and connections are refused at once.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let port = closed.local_addr().unwrap().port();
    let host = format!("tcp://127.0.0.1:{port}");
    let data = tmp.path().to_str().unwrap();
    let out = serve(&[
        ("AIRLOCK_DATA_DIR", data),
        ("AIRLOCK_DOCKER_HOST", &host),
        ("AIRLOCK_DOCKER_INSECURE", "true"),
        ("AIRLOCK_LISTEN", "127.0.0.1:0"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("airlock: docker:"), "{stderr}");
    assert!(tmp.path().join("airlock.db").exists());
}

#[test]
fn a_bootstrap_email_of_an_existing_member_is_refused_with_64() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let mut create = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "admin",
            "create-user",
            "--email",
            "kim@example.org",
            "--role",
            "member",
        ])
        .env_clear()
        .env("AIRLOCK_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(create.status.success(), "{create:?}");
    create.stdout.clear();
    let out = serve(&[
        ("AIRLOCK_DATA_DIR", data),
        ("AIRLOCK_BOOTSTRAP_ADMIN_EMAIL", "Kim@Example.org"),
        ("AIRLOCK_BOOTSTRAP_ADMIN_PASSWORD", "a long enough password"),
        ("AIRLOCK_DOCKER_HOST", "tcp://127.0.0.1:9"),
        ("AIRLOCK_DOCKER_INSECURE", "true"),
        ("AIRLOCK_LISTEN", "127.0.0.1:0"),
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "AIRLOCK_BOOTSTRAP_ADMIN_EMAIL names kim@example.org, an existing member account"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("a long enough password"), "{stderr}");
}

#[test]
fn rotate_key_refuses_while_a_server_holds_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("new.key");
    std::fs::write(
        &key,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .unwrap();
    let rotate = || {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["admin", "rotate-key", "--new-key-file"])
            .arg(&key)
            .env_clear()
            .env("AIRLOCK_DATA_DIR", tmp.path())
            .output()
            .unwrap()
    };
    // What `airlock serve` holds for as long as it runs.
    let serving = airlock::ops::store_lock::serving(tmp.path()).unwrap();
    let out = rotate();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("a running `airlock serve` holds the store"),
        "{stderr}"
    );
    drop(serving);
    // With no server, rotate-key gets past the lock (and fails only for want of a key here).
    let stderr = String::from_utf8(rotate().stderr).unwrap();
    assert!(!stderr.contains("holds the store"), "{stderr}");
}
