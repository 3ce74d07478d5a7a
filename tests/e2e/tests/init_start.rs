//! Every sandbox starts through `airlock-init`, checked through the real controller on a DinD
//! over mTLS: PID 1 is `/.airlock/init` from the node's read-only runtime volume; the workload
//! gets its argv, env and working directory from the binding frame (and an exec gets the same
//! through `--airlock-enter`), while the container's `Config.Env` holds no user value; an
//! orphan is reaped; the workload's exit code is the sandbox's; a trust variable in the user's
//! env is a 400, and so is a working directory in Airlock's own directories; an exec's
//! background children end with it unless they left its process group.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use e2e::agents::{AgentApi, ADMIN_TOKEN};
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, TESTBOX_IMAGE};

/// A value only the request carries.
const USER_VALUE: &str = "ha-user-value-7f3e";

async fn create(c: &AgentApi, body: Value) -> String {
    let (status, made) = c
        .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

async fn wait(c: &AgentApi, id: &str) -> Value {
    let uri = format!("/v1/sandboxes/{id}/wait?timeout_s=60");
    let (status, body) = c.call(ADMIN_TOKEN, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The container's stdout and stderr, for failure messages.
async fn container_log(c: &AgentApi, id: &str) -> String {
    use futures_util::StreamExt;
    let options = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let docker = c.dind.docker();
    let mut logs = docker.logs(&format!("airlock-{id}"), Some(options));
    let mut out = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}

#[tokio::test]
async fn init_start_path() {
    let mut timing = Timing::start("init_start_path");
    let dind = dind_with_testbox(DindOptions::new("init_start_path"), &mut timing)
        .await
        .unwrap();
    let c = AgentApi::start(dind, &[], &mut timing).await;

    // The workload records what it was started with, then leaves an orphan behind.
    let script = "echo \"$0|$1|$(pwd)|$E2E_VAR|$HOME\" > /tmp/seen; (sleep 1 &); exec sleep 300";
    let started = Instant::now();
    let id = create(
        &c,
        json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", script, "argv0", "argv1"],
               "env": {"E2E_VAR": USER_VALUE}, "workdir": "/tmp"}),
    )
    .await;
    timing.phase("create");
    eprintln!("create through init: {:?}", started.elapsed());

    let (_, got) = c
        .call(
            ADMIN_TOKEN,
            Method::GET,
            &format!("/v1/sandboxes/{id}"),
            None,
        )
        .await;
    assert_eq!(
        got["state"],
        "running",
        "{got} {}",
        container_log(&c, &id).await
    );
    let (code, out) = c.sh(ADMIN_TOKEN, &id, "cat /proc/1/cmdline; echo").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("/.airlock/init"), "PID 1: {out}");
    let (code, out) = c.sh(ADMIN_TOKEN, &id, "cat /tmp/seen").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!("argv0|argv1|/tmp|{USER_VALUE}|/home/agent")
    );
    // An exec gets the workload's env and working directory too.
    let (code, out) = c
        .sh(ADMIN_TOKEN, &id, "echo \"$(pwd)|$E2E_VAR|$HOME\"")
        .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("/tmp|{USER_VALUE}|/home/agent"));
    // The runtime is read-only to the sandbox.
    let (code, out) = c.sh(ADMIN_TOKEN, &id, "touch /.airlock/x").await;
    assert_ne!(code, 0, "{out}");

    // Nothing per-run in the container's configuration.
    let docker = c.dind.docker();
    let inspected = docker
        .inspect_container(&format!("airlock-{id}"), None)
        .await
        .unwrap();
    let config = inspected.config.unwrap();
    let env = config.env.unwrap_or_default();
    assert!(env.iter().all(|e| !e.contains(USER_VALUE)), "{env:?}");
    assert!(env.iter().all(|e| !e.contains("PROXY")), "{env:?}");
    assert!(env.iter().all(|e| !e.starts_with("HOME=")), "{env:?}");
    assert_eq!(
        config.entrypoint.as_deref(),
        Some(&["/.airlock/init".to_owned()][..])
    );

    // The orphan (`sleep 1`, reparented to init) is reaped: no zombie stays.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, out) = c
            .sh(
                ADMIN_TOKEN,
                &id,
                "cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"'",
            )
            .await;
        if out.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombies stay: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    timing.phase("inside");
    c.delete(ADMIN_TOKEN, &format!("/v1/sandboxes/{id}")).await;

    // The workload's exit code is the sandbox's.
    let id = create(
        &c,
        json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", "exit 3"]}),
    )
    .await;
    let ended = wait(&c, &id).await;
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 3, "{ended}");

    // A trust variable in the user's env is refused by the controller (init would refuse the
    // frame): a 400 naming the field, no sandbox.
    let (status, refused) = c
        .call(
            ADMIN_TOKEN,
            Method::POST,
            "/v1/sandboxes",
            Some(json!({"image": TESTBOX_IMAGE, "cmd": ["true"], "env": {"SSL_CERT_FILE": "/x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(
        refused["fields"][0]["field"], "env.SSL_CERT_FILE",
        "{refused}"
    );

    // A working directory in Airlock's own directories (the run file's, which init makes
    // root-owned, or the runtime volume) could never work: the controller refuses it.
    for dir in ["/tmp/.airlock", "/.airlock/x"] {
        let body = json!({"image": TESTBOX_IMAGE, "cmd": ["true"], "workdir": dir});
        let (status, refused) = c
            .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(refused["fields"][0]["field"], "workdir", "{refused}");
    }
    timing.phase("ends");
}

/// The `sleep` arguments still running in sandbox `id` (zombies have no command line).
async fn sleepers(c: &AgentApi, id: &str) -> Vec<String> {
    let scan = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done";
    let (code, out) = c.sh(ADMIN_TOKEN, id, scan).await;
    assert_eq!(code, 0, "{out}");
    let mut found: Vec<String> = out
        .lines()
        .filter_map(|line| line.trim().strip_prefix("sleep "))
        .map(str::to_owned)
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn an_execs_background_children_end_with_it_but_a_setsid_one_stays() {
    let mut timing = Timing::start("exec_leftovers");
    let dind = dind_with_testbox(DindOptions::new("exec_leftovers"), &mut timing)
        .await
        .unwrap();
    let c = AgentApi::start(dind, &[], &mut timing).await;
    let id = create(&c, json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]})).await;

    // A plain background child, one that ignores SIGHUP and SIGTERM (`nohup`, and more), and
    // one in a session of its own. The exec returns once all three run (the third has called
    // setsid when it writes /tmp/left).
    let script = "rm -f /tmp/left
        sleep 1001 >/dev/null 2>&1 &
        (trap '' HUP TERM; exec sleep 1002) >/dev/null 2>&1 &
        setsid sh -c ': > /tmp/left; exec sleep 1003' >/dev/null 2>&1 &
        until [ -e /tmp/left ] && [ \"$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' \
            | grep -c '^100[12]$')\" = 2 ]; do sleep 0.05; done
        echo started";
    let (code, out) = c.sh(ADMIN_TOKEN, &id, script).await;
    assert_eq!((code, out.trim()), (0, "started"));

    // The exec's group is ended with it (SIGTERM, then SIGKILL); the setsid one is the
    // sandbox's until it ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = sleepers(&c, &id).await;
        if left == ["1003", "300"] {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    timing.phase("leftovers");
    c.delete(ADMIN_TOKEN, &format!("/v1/sandboxes/{id}")).await;
}
