//! The controller against a real DinD over mTLS: the API driven in-process
//! (`app(state).oneshot(..)`) over a tempdir SQLite store and a `DockerClient` connected with
//! the fixture's client certificate. Each test starts its own DinD, so they run in parallel.
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::api::{app, AppState, Auth};
use airlock::config::DockerConfig;
use airlock::docker::spec::LABEL_SANDBOX_ID;
use airlock::docker::DockerClient;
use airlock::sandbox::names::container_name;
use airlock::services::{Services, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bollard::query_parameters::{InspectContainerOptions, LogsOptions};
use e2e::controller::{parts, Parts};
use e2e::{dind_with_testbox, Timing};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tower::ServiceExt;

const TOKEN: &str = "e2e-admin-token-0123456789";

/// A DinD plus a controller (service, store, API state) wired to it.
struct Controller {
    dind: Dind,
    state: AppState,
    _dir: TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

async fn controller(test: &'static str, timing: &mut Timing, env: &[(&str, &str)]) -> Controller {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    let vars: Vec<(&str, &str)> = [("AIRLOCK_STOP_GRACE", "2s")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &vars).await;
    let services = Services::new(store, docker, Settings::from_config(&config));
    let auth = Auth::new(Some(airlock::config::Secret::new(TOKEN)), admin);
    timing.phase("controller-up");
    Controller {
        dind,
        state: AppState::new(services, auth),
        _dir: dir,
    }
}

impl Controller {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_with(method, uri, body, None).await
    }

    async fn call_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Reply { status, body }
    }

    async fn create(&self, cmd: &[&str]) -> String {
        let body = json!({"image": TESTBOX_IMAGE, "cmd": cmd});
        let reply = self.call(Method::POST, "/v1/sandboxes", Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["state"], "running", "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    async fn wait(&self, id: &str) -> Value {
        let uri = format!("/v1/sandboxes/{id}/wait?timeout_s=60");
        let reply = self.call(Method::GET, &uri, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    async fn delete(&self, id: &str) {
        let uri = format!("/v1/sandboxes/{id}");
        let reply = self.call(Method::DELETE, &uri, None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }

    /// Containers and networks in the nested daemon labelled for sandbox `id`, once a delete's
    /// background teardown has finished (`e2e::objects_after_delete`).
    async fn leftovers(&self, id: &str) -> (usize, usize) {
        e2e::objects_after_delete(&self.dind, id).await
    }

    async fn logs(&self, id: &str) -> String {
        let name = container_name(id.parse().unwrap());
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let chunks: Vec<_> = self
            .dind
            .docker()
            .logs(&name, Some(options))
            .collect()
            .await;
        chunks
            .into_iter()
            .map(|chunk| chunk.unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn controller_lifecycle() {
    let mut timing = Timing::start("controller_lifecycle");
    let c = controller("controller_lifecycle", &mut timing, &[]).await;

    // Idempotent create: a repeat returns the same sandbox; another body with the key is 409.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "labels": {"team": "a"}});
    let key = Some("lifecycle-key-1");
    let first = c
        .call_with(Method::POST, "/v1/sandboxes", Some(body.clone()), key)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["state"], "running");
    let id = first.body["id"].as_str().unwrap().to_owned();
    timing.phase("create");
    let again = c
        .call_with(Method::POST, "/v1/sandboxes", Some(body), key)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], id.as_str());
    let other = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "1"]});
    let clash = c
        .call_with(Method::POST, "/v1/sandboxes", Some(other), key)
        .await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.body);
    assert_eq!(clash.body["error"], "idempotency_mismatch");

    assert_hardened(&c, &id).await;
    let got = c
        .call(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert_eq!(got.body["state"], "running");
    let listed = c
        .call(Method::GET, "/v1/sandboxes?state=running", None)
        .await;
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    timing.phase("inspect");

    // Stop: SIGTERM (sleep as PID 1 ignores it), then SIGKILL after the 2 s grace.
    let stopped = c
        .call(Method::POST, &format!("/v1/sandboxes/{id}/stop"), None)
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(stopped.body["state"], "exited");
    assert_eq!(stopped.body["end_reason"]["kind"], "stopped");
    // Stop again and wait on an ended sandbox: nothing changes.
    let again = c
        .call(Method::POST, &format!("/v1/sandboxes/{id}/stop"), None)
        .await;
    assert_eq!(again.body["end_reason"]["kind"], "stopped");
    assert_eq!(c.wait(&id).await["end_reason"]["kind"], "stopped");
    timing.phase("stop");

    // Delete: idempotent, and nothing labelled for the sandbox is left in the nested daemon.
    c.delete(&id).await;
    c.delete(&id).await;
    let gone = c
        .call(Method::GET, &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(c.leftovers(&id).await, (0, 0));

    // Deleting a running sandbox removes it at once, with its network.
    let running = c.create(&["sleep", "300"]).await;
    assert_eq!(e2e::sandbox_objects(&c.dind, &running).await, (1, 1));
    c.delete(&running).await;
    assert_eq!(c.leftovers(&running).await, (0, 0));
    timing.phase("delete");
}

/// DESIGN.md invariant 6, as the nested daemon reports it.
async fn assert_hardened(c: &Controller, id: &str) {
    let name = container_name(id.parse().unwrap());
    let inspected = c
        .dind
        .docker()
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let host = inspected.host_config.unwrap();
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.readonly_rootfs, Some(true));
    let security = host.security_opt.unwrap();
    assert!(
        security.iter().any(|o| o.starts_with("no-new-privileges")),
        "{security:?}"
    );
    let memory = host.memory.unwrap();
    assert_eq!(memory, 512 * 1024 * 1024);
    assert_eq!(host.memory_swap, Some(memory));
    assert_eq!(host.pids_limit, Some(256));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert!(host.binds.unwrap_or_default().is_empty());
    assert!(host.devices.unwrap_or_default().is_empty());
    assert!(host.tmpfs.unwrap().contains_key("/tmp"));
    let config = inspected.config.unwrap();
    assert_eq!(config.user.as_deref(), Some("65534:65534"));
    let env = config.env.unwrap();
    assert!(!env.iter().any(|e| e.starts_with("DOCKER_")), "{env:?}");
    let labels = config.labels.unwrap();
    assert_eq!(labels.get(LABEL_SANDBOX_ID).map(String::as_str), Some(id));
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    // Exactly one network: the sandbox's own, internal, at the static .3 address.
    let networks = inspected.network_settings.unwrap().networks.unwrap();
    assert_eq!(networks.len(), 1, "{networks:?}");
    let (net_name, endpoint) = networks.iter().next().unwrap();
    let network = c
        .dind
        .docker()
        .inspect_network(
            net_name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(network.internal, Some(true));
    let address = endpoint.ip_address.clone().unwrap();
    assert!(address.ends_with(".3"), "{address}");
}

#[tokio::test]
async fn controller_sandbox_runs_unprivileged() {
    let mut timing = Timing::start("controller_sandbox_runs_unprivileged");
    let c = controller("controller_sandbox_unprivileged", &mut timing, &[]).await;
    let script = "cat /proc/self/status; \
        touch /rootfs-write 2>&1 || echo ROOTFS-WRITE-FAILED; \
        touch /tmp/ok && echo TMP-WRITABLE; \
        id -u; exit 3";
    let id = c.create(&["sh", "-c", script]).await;
    let ended = c.wait(&id).await;
    timing.phase("run");
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(ended["end_reason"]["kind"], "exited");
    assert_eq!(ended["exit_code"], 3);
    let logs = c.logs(&id).await;
    let field = |name: &str| {
        logs.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in logs:\n{logs}"))
            .to_owned()
    };
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    // As uid 65534 the write would fail anyway; EROFS (not EACCES) shows the mount is read-only.
    assert!(logs.contains("ROOTFS-WRITE-FAILED"), "{logs}");
    assert!(logs.contains("Read-only file system"), "{logs}");
    assert!(logs.contains("TMP-WRITABLE"), "{logs}");
    assert!(logs.lines().any(|l| l.trim() == "65534"), "{logs}");
    c.delete(&id).await;
    assert_eq!(c.leftovers(&id).await, (0, 0));
}

#[tokio::test]
async fn controller_failed_creates_leave_nothing_behind() {
    let mut timing = Timing::start("controller_failed_creates");
    // One /29 in the pool: the second concurrent sandbox has no subnet.
    let env = [("AIRLOCK_SANDBOX_SUBNETS", "10.213.7.0/29")];
    let c = controller("controller_failed_creates", &mut timing, &env).await;

    // An image the node lacks is a field error, decided before anything is made.
    let body = json!({"image": "airlock/not-loaded:dev"});
    let reply = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["fields"][0]["field"], "image");

    // A missing executable is the workload's own end: init starts, then exits 127.
    let missing = c.create(&["/no/such/binary"]).await;
    let ended = c.wait(&missing).await;
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 127, "{ended}");
    c.delete(&missing).await;

    // Start fails (the working directory is a file) after the network and container exist:
    // rolled back.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["true"], "workdir": "/etc/passwd"});
    let reply = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["message"], "internal error");
    let failed = c
        .call(Method::GET, "/v1/sandboxes?state=failed", None)
        .await;
    let items = failed.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{}", failed.body);
    assert_eq!(items[0]["end_reason"]["kind"], "error");
    assert_eq!(items[0]["address"], Value::Null, "the subnet was released");
    let failed_id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(c.leftovers(&failed_id).await, (0, 0));
    timing.phase("rollback");

    // The released /29 is reusable; with it taken, the next create is refused as capacity.
    let id = c.create(&["sleep", "300"]).await;
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let reply = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"], "capacity");
    let failed = c
        .call(Method::GET, "/v1/sandboxes?state=failed", None)
        .await;
    for item in failed.body["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        assert_eq!(c.leftovers(id).await, (0, 0));
        c.delete(id).await;
    }
    c.delete(&id).await;
    c.delete(&failed_id).await;
    assert_eq!(c.leftovers(&id).await, (0, 0));
    let all = c.call(Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(all.body["items"], json!([]));
    timing.phase("capacity");
}

