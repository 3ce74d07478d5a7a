//! The reconciler against a real DinD over mTLS:
//! - an absolute `timeout_s` ends a sandbox with reason `timeout` (in-process API plus a
//!   running reconciler);
//! - crash recovery: the real `airlock serve` is killed with SIGKILL while creates are in
//!   flight, a container is removed behind its back, another ends, and an orphan container and
//!   network appear; after a restart the state converges within 5 s;
//! - a DinD restart: its sandboxes come back `Exited (255)` and become `lost`.
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use airlock::api::{app, AppState, Auth};
use airlock::config::Secret;
use airlock::config::DEFAULT_NODE;
use airlock::docker::spec::{LABEL_GENERATION, LABEL_NODE, LABEL_SANDBOX_ID};
use airlock::reconcile::{Pass, ReconcileSettings, Reconciler};
use airlock::sandbox::names::container_name;
use airlock::services::{Services, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, RemoveContainerOptions,
};
use e2e::controller::{parts, Parts};
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve, DEADLINE};
use e2e::{dind_with_testbox, Timing};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use test_support::upstream::connect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tower::ServiceExt;

const TOKEN: &str = "e2e-reconcile-token-0123456789";
/// The convergence target after `kill -9` (DESIGN.md performance targets).
const CONVERGE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
/// A sandbox command that runs until SIGUSR1, then exits 3.
const EXIT_3_ON_USR1: &str = "trap 'exit 3' USR1; sleep 300 & wait";

// --- in-process controller -------------------------------------------------------------

struct InProcess {
    dind: Dind,
    state: AppState,
    reconciler: Reconciler,
    _dir: tempfile::TempDir,
}

async fn in_process(test: &'static str, timing: &mut Timing) -> InProcess {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &[("AIRLOCK_STOP_GRACE", "1s")]).await;
    let mut settings = ReconcileSettings::new(DEFAULT_NODE, config.stop_grace);
    settings.timeout_poll = Duration::from_millis(200);
    settings.interval = Duration::from_secs(1);
    let reconciler = Reconciler::new(store.clone(), docker.clone(), settings);
    let services = Services::new(store, docker, Settings::from_config(&config));
    let auth = Auth::new(Some(Secret::new(TOKEN)), admin);
    timing.phase("controller-up");
    InProcess {
        dind,
        state: AppState::new(services, auth),
        reconciler,
        _dir: dir,
    }
}

impl InProcess {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    async fn create(&self, body: Value) -> String {
        let (status, body) = self.call(Method::POST, "/v1/sandboxes", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, id: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, &format!("/v1/sandboxes/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

#[tokio::test]
async fn absolute_timeout_ends_the_sandbox_with_reason_timeout() {
    let mut timing = Timing::start("reconcile_timeout");
    let c = in_process("reconcile_timeout", &mut timing).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(c.reconciler.clone().run(async move { drop(stopped.await) }));

    let started = Instant::now();
    let short = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "timeout_s": 2});
    let id = c.create(short).await;
    let long = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "timeout_s": 600});
    let other = c.create(long).await;
    timing.phase("create");

    let (status, body) = c
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{id}/wait?timeout_s=30"),
            None,
        )
        .await;
    let ended_after = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "exited", "{body}");
    assert_eq!(body["end_reason"]["kind"], "timeout", "{body}");
    assert!(
        ended_after >= Duration::from_secs(2) && ended_after < Duration::from_secs(5),
        "ended after {ended_after:?}"
    );
    eprintln!(
        "e2e-figure reconcile_timeout ended_after_s {:.2}",
        ended_after.as_secs_f64()
    );
    timing.phase("timeout");

    // The container really stops (SIGTERM, the 1 s grace, SIGKILL), and stays stopped.
    let name = container_name(id.parse().unwrap());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let inspected = c
            .dind
            .docker()
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        if inspected.state.unwrap().running == Some(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out container still runs"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(c.get(&id).await["end_reason"]["kind"], "timeout");
    // The sandbox with a long timeout is untouched.
    assert_eq!(c.get(&other).await["state"], "running");
    timing.phase("stopped");

    drop(stop);
    task.await.unwrap();
}

