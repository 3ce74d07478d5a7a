//! Exec and logs through the controller API, driven in-process (`app(state).oneshot(..)`)
//! against a real DinD over mTLS: exit codes, stdout/stderr, stdin, env, the sandbox user,
//! output caps, timeouts, 404/409; and log SSE streams that resume after a disconnect with
//! nothing lost and nothing repeated, and end when the sandbox exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock::api::{app, AppState, Auth};
use airlock::services::{Services, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use e2e::controller::{parts, Parts};
use e2e::{dind_with_testbox, Timing};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tower::ServiceExt;

const TOKEN: &str = "e2e-admin-token-logs-exec-0123";
/// Longest any single stream read may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

struct Controller {
    /// Kept alive for the test; it removes everything it ran on drop.
    _dind: Dind,
    state: AppState,
    _dir: TempDir,
}

/// One parsed SSE event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    id: u64,
    kind: String,
    data: String,
}

async fn controller(test: &'static str, timing: &mut Timing) -> Controller {
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
    let services = Services::new(store, docker, Settings::from_config(&config));
    let auth = Auth::new(Some(airlock::config::Secret::new(TOKEN)), admin);
    timing.phase("controller-up");
    Controller {
        _dind: dind,
        state: AppState::new(services, auth),
        _dir: dir,
    }
}

impl Controller {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> axum::response::Response {
        self.send_with(method, uri, body, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> axum::response::Response {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        app(self.state.clone()).oneshot(request).await.unwrap()
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.send(method, uri, body).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, body)
    }

