//! The leftover sweep removes objects of dead runs and never touches a live run's objects, so
//! parallel test processes sharing one host daemon cannot sweep each other away.

// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use e2e::Timing;
use test_support::dind::TESTBOX_IMAGE;
use test_support::sweep::{
    label_args, sweep_dead_runs, LABEL_FIXTURE, LABEL_PID, LABEL_PID_START, LABEL_RUN,
};

#[test]
fn sweep_removes_dead_runs_only() {
    let _timing = Timing::start("sweep_removes_dead_runs_only");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let dead = dead_owner_labels(&format!("e2e-sweep-dead-{id}"));
    let live = label_args(&format!("e2e-sweep-live-{id}"));
    let mut created = Vec::new();
    for (owner, labels) in [("dead", &dead), ("live", &live)] {
        let name = format!("e2e-sweep-{owner}-{id}");
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        docker(&[&["volume", "create"], &labels[..], &[&name]].concat());
        // A config-only network allocates no subnet, so it cannot collide with live fixtures.
        docker(
            &[
                &["network", "create", "--config-only"],
                &labels[..],
                &[&name],
            ]
            .concat(),
        );
        let create = [
            "create",
            "--pull=never",
            "--network",
            "none",
            "--name",
            &name,
        ];
        docker(&[&create[..], &labels[..], &[TESTBOX_IMAGE, "true"]].concat());
        created.push(name);
    }

    let dead_pid = label_value(&dead, LABEL_PID);
    let live_start = label_value(&live, LABEL_PID_START);
    let tmp = std::env::temp_dir();
    let dead_dir = tmp.join(format!("airlock-e2e-{dead_pid}-0-sweep{id}"));
    let live_dir = tmp.join(format!(
        "airlock-e2e-{}-{live_start}-sweep{id}",
        std::process::id()
    ));
    std::fs::create_dir(&dead_dir).unwrap();
    std::fs::create_dir(&live_dir).unwrap();

    sweep_dead_runs();

    assert!(!dead_dir.exists(), "dead tempdir kept");
    assert!(live_dir.exists(), "live tempdir swept");
    std::fs::remove_dir(&live_dir).unwrap();

    let (dead_name, live_name) = (&created[0], &created[1]);
    assert!(
        !exists(&["volume", "inspect", dead_name]),
        "dead volume kept"
    );
    assert!(
        !exists(&["network", "inspect", dead_name]),
        "dead network kept"
    );
    assert!(
        !exists(&["container", "inspect", dead_name]),
        "dead container kept"
    );
    assert!(
        exists(&["volume", "inspect", live_name]),
        "live volume swept"
    );
    assert!(
        exists(&["network", "inspect", live_name]),
        "live network swept"
    );
    assert!(
        exists(&["container", "inspect", live_name]),
        "live container swept"
    );

    docker(&["rm", "-f", live_name]);
    docker(&["volume", "rm", live_name]);
    docker(&["network", "rm", live_name]);
}

/// Labels naming an owner that no longer runs: a reaped child's pid and an impossible start time.
fn dead_owner_labels(fixture: &str) -> Vec<String> {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    [
        (LABEL_RUN, format!("{pid}-dead")),
        (LABEL_PID, pid.to_string()),
        (LABEL_PID_START, "0".to_owned()),
        (LABEL_FIXTURE, fixture.to_owned()),
    ]
    .into_iter()
    .flat_map(|(key, value)| ["--label".to_owned(), format!("{key}={value}")])
    .collect()
}

/// The value of `key` in `--label key=value` arguments.
fn label_value<'a>(args: &'a [String], key: &str) -> &'a str {
    args.iter()
        .find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
        .unwrap()
}

fn docker(args: &[&str]) {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(output.status.success(), "docker {args:?}: {output:?}");
}

fn exists(args: &[&str]) -> bool {
    let output = Command::new("docker").args(args).output().unwrap();
    output.status.success()
}
