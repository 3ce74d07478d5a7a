//! The controller against a real DinD over mTLS (in-process API plus a running reconciler):
//! - `idle_timeout_s` ends a silent sandbox with reason `idle`, while a sandbox that keeps
//!   printing, or one that is exec'd into, keeps running past its idle timeout;
//! - a fork bomb in a sandbox with a pids limit is contained: its process count never passes
//!   the limit, a second sandbox on the same node keeps answering exec, and deleting both
//!   leaves nothing behind;
//! - `/metrics` counts the creates, deletes and the reconciler's idle ends.
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use airlock::api::{app, AppState, Auth};
use airlock::config::Secret;
use airlock::config::DEFAULT_NODE;
use airlock::reconcile::{ReconcileSettings, Reconciler};
use airlock::sandbox::names::container_name;
use airlock::services::{Services, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bollard::query_parameters::InspectContainerOptions;
use e2e::controller::{parts, Parts};
use e2e::serve::DEADLINE;
use e2e::{dind_with_testbox, Timing};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

const TOKEN: &str = "e2e-idle-pids-token-0123456789";
const POLL: Duration = Duration::from_millis(100);

/// A container's pids cgroup, read inside the DinD.
#[derive(Debug)]
struct PidsCgroup {
    current: u64,
    max: String,
    /// Forks refused because the cgroup was at its limit (`pids.events` `max`).
    refused: u64,
}

/// A DinD, the in-process API and a running reconciler sharing the exec activity.
struct InProcess {
    dind: Dind,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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
    let services = Services::new(
        store.clone(),
        docker.clone(),
        Settings::from_config(&config),
    );
    let mut settings = ReconcileSettings::new(DEFAULT_NODE, config.stop_grace);
    settings.timeout_poll = Duration::from_millis(200);
    let reconciler = Reconciler::new(store, docker, settings)
        .with_activity(services.sandboxes.activity().clone())
        .with_metrics(services.metrics().clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(reconciler.run(async move { drop(stopped.await) }));
    let auth = Auth::new(Some(Secret::new(TOKEN)), admin);
    timing.phase("controller-up");
    InProcess {
        dind,
        state: AppState::new(services, auth),
        stop: Some(stop),
        task: Some(task),
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
        assert_eq!(body["state"], "running", "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, id: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, &format!("/v1/sandboxes/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn exec(&self, id: &str, cmd: &[&str]) -> (StatusCode, Value) {
        let body = json!({"cmd": cmd, "timeout_s": 10});
        self.call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/exec"),
            Some(body),
        )
        .await
    }

    async fn delete(&self, id: &str) {
        let (status, body) = self
            .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }

    /// Containers and networks in the nested daemon labelled for sandbox `id`, once a delete's
    /// background teardown has finished (`e2e::objects_after_delete`).
    async fn leftovers(&self, id: &str) -> (usize, usize) {
        e2e::objects_after_delete(&self.dind, id).await
    }

    /// The container's pids limit, as Docker set it.
    async fn pids_limit(&self, id: &str) -> Option<i64> {
        let name = container_name(id.parse().unwrap());
        let inspected = self
            .dind
            .docker()
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        inspected.host_config.unwrap().pids_limit
    }

    /// The container's pids cgroup inside the DinD: its process count, its limit and how many
    /// forks the limit refused. Docker's stats API comes back empty for nested containers on
    /// these cgroup v1 hosts, so this reads the cgroup files.
    async fn pids(&self, id: &str) -> PidsCgroup {
        let name = container_name(id.parse().unwrap());
        let inspected = self
            .dind
            .docker()
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let full_id = inspected.id.unwrap();
        let script = format!(
            "d=$(find /sys/fs/cgroup/pids/ -maxdepth 6 -type d -name {full_id} | head -n1); \
             test -n \"$d\" && cat \"$d/pids.current\" \"$d/pids.max\" \"$d/pids.events\""
        );
        let out = self
            .dind
            .exec_in_dind(&["sh", "-c", &script])
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
        let refused = lines
            .iter()
            .find_map(|line| line.strip_prefix("max "))
            .map_or(0, |n| n.parse().unwrap());
        PidsCgroup {
            current: lines[0].parse().unwrap(),
            max: lines[1].to_owned(),
            refused,
        }
    }

    async fn shut_down(mut self) {
        drop(self.stop.take());
        self.task.take().unwrap().await.unwrap();
    }
}

#[tokio::test]
async fn idle_timeout_ends_silent_sandboxes_and_spares_active_ones() {
    let mut timing = Timing::start("idle_timeout");
    let c = in_process("idle_timeout", &mut timing).await;
    let started = Instant::now();
    let silent = c
        .create(json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "idle_timeout_s": 2}))
        .await;
    let chatty_cmd = "while :; do echo tick; sleep 0.5; done";
    let chatty = c
        .create(
            json!({"image": TESTBOX_IMAGE, "cmd": ["sh", "-c", chatty_cmd], "idle_timeout_s": 2}),
        )
        .await;
    let execd = c
        .create(json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "idle_timeout_s": 2}))
        .await;
    // The last create: both active sandboxes are at least this old.
    let active_since = Instant::now();
    timing.phase("create");

    // The silent sandbox ends `idle` about 2 s after its create; meanwhile `execd` is kept
    // busy by an exec every 0.5 s.
    let mut last_exec = Instant::now();
    let ended_after = loop {
        let body = c.get(&silent).await;
        if body["state"] != "running" {
            assert_eq!(body["state"], "exited", "{body}");
            assert_eq!(body["end_reason"]["kind"], "idle", "{body}");
            break started.elapsed();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the silent sandbox never ended"
        );
        if last_exec.elapsed() >= Duration::from_millis(500) {
            let (status, body) = c.exec(&execd, &["true"]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            last_exec = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        ended_after >= Duration::from_secs(2) && ended_after < Duration::from_secs(6),
        "ended after {ended_after:?}"
    );
    eprintln!(
        "e2e-figure idle_timeout ended_after_s {:.2}",
        ended_after.as_secs_f64()
    );
    timing.phase("silent-idle");

    // 4 s after their creates (twice the idle timeout), the chatty sandbox and the exec'd one
    // still run.
    while active_since.elapsed() < Duration::from_secs(4) {
        if last_exec.elapsed() >= Duration::from_millis(500) {
            let (status, body) = c.exec(&execd, &["true"]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            last_exec = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(c.get(&chatty).await["state"], "running");
    assert_eq!(c.get(&execd).await["state"], "running");
    timing.phase("active-survive");

    // Left alone, the exec'd sandbox goes idle too.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let body = c.get(&execd).await;
        if body["state"] != "running" {
            assert_eq!(body["end_reason"]["kind"], "idle", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exec'd sandbox never went idle"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(c.get(&chatty).await["state"], "running");
    timing.phase("execd-idle");

    for id in [&silent, &chatty, &execd] {
        c.delete(id).await;
        assert_eq!(c.leftovers(id).await, (0, 0));
    }

    // `/metrics` saw it all: the creates, the deletes and the reconciler's idle ends.
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = app(c.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let value = |series: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse::<f64>().unwrap())
    };
    assert_eq!(value("airlock_sandbox_creates_total"), Some(3.0), "{text}");
    assert_eq!(value("airlock_sandbox_deletes_total"), Some(3.0), "{text}");
    let applied = value(r#"airlock_reconcile_actions_total{result="applied"}"#).unwrap();
    // Two idle ends, each a recorded end plus a stop.
    assert!(applied >= 4.0, "{text}");
    assert!(value(r#"airlock_reconcile_passes_total{kind="timeout"}"#).unwrap() > 0.0);
    assert_eq!(
        value(r#"airlock_dependency_up{dependency="docker"}"#),
        Some(1.0)
    );
    assert_eq!(value(r#"airlock_sandboxes{state="running"}"#), Some(0.0));
    c.shut_down().await;
}

#[tokio::test]
async fn a_fork_bomb_is_contained_by_the_pids_limit() {
    const LIMIT: u64 = 64;
    let mut timing = Timing::start("pids_bomb");
    let c = in_process("pids_bomb", &mut timing).await;
    let neighbour = c
        .create(json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]}))
        .await;
    // The sandbox's own process never forks, so it outlives the bomb's fork failures (busybox
    // sh exits when a fork fails).
    let bomb = c
        .create(json!({
            "image": TESTBOX_IMAGE,
            "cmd": ["sleep", "300"],
            "limits": {"pids": LIMIT},
        }))
        .await;
    assert_eq!(c.get(&bomb).await["limits"]["pids"], LIMIT);
    assert_eq!(
        c.pids_limit(&bomb).await,
        Some(i64::try_from(LIMIT).unwrap())
    );
    timing.phase("create");

    // The classic fork bomb, then a loop of sleepers to hold the cgroup at its limit. The exec
    // is abandoned at its timeout; once its shell exits (on a refused fork), the exec's wrapper
    // ends its process group, so the bomb does not outlive it for long.
    let bomb_cmd = "b(){ b|b& }; b; while :; do sleep 300 & done";
    let body = json!({"cmd": ["sh", "-c", bomb_cmd], "timeout_s": 2});
    let uri = format!("/v1/sandboxes/{bomb}/exec");
    let (status, body) = c.call(Method::POST, &uri, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    timing.phase("bomb-exec");

    // The limit refuses forks (the cgroup's own count of refusals: the bomb really hit it) and
    // the count never passes it. The peak is only reported: an exec's leftovers may be reaped
    // between polls, so a sampled count need not show the limit.
    let started = Instant::now();
    let mut peak = 0;
    loop {
        let pids = c.pids(&bomb).await;
        assert_eq!(pids.max, LIMIT.to_string(), "{pids:?}");
        assert!(pids.current <= LIMIT, "over the limit: {pids:?}");
        peak = peak.max(pids.current);
        if pids.refused > 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the bomb never hit the limit: {pids:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "e2e-figure pids_bomb limit_hit_s {:.2} peak {peak}",
        started.elapsed().as_secs_f64()
    );
    timing.phase("bomb-at-limit");

    // While the bomb holds its limit, the neighbour keeps working.
    for _ in 0..5 {
        let asked = Instant::now();
        let (status, body) = c.exec(&neighbour, &["echo", "ok"]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["exit_code"], 0, "{body}");
        assert_eq!(body["stdout"], "ok\n", "{body}");
        eprintln!(
            "e2e-figure pids_bomb neighbour_exec_ms {}",
            asked.elapsed().as_millis()
        );
        let pids = c.pids(&bomb).await;
        assert!(pids.current <= LIMIT, "over the limit: {pids:?}");
        assert_eq!(c.get(&bomb).await["state"], "running");
    }
    timing.phase("neighbour-ok");

    for id in [&bomb, &neighbour] {
        c.delete(id).await;
        assert_eq!(c.leftovers(id).await, (0, 0));
    }
    timing.phase("delete");
    c.shut_down().await;
}
