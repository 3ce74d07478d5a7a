//! `airlock certs init` as an operator runs it: exit codes and what it prints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test helpers may fail loudly.

use std::process::Command;

fn airlock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
}

#[test]
fn init_then_rerun_reports_what_it_did() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let run = || {
        airlock()
            .args([
                "certs",
                "init",
                "--san",
                "10.231.0.2",
                "--san",
                "dind",
                "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let text = String::from_utf8(first.stdout).unwrap();
    assert!(text.contains("created   server/key.pem"), "{text}");
    assert!(text.trim_end().ends_with("are updated"), "{text}");

    let second = run();
    assert!(second.status.success());
    let text = String::from_utf8(second.stdout).unwrap();
    assert!(text.trim_end().ends_with("are up to date"), "{text}");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = airlock()
        .args(["certs", "init", "--san", "bad_name!", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("invalid SAN \"bad_name!\""), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    let out = airlock()
        .args(["certs", "init", "--days", "0", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--days must be between 1 and 3650"), "{err}");
}
