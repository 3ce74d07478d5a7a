//! What an agent run gets, checked from inside real sandboxes on a DinD over mTLS: a
//! non-root user (the image's `USER` when allowed), a writable `HOME` tmpfs owned by it, a
//! read-only root, and the requested working directory; root images are refused and a bad
//! workdir is a 400 naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::api::{app, AppState, Auth};
use airlock::services::{Services, Settings};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptions,
};
use e2e::controller::{parts, Parts};
use e2e::{dind_with_testbox, Timing};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tower::ServiceExt;

const TOKEN: &str = "e2e-admin-token-agent-run-0123456";
/// The testbox committed with `USER 1000:1000`.
const UID_1000_IMAGE: &str = "w15-testbox:uid1000";
/// The testbox committed with `USER 0`.
const ROOT_IMAGE: &str = "w15-testbox:root";

struct Controller {
    _dind: Dind,
    state: AppState,
    _dir: TempDir,
}

async fn controller(test: &'static str, timing: &mut Timing) -> Controller {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    commit_user(&dind, "1000:1000", UID_1000_IMAGE).await;
    commit_user(&dind, "0", ROOT_IMAGE).await;
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(
        &dind,
        &[
            ("AIRLOCK_STOP_GRACE", "1s"),
            ("AIRLOCK_HOME_TMPFS_MB", "16"),
        ],
    )
    .await;
    let services = Services::new(store, docker, Settings::from_config(&config));
    let auth = Auth::new(Some(airlock::config::Secret::new(TOKEN)), admin);
    timing.phase("controller-up");
    Controller {
        _dind: dind,
        state: AppState::new(services, auth),
        _dir: dir,
    }
}

/// Tags the testbox again with another `USER`, inside the DinD (nothing is pulled).
async fn commit_user(dind: &Dind, user: &str, image: &str) {
    let docker = dind.docker();
    let name = format!("w15-commit-{}", user.replace(':', "-"));
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let body = bollard::models::ContainerCreateBody {
        image: Some(TESTBOX_IMAGE.to_owned()),
        ..Default::default()
    };
    docker.create_container(Some(options), body).await.unwrap();
    let (repo, tag) = image.split_once(':').unwrap();
    let commit = CommitContainerOptionsBuilder::new()
        .container(&name)
        .repo(repo)
        .tag(tag)
        .changes(&format!("USER {user}"))
        .build();
    docker
        .commit_container(commit, bollard::models::ContainerConfig::default())
        .await
        .unwrap();
    docker
        .remove_container(&name, None::<RemoveContainerOptions>)
        .await
        .unwrap();
}

impl Controller {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
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
        (status, body)
    }

    /// Runs `script` with `sh -c` in sandbox `id`; returns the exit code and stdout+stderr.
    async fn sh(&self, id: &str, script: &str) -> (i64, String) {
        let uri = format!("/v1/sandboxes/{id}/exec");
        let body = json!({"cmd": ["sh", "-c", script]});
        let (status, out) = self.call(Method::POST, &uri, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        let text = format!(
            "{}{}",
            out["stdout"].as_str().unwrap(),
            out["stderr"].as_str().unwrap()
        );
        (out["exit_code"].as_i64().unwrap(), text)
    }

    async fn delete(&self, id: &str) {
        let uri = format!("/v1/sandboxes/{id}");
        let (status, body) = self.call(Method::DELETE, &uri, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
}

#[tokio::test]
async fn agent_run_home_workdir_user() {
    let mut timing = Timing::start("agent_run_home_workdir_user");
    let c = controller("agent_run_home_workdir_user", &mut timing).await;

    // The image's USER 1000:1000 is inside the default allowed range: honoured.
    let body = json!({"image": UID_1000_IMAGE, "cmd": ["sleep", "300"], "workdir": "/srv/work"});
    let (status, made) = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["user"], "1000:1000", "{made}");
    assert_eq!(made["workdir"], "/srv/work", "{made}");
    assert_eq!(made["home"], "/home/agent", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    timing.phase("create");

    let (code, out) = c.sh(&id, "id -u; id -g; pwd; echo $HOME").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1000\n1000\n/srv/work\n/home/agent\n");
    let (code, out) = c
        .sh(
            &id,
            "touch $HOME/x && mkdir -p $HOME/.config/a && ls -a $HOME",
        )
        .await;
    assert_eq!(code, 0, "the home is writable: {out}");
    assert!(out.contains(".config"), "{out}");
    let (code, out) = c.sh(&id, "touch /x").await;
    assert_ne!(code, 0, "the root stays read-only: {out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // The home is a size-capped, nosuid,nodev tmpfs owned by the user.
    let (code, out) = c.sh(&id, "grep ' /home/agent ' /proc/self/mountinfo").await;
    assert_eq!(code, 0, "{out}");
    for want in ["tmpfs", "nosuid", "nodev", "size=16384k", "mode=700"] {
        assert!(out.contains(want), "{want} missing from {out}");
    }
    let (code, out) = c
        .sh(&id, "dd if=/dev/zero of=$HOME/big bs=1M count=32 2>&1")
        .await;
    assert_ne!(code, 0, "the home is capped at 16 MiB: {out}");
    assert!(out.contains("No space left"), "{out}");
    c.delete(&id).await;
    timing.phase("uid1000");

    // The testbox (USER 65534) keeps running as nobody, with a home of its own.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let (status, made) = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["user"], "65534:65534", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let (code, out) = c.sh(&id, "id -u; pwd; touch $HOME/x && echo ok").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "65534\n/\nok\n");
    c.delete(&id).await;

    // An image whose USER is root is refused, with its own code.
    let body = json!({"image": ROOT_IMAGE, "cmd": ["true"]});
    let (status, refused) = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"], "image_runs_as_root", "{refused}");

    // A workdir that is not absolute and normalised is a 400 naming the field.
    for bad in ["work", "/a/../etc", "/a//b", "/a/"] {
        let body = json!({"image": TESTBOX_IMAGE, "workdir": bad});
        let (status, refused) = c.call(Method::POST, "/v1/sandboxes", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {refused}");
        assert!(refused.to_string().contains("workdir"), "{refused}");
    }
    timing.phase("refusals");
}
