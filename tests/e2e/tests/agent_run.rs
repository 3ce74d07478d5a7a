//! What an agent run gets, checked from inside real sandboxes on a DinD over mTLS: a
//! non-root user (the image's `USER` when allowed), a writable `HOME` tmpfs owned by it, a
//! read-only root, and the requested working directory; root images are refused, an image
//! that declares `VOLUME` is refused (422 `image_declares_volume`, naming the paths; Docker
//! would give it anonymous unbounded volumes), and a bad workdir is a 400 naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptions,
};
use e2e::agents::{AgentApi, ADMIN_TOKEN};
use e2e::{dind_with_testbox, Timing};
use serde_json::json;
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

/// The testbox committed with `USER 1000:1000`.
const UID_1000_IMAGE: &str = "w15-testbox:uid1000";
/// The testbox committed with `USER 0`.
const ROOT_IMAGE: &str = "w15-testbox:root";
/// The testbox committed with `VOLUME /data /var/cache/app`.
const VOLUME_IMAGE: &str = "au-testbox:volume";

async fn controller(test: &'static str, timing: &mut Timing) -> AgentApi {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    commit_user(&dind, "1000:1000", UID_1000_IMAGE).await;
    commit_user(&dind, "0", ROOT_IMAGE).await;
    let changes = r#"VOLUME ["/var/cache/app", "/data"]"#;
    commit(&dind, "au-commit-volume", changes, VOLUME_IMAGE).await;
    AgentApi::start(dind, &[("AIRLOCK_HOME_TMPFS_MB", "16")], timing).await
}

/// Tags the testbox again with another `USER`, inside the DinD (nothing is pulled).
async fn commit_user(dind: &Dind, user: &str, image: &str) {
    let name = format!("w15-commit-{}", user.replace(':', "-"));
    commit(dind, &name, &format!("USER {user}"), image).await;
}

/// Tags the testbox again as `image` with the Dockerfile `changes`, inside the DinD.
async fn commit(dind: &Dind, name: &str, changes: &str, image: &str) {
    let docker = dind.docker();
    let options = CreateContainerOptionsBuilder::new().name(name).build();
    let body = bollard::models::ContainerCreateBody {
        image: Some(TESTBOX_IMAGE.to_owned()),
        ..Default::default()
    };
    docker.create_container(Some(options), body).await.unwrap();
    let (repo, tag) = image.split_once(':').unwrap();
    let commit = CommitContainerOptionsBuilder::new()
        .container(name)
        .repo(repo)
        .tag(tag)
        .changes(changes)
        .build();
    docker
        .commit_container(commit, bollard::models::ContainerConfig::default())
        .await
        .unwrap();
    docker
        .remove_container(name, None::<RemoveContainerOptions>)
        .await
        .unwrap();
}

#[tokio::test]
async fn agent_run_home_workdir_user() {
    let mut timing = Timing::start("agent_run_home_workdir_user");
    let c = controller("agent_run_home_workdir_user", &mut timing).await;

    // The image's USER 1000:1000 is inside the default allowed range: honoured.
    let body = json!({"image": UID_1000_IMAGE, "cmd": ["sleep", "300"], "workdir": "/srv/work"});
    let (status, made) = c
        .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["user"], "1000:1000", "{made}");
    assert_eq!(made["workdir"], "/srv/work", "{made}");
    assert_eq!(made["home"], "/home/agent", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    timing.phase("create");

    let (code, out) = c
        .sh(ADMIN_TOKEN, &id, "id -u; id -g; pwd; echo $HOME")
        .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1000\n1000\n/srv/work\n/home/agent\n");
    let (code, out) = c
        .sh(
            ADMIN_TOKEN,
            &id,
            "touch $HOME/x && mkdir -p $HOME/.config/a && ls -a $HOME",
        )
        .await;
    assert_eq!(code, 0, "the home is writable: {out}");
    assert!(out.contains(".config"), "{out}");
    let (code, out) = c.sh(ADMIN_TOKEN, &id, "touch /x").await;
    assert_ne!(code, 0, "the root stays read-only: {out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // The home is a size-capped, nosuid,nodev tmpfs owned by the user.
    let (code, out) = c
        .sh(
            ADMIN_TOKEN,
            &id,
            "grep ' /home/agent ' /proc/self/mountinfo",
        )
        .await;
    assert_eq!(code, 0, "{out}");
    for want in ["tmpfs", "nosuid", "nodev", "size=16384k", "mode=700"] {
        assert!(out.contains(want), "{want} missing from {out}");
    }
    let (code, out) = c
        .sh(
            ADMIN_TOKEN,
            &id,
            "dd if=/dev/zero of=$HOME/big bs=1M count=32 2>&1",
        )
        .await;
    assert_ne!(code, 0, "the home is capped at 16 MiB: {out}");
    assert!(out.contains("No space left"), "{out}");
    c.delete(ADMIN_TOKEN, &format!("/v1/sandboxes/{id}")).await;
    timing.phase("uid1000");

    // The testbox (USER 65534) keeps running as nobody, with a home of its own.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let (status, made) = c
        .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["user"], "65534:65534", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let (code, out) = c
        .sh(ADMIN_TOKEN, &id, "id -u; pwd; touch $HOME/x && echo ok")
        .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "65534\n/\nok\n");
    c.delete(ADMIN_TOKEN, &format!("/v1/sandboxes/{id}")).await;

    // An image whose USER is root is refused, with its own code.
    let body = json!({"image": ROOT_IMAGE, "cmd": ["true"]});
    let (status, refused) = c
        .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"], "image_runs_as_root", "{refused}");

    // An image that declares VOLUME is refused, naming every path.
    let body = json!({"image": VOLUME_IMAGE, "cmd": ["true"]});
    let (status, refused) = c
        .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"], "image_declares_volume", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("/data, /var/cache/app"), "{message}");

    // A workdir that is not absolute and normalised is a 400 naming the field.
    for bad in ["work", "/a/../etc", "/a//b", "/a/"] {
        let body = json!({"image": TESTBOX_IMAGE, "workdir": bad});
        let (status, refused) = c
            .call(ADMIN_TOKEN, Method::POST, "/v1/sandboxes", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {refused}");
        assert!(refused.to_string().contains("workdir"), "{refused}");
    }
    timing.phase("refusals");
}