#[tokio::test]
async fn controller_end_reasons_and_waiting() {
    let mut timing = Timing::start("controller_end_reasons");
    let c = controller("controller_end_reasons", &mut timing, &[]).await;

    // A blocking wait on a running sandbox returns when it exits by itself.
    let id = c.create(&["sh", "-c", "sleep 1; exit 3"]).await;
    let ended = c.wait(&id).await;
    assert_eq!(ended["end_reason"]["kind"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 3);
    timing.phase("exit-3");

    // A wait that gives up first is a 408; the sandbox keeps running.
    let sleeper = c.create(&["sleep", "300"]).await;
    let uri = format!("/v1/sandboxes/{sleeper}/wait?timeout_s=1");
    let reply = c.call(Method::GET, &uri, None).await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT, "{}", reply.body);
    assert_eq!(reply.body["error"], "wait_timeout");

    // A stop while somebody waits: both see `stopped`, whichever records it first.
    let waiter = {
        let c_state = c.state.clone();
        let uri = format!("/v1/sandboxes/{sleeper}/wait?timeout_s=60");
        tokio::spawn(async move {
            let request = Request::get(uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let response = app(c_state).oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    };
    let stopped = c
        .call(Method::POST, &format!("/v1/sandboxes/{sleeper}/stop"), None)
        .await;
    assert_eq!(
        stopped.body["end_reason"]["kind"], "stopped",
        "{}",
        stopped.body
    );
    let waited = waiter.await.unwrap();
    assert_eq!(waited["end_reason"]["kind"], "stopped", "{waited}");
    timing.phase("stop-while-waiting");

    // A memory hog in a 16 MiB sandbox: the kernel's OOM killer ends it. The hog is the
    // container's main process (tail keeps the last 150 MB of an endless stream), so Docker
    // reports OOMKilled for the process whose exit ends the sandbox.
    let body = json!({
        "image": TESTBOX_IMAGE,
        "cmd": ["tail", "-c", "150000000", "/dev/zero"],
        "limits": {"memory_mb": 16},
    });
    let reply = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let hog = reply.body["id"].as_str().unwrap().to_owned();
    let ended = c.wait(&hog).await;
    assert_eq!(ended["end_reason"]["kind"], "oom", "{ended}");
    timing.phase("oom");

    for id in [&id, &sleeper, &hog] {
        c.delete(id).await;
        assert_eq!(c.leftovers(id).await, (0, 0));
    }
}

#[tokio::test]
async fn controller_parallel_creates_and_deletes() {
    const N: usize = 10;
    let mut timing = Timing::start("controller_parallel");
    let c = controller("controller_parallel", &mut timing, &[]).await;
    let creates = (0..N).map(|i| {
        let state = c.state.clone();
        tokio::spawn(async move {
            let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
            let request = Request::post("/v1/sandboxes")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("idempotency-key", format!("parallel-{i}"))
                .body(Body::from(body.to_string()))
                .unwrap();
            let response = app(state).oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        })
    });
    let mut ids = Vec::new();
    let mut addresses = std::collections::HashSet::new();
    for create in creates.collect::<Vec<_>>() {
        let (status, body) = create.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["state"], "running");
        assert!(addresses.insert(body["address"].as_str().unwrap().to_owned()));
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    timing.phase("creates");
    let page = c
        .call(Method::GET, "/v1/sandboxes?state=running", None)
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), N);
    let deletes = ids.iter().map(|id| {
        let state = c.state.clone();
        let uri = format!("/v1/sandboxes/{id}");
        tokio::spawn(async move {
            let request = Request::delete(uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            app(state).oneshot(request).await.unwrap().status()
        })
    });
    for delete in deletes.collect::<Vec<_>>() {
        assert_eq!(delete.await.unwrap(), StatusCode::NO_CONTENT);
    }
    timing.phase("deletes");
    for id in &ids {
        assert_eq!(c.leftovers(id).await, (0, 0));
    }
    let all = c.call(Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(all.body["items"], json!([]));
}

/// The insecure unix-socket transport (explicit opt-in) against the host daemon, read-only.
#[tokio::test]
async fn docker_client_over_a_unix_socket() {
    let path = std::path::PathBuf::from("/var/run/docker.sock");
    let docker = DockerClient::connect(&DockerConfig::InsecureUnix { path })
        .await
        .unwrap();
    docker.ping().await.unwrap();
    assert!(docker.image_exists(TESTBOX_IMAGE).await.unwrap());
    assert!(!docker
        .image_exists("airlock/never-built:dev")
        .await
        .unwrap());
    let missing = format!("airlock-e2e-missing-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(docker.inspect(&missing).await.unwrap(), None);
    // Removing what does not exist is success: deletes stay idempotent.
    let removal = airlock::docker::Removal::Force;
    docker.remove_container(&missing, removal).await.unwrap();
    docker.remove_network(&missing).await.unwrap();
}