/// With no event watcher running, the reconciler is the one that finds the ended container:
/// an exit with one of `airlock-init`'s own statuses whose last stderr line is init's report
/// ends `failed` with its `init_*` message, as when the watcher sees it (a workload that
/// writes such a line itself only changes how its own end reads).
#[tokio::test]
async fn the_reconciler_reads_an_init_failure_like_the_watcher() {
    let mut timing = Timing::start("reconcile_init_failure");
    let c = in_process("reconcile_init_failure", &mut timing).await;
    let report = r#"echo 'airlock-init: {"error":"seed_write","message":"x"}' >&2; exit 64"#;
    let id = c
        .create(json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", report]}))
        .await;
    let exit_2 = c
        .create(json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", "exit 2"]}))
        .await;
    let deadline = Instant::now() + DEADLINE;
    let (failed, exited) = loop {
        c.reconciler.pass_logged(Pass::Periodic).await;
        let (failed, exited) = (c.get(&id).await, c.get(&exit_2).await);
        if failed["state"] != "running" && exited["state"] != "running" {
            break (failed, exited);
        }
        assert!(Instant::now() < deadline, "{failed} {exited}");
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["end_reason"]["kind"], "error", "{failed}");
    let message = failed["end_reason"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("init_config: {"), "{failed}");
    assert_eq!(exited["state"], "exited", "{exited}");
    assert_eq!(exited["exit_code"], 2, "{exited}");
    timing.phase("ended");
}

#[tokio::test]
async fn dind_restart_marks_its_sandboxes_lost() {
    let mut timing = Timing::start("reconcile_dind_restart");
    let c = in_process("reconcile_dind_restart", &mut timing).await;
    let ids = [
        c.create(json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]}))
            .await,
        c.create(json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]}))
            .await,
    ];
    timing.phase("create");

    let restart = Command::new("docker")
        .args(["restart", "-t", "0", c.dind.container_name()])
        .status()
        .await
        .unwrap();
    assert!(restart.success());
    let deadline = Instant::now() + DEADLINE;
    while c.dind.docker().ping().await.is_err() {
        if Instant::now() >= deadline {
            panic!("the DinD did not come back:\n{}", c.dind.logs_tail().await);
        }
        tokio::time::sleep(POLL).await;
    }
    timing.phase("dind-restart");

    let started = Instant::now();
    let deadline = started + DEADLINE;
    loop {
        // Errors while the daemon settles are retried by the next pass.
        c.reconciler.pass_logged(Pass::Periodic).await;
        let mut states = Vec::new();
        for id in &ids {
            let body = c.get(id).await;
            states.push((body["state"].clone(), body["end_reason"]["kind"].clone()));
        }
        if states.iter().all(|s| *s == (json!("lost"), json!("lost"))) {
            break;
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "e2e-figure reconcile_dind_restart lost_after_s {:.2}",
        started.elapsed().as_secs_f64()
    );
    // Nothing of theirs is left in the nested daemon.
    let (containers, networks) = labelled_objects(c.dind.docker()).await;
    assert_eq!((containers.len(), networks.len()), (0, 0));
    timing.phase("lost");
}

// --- the real binary -------------------------------------------------------------------