    async fn create(&self, cmd: &[&str]) -> String {
        let body = json!({"image": TESTBOX_IMAGE, "cmd": cmd});
        let (status, body) = self.call(Method::POST, "/v1/sandboxes", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        id
    }

    async fn exec(&self, id: &str, body: Value) -> (StatusCode, Value) {
        let uri = format!("/v1/sandboxes/{id}/exec");
        self.call(Method::POST, &uri, Some(body)).await
    }

    async fn delete(&self, id: &str) {
        let uri = format!("/v1/sandboxes/{id}");
        let (status, body) = self.call(Method::DELETE, &uri, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }

    /// Opens the log stream and reads events until `enough` says stop (then disconnects) or
    /// the stream ends. Returns the events and whether the stream ended by itself.
    async fn read_logs(
        &self,
        uri: &str,
        headers: &[(&str, &str)],
        enough: impl Fn(&[Event]) -> bool,
    ) -> (Vec<Event>, bool) {
        let response = self.send_with(Method::GET, uri, None, headers).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        let mut text = String::new();
        let mut events = Vec::new();
        loop {
            let frame = tokio::time::timeout(DEADLINE, body.frame())
                .await
                .expect("the log stream stalled");
            let Some(frame) = frame else {
                assert!(text.is_empty(), "unterminated event: {text:?}");
                return (events, true);
            };
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            text.push_str(std::str::from_utf8(&data).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    events.push(event);
                }
            }
            if enough(&events) {
                return (events, false);
            }
        }
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut id = None;
    let mut kind = String::new();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        }
    }
    // A comment-only block (keep-alive) has no id.
    Some(Event {
        id: id?,
        kind,
        data: data.join("\n"),
    })
}

#[tokio::test]
async fn controller_exec() {
    let mut timing = Timing::start("controller_exec");
    let c = controller("controller_exec", &mut timing).await;
    let id = c.create(&["sleep", "300"]).await;
    timing.phase("create");

    let (status, out) = c
        .exec(&id, json!({"cmd": ["sh", "-c", "echo hi; exit 7"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["exit_code"], 7, "{out}");
    assert_eq!(out["stdout"], "hi\n");
    assert_eq!(out["stderr"], "");
    assert_eq!(out["truncated"], false);
    assert_eq!(out["timed_out"], false);

    let (_, out) = c
        .exec(
            &id,
            json!({"cmd": ["sh", "-c", "echo oops >&2; echo fine"]}),
        )
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(out["stderr"], "oops\n");
    assert_eq!(out["stdout"], "fine\n");

    // stdin is written, then closed (cat ends); env reaches the process; the sandbox's user.
    let (_, out) = c
        .exec(&id, json!({"cmd": ["cat"], "stdin": "piped\nin\n"}))
        .await;
    assert_eq!(out["stdout"], "piped\nin\n", "{out}");
    assert_eq!(out["exit_code"], 0);
    let script = "echo $FOO; id -u; grep CapEff /proc/self/status";
    let (_, out) = c
        .exec(
            &id,
            json!({"cmd": ["sh", "-c", script], "env": {"FOO": "bar"}}),
        )
        .await;
    let stdout = out["stdout"].as_str().unwrap();
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines[..2], ["bar", "65534"], "{out}");
    assert!(lines[2].ends_with("0000000000000000"), "{out}");
    timing.phase("exec-basics");

    // More than 1 MiB of output is cut at 1 MiB, and the process still finishes.
    let (_, out) = c
        .exec(
            &id,
            json!({"cmd": ["sh", "-c", "head -c 1500000 /dev/zero | tr '\\0' x; exit 3"]}),
        )
        .await;
    assert_eq!(out["exit_code"], 3, "{}", out["stderr"]);
    assert_eq!(out["truncated"], true);
    assert_eq!(out["stdout"].as_str().unwrap().len(), 1024 * 1024);
    timing.phase("exec-truncated");

    // A command that outlives its timeout: timed_out, no exit code, answered promptly.
    let (status, out) = c
        .exec(
            &id,
            json!({"cmd": ["sh", "-c", "echo started; sleep 30"], "timeout_s": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["timed_out"], true, "{out}");
    assert_eq!(out["exit_code"], Value::Null);
    assert_eq!(out["stdout"], "started\n");
    assert!(out["duration_ms"].as_u64().unwrap() < 5000, "{out}");
    timing.phase("exec-timeout");

    // Bad input, an unknown sandbox, and a stopped one.
    let (status, out) = c
        .exec(&id, json!({"cmd": [], "env": {"9X": "v"}, "timeout_s": 0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    let fields: Vec<_> = out["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["cmd", "env.9X", "timeout_s"], "{out}");
    let (status, _) = c.exec(&id, json!({"cmd": ["true"], "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unknown = uuid::Uuid::new_v4();
    let (status, out) = c.exec(&unknown.to_string(), json!({"cmd": ["true"]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{out}");
    let (status, out) = c
        .call(Method::POST, &format!("/v1/sandboxes/{id}/stop"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, out) = c.exec(&id, json!({"cmd": ["true"]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert_eq!(out["error"], "not_running");
    timing.phase("exec-errors");
    c.delete(&id).await;
}

#[tokio::test]
async fn controller_logs_resume() {
    let mut timing = Timing::start("controller_logs_resume");
    let c = controller("controller_logs_resume", &mut timing).await;
    // 60 numbered stdout lines over about 3 s, and a stderr line after every tenth.
    let script = "i=1; while [ $i -le 60 ]; do echo line-$i; \
        if [ $((i % 10)) = 0 ]; then echo err-$i >&2; fi; i=$((i+1)); sleep 0.05; done";
    let id = c.create(&["sh", "-c", script]).await;
    timing.phase("create");

    // Read a few events, then disconnect.
    let uri = format!("/v1/sandboxes/{id}/logs?follow=true");
    let (first, ended) = c.read_logs(&uri, &[], |events| events.len() >= 5).await;
    assert!(!ended);
    assert_eq!(first.len(), 5);
    let last = first.last().unwrap().id;
    timing.phase("first-read");

    // Reconnect from the last seq: the rest, and the stream ends when the sandbox exits.
    let uri = format!("/v1/sandboxes/{id}/logs?follow=true&since={last}");
    let (rest, ended) = c.read_logs(&uri, &[], |_| false).await;
    assert!(ended, "the follow stream ends when the sandbox exits");
    timing.phase("resume-to-end");
    let all: Vec<Event> = first.iter().chain(&rest).cloned().collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.id).collect();
    let expected: Vec<u64> = (1..=66).collect();
    assert_eq!(seqs, expected, "no loss, no duplicates");
    let stdout: Vec<&str> = all
        .iter()
        .filter(|e| e.kind == "stdout")
        .map(|e| e.data.as_str())
        .collect();
    let numbered: Vec<String> = (1..=60).map(|i| format!("line-{i}")).collect();
    assert_eq!(stdout, numbered);
    let stderr: Vec<&str> = all
        .iter()
        .filter(|e| e.kind == "stderr")
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(
        stderr,
        ["err-10", "err-20", "err-30", "err-40", "err-50", "err-60"]
    );
    assert!(all.iter().all(|e| e.kind != "gap"));

    // Last-Event-ID resumes too (and wins over `since`); without follow the buffered lines
    // come back and the stream ends; after the end, a replay numbers lines the same way.
    let uri = format!("/v1/sandboxes/{id}/logs?follow=true&since=1");
    let (tail, ended) = c
        .read_logs(&uri, &[("last-event-id", "60")], |_| false)
        .await;
    assert!(ended);
    assert_eq!(tail, all[60..].to_vec());
    let uri = format!("/v1/sandboxes/{id}/logs");
    let (once, ended) = c.read_logs(&uri, &[], |_| false).await;
    assert!(ended);
    assert_eq!(once, all);
    // The ended, unread ring is dropped at this request; a new follower replays Docker's log
    // and numbers the lines the same way.
    let uri = format!("/v1/sandboxes/{id}/logs?follow=true");
    let (replayed, ended) = c.read_logs(&uri, &[], |_| false).await;
    assert!(ended);
    assert_eq!(replayed, all);
    assert_eq!(
        c.state.services.sandboxes.logs().len(),
        1,
        "one ring per sandbox"
    );
    let (bad, _) = c
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{id}/logs?since=-1"),
            None,
        )
        .await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);
    let unknown = uuid::Uuid::new_v4();
    let (missing, _) = c
        .call(Method::GET, &format!("/v1/sandboxes/{unknown}/logs"), None)
        .await;
    assert_eq!(missing, StatusCode::NOT_FOUND);
    timing.phase("replays");
    c.delete(&id).await;
}
