//! The agent image as a preset, from inside a real sandbox on a DinD over mTLS: with the
//! `shell` preset and a workspace volume, `claude --version`, `codex --version`, `git`,
//! `npm --version` and `python3 -c` all run as uid 1000 (the image's `USER`), with a
//! read-only root, a writable `HOME` and the workspace as the working directory; a git
//! repository made in the workspace clones. `GET /v1/presets` lists the three presets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode};
use e2e::agents::AgentApi;
use e2e::{dind_with_testbox, Timing};
use serde_json::json;
use test_support::dind::DindOptions;

/// The agent image (built by `make images-agents`).
const AGENT_IMAGE: &str = "airlock/agent:dev";

async fn controller(test: &'static str, timing: &mut Timing) -> AgentApi {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    dind.load_image(AGENT_IMAGE).await.unwrap();
    timing.phase("load-agent");
    AgentApi::start(dind, &[], timing).await
}

#[tokio::test]
async fn agent_image_preset_runs_the_clis() {
    let mut timing = Timing::start("agent_image");
    let c = controller("agent_image", &mut timing).await;
    let (_, a) = c.member("agent-user").await;
    let (status, presets) = c.call(&a, Method::GET, "/v1/presets", None).await;
    assert_eq!(status, StatusCode::OK, "{presets}");
    let names: Vec<_> = presets
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["claude-code", "codex", "shell"]);
    assert_eq!(presets[0]["image"], AGENT_IMAGE);
    assert_eq!(presets[0]["env"][0]["name"], "ANTHROPIC_API_KEY");
    let (status, refused) = c
        .call(
            &a,
            Method::POST,
            "/v1/sandboxes",
            Some(json!({"preset": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.to_string().contains("preset"), "{refused}");

    c.volume(&a, "work", 256).await;
    let body = json!({
        "preset": "shell",
        "mounts": [{"volume": "work", "target": "/workspace"}],
        "limits": {"memory_mb": 1024},
    });
    let (status, made) = c.call(&a, Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["image"], AGENT_IMAGE, "{made}");
    assert_eq!(made["cmd"], json!(["sleep", "infinity"]), "{made}");
    assert_eq!(made["user"], "1000:1000", "{made}");
    assert_eq!(made["workdir"], "/workspace", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    timing.phase("create");

    let (code, out) = c
        .sh(
            &a,
            &id,
            "id -u; pwd; echo $HOME; touch $HOME/.x && echo home-ok",
        )
        .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "1000\n/workspace\n/home/agent\nhome-ok\n")
    );
    let (code, out) = c.sh(&a, &id, "touch /usr/x").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    for (cmd, want) in [
        ("claude --version", "Claude Code"),
        ("codex --version", "codex"),
        ("npm --version", "."),
        ("python3 -c 'print(6*7)'", "42"),
        ("git --version", "git version"),
    ] {
        let (code, out) = c.sh(&a, &id, cmd).await;
        assert_eq!(code, 0, "{cmd}: {out}");
        assert!(out.contains(want), "{cmd}: {out}");
    }
    let script = "git config --global user.email a@b && git config --global user.name a && \
        git init -q src && cd src && echo hi > f && git add f && git commit -qm one && cd .. && \
        git clone -q src dst && cat dst/f";
    let (code, out) = c.sh(&a, &id, script).await;
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{out}");
    timing.phase("clis");
    c.delete(&a, &format!("/v1/sandboxes/{id}")).await;
}