async fn create(addr: SocketAddr, cmd: &[&str]) -> String {
    let body = json!({"image": TESTBOX_IMAGE, "cmd": cmd});
    let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Every `airlock.node`-labelled container and network in the nested daemon, with their
/// sandbox label.
async fn labelled_objects(docker: &bollard::Docker) -> (Vec<String>, Vec<String>) {
    let (containers, networks) = e2e::labelled(docker, LABEL_NODE).await;
    let sandbox = |labels: Option<HashMap<String, String>>| {
        labels
            .and_then(|l| l.get(LABEL_SANDBOX_ID).cloned())
            .unwrap_or_default()
    };
    (
        containers.into_iter().map(|c| sandbox(c.labels)).collect(),
        networks.into_iter().map(|n| sandbox(n.labels)).collect(),
    )
}

/// An orphan container and network, labelled as if for a sandbox the store never heard of.
async fn make_orphans(docker: &bollard::Docker) -> String {
    let ghost = uuid::Uuid::now_v7().to_string();
    let labels = HashMap::from([
        (LABEL_SANDBOX_ID.to_owned(), ghost.clone()),
        (LABEL_GENERATION.to_owned(), "1".to_owned()),
        (LABEL_NODE.to_owned(), DEFAULT_NODE.to_owned()),
    ]);
    docker
        .create_network(NetworkCreateRequest {
            name: format!("e2e-orphan-{ghost}"),
            internal: Some(true),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = ContainerCreateBody {
        image: Some(TESTBOX_IMAGE.to_owned()),
        cmd: Some(vec!["sleep".to_owned(), "300".to_owned()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(format!("e2e-orphan-{ghost}")),
        ..Default::default()
    };
    let created = docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    ghost
}

/// What the restarted controller must converge to; `Err` says what is not there yet.
async fn converged(
    addr: SocketAddr,
    docker: &bollard::Docker,
    live: &str,
    vanished: &str,
    exited: &str,
    ghost: &str,
) -> Result<(), String> {
    let (status, list) = http(addr, TOKEN, "GET", "/v1/sandboxes?limit=500", None).await;
    if status != 200 {
        return Err(format!("list answered {status}"));
    }
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let find = |id: &str| items.iter().find(|s| s["id"] == id).cloned();
    let state = |id: &str| find(id).map(|s| (s["state"].clone(), s["end_reason"].clone()));
    if state(live) != Some((json!("running"), Value::Null)) {
        return Err(format!("live sandbox: {:?}", state(live)));
    }
    if state(vanished).map(|s| s.0) != Some(json!("lost")) {
        return Err(format!("vanished sandbox: {:?}", state(vanished)));
    }
    let ended = find(exited).unwrap_or_default();
    if ended["state"] != "exited" || ended["exit_code"] != 3 {
        return Err(format!("exited sandbox: {ended}"));
    }
    if let Some(stuck) = items.iter().find(|s| s["state"] == "creating") {
        return Err(format!("stuck in creating: {stuck}"));
    }
    // No orphan: every labelled object belongs to a sandbox that holds its objects.
    let holders: Vec<&str> = items
        .iter()
        .filter(|s| s["state"] == "running" || s["state"] == "exited")
        .filter_map(|s| s["id"].as_str())
        .collect();
    let (containers, networks) = labelled_objects(docker).await;
    for owner in containers.iter().chain(&networks) {
        if owner == ghost || !holders.contains(&owner.as_str()) {
            return Err(format!("orphan object of sandbox {owner}"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn kill_9_then_restart_converges_within_5s() {
    let mut timing = Timing::start("reconcile_kill9");
    let binary = airlock_binary().await;
    timing.phase("build");
    let dind = dind_with_testbox(DindOptions::new("reconcile_kill9"), &mut timing)
        .await
        .unwrap();
    let docker = dind.docker();
    let data = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&binary, &dind, data.path(), TOKEN);
    let (addr, _log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let live = create(addr, &["sleep", "300"]).await;
    let vanished = create(addr, &["sleep", "300"]).await;
    let exited = create(addr, &["sh", "-c", EXIT_3_ON_USR1]).await;
    timing.phase("create");

    // Creates in flight when the controller dies: whatever they reached must be taken over.
    let before = labelled_objects(docker).await.0.len();
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
                // The connection dies with the controller; any outcome is fine.
                drop(
                    tokio::time::timeout(DEADLINE, async {
                        let mut stream = connect(addr).await.ok()?;
                        let body = body.to_string();
                        let request = format!(
                        "POST /v1/sandboxes HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer \
                         {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                        stream.write_all(request.as_bytes()).await.ok()?;
                        let mut out = Vec::new();
                        stream.read_to_end(&mut out).await.ok()
                    })
                    .await,
                );
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while labelled_objects(docker).await.0.len() == before {
        assert!(Instant::now() < deadline, "no create reached Docker");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    for task in inflight {
        task.await.unwrap();
    }
    timing.phase("kill-9");

    // Behind the controller's back: one container vanishes, one ends by itself with code 3,
    // and an orphan container and network appear.
    let remove = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    let vanished_name = container_name(vanished.parse().unwrap());
    docker
        .remove_container(&vanished_name, Some(remove))
        .await
        .unwrap();
    end_with_code_3(&dind, &exited).await;
    let ghost = make_orphans(docker).await;
    timing.phase("tamper");

    let restarted = Instant::now();
    let mut child = spawn_serve(&binary, &dind, data.path(), TOKEN);
    let (addr, log) = listen_addr(&mut child).await;
    let listening = restarted.elapsed();
    let deadline = restarted + CONVERGE;
    loop {
        let Err(why) = converged(addr, docker, &live, &vanished, &exited, &ghost).await else {
            break;
        };
        if Instant::now() >= deadline {
            child.start_kill().unwrap();
            panic!(
                "not converged within {CONVERGE:?}: {why}\n{}",
                log.await.unwrap()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let took = restarted.elapsed();
    eprintln!(
        "e2e-figure reconcile_kill9 listening_s {:.2} converged_s {:.2}",
        listening.as_secs_f64(),
        took.as_secs_f64()
    );
    timing.phase("converge");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // The restarted controller's reconcile events, for the report.
    for line in log
        .await
        .unwrap()
        .lines()
        .filter(|l| l.contains("econcile"))
    {
        eprintln!("e2e-log reconcile_kill9 {line}");
    }
}

/// Makes the [`EXIT_3_ON_USR1`] sandbox exit 3, and waits until Docker sees it ended.
async fn end_with_code_3(dind: &Dind, id: &str) {
    let name = container_name(id.parse().unwrap());
    let kill = KillContainerOptions {
        signal: "SIGUSR1".to_owned(),
    };
    dind.docker()
        .kill_container(&name, Some(kill))
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let inspected = dind
            .docker()
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        if inspected.state.unwrap().running == Some(false) {
            return;
        }
        assert!(Instant::now() < deadline, "the sandbox did not end");
        tokio::time::sleep(POLL).await;
    }
}
