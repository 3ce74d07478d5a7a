//! The agent image as a preset, from inside a real sandbox on a DinD over mTLS: with the
//! `shell` preset and a workspace volume, `claude --version`, `codex --version`, `git`,
//! `npm --version` and `python3 -c` all run as uid 1000 (the image's `USER`), with a
//! read-only root, a writable `HOME` and the workspace as the working directory; a git
//! repository made in the workspace clones. `GET /v1/presets` lists the three presets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::credential::{NewToken, TokenKind};
use airlock::accounts::user::{Role, Scopes, TokenScope, UserId};
use airlock::api::{app, AppState, Auth};
use airlock::services::{Services, Settings};
use airlock::store::{NewApiToken, NewUser, Store};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use e2e::controller::{parts, Parts};
use e2e::{dind_with_testbox, Timing};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::{Dind, DindOptions};
use tower::ServiceExt;

/// The agent image (built by `make images-agents`).
const AGENT_IMAGE: &str = "airlock/agent:dev";

const ADMIN_TOKEN: &str = "e2e-admin-token-agent-image-0123456";

struct Controller {
    _dind: Dind,
    state: AppState,
    _dir: TempDir,
    store: Store,
}

async fn controller(test: &'static str, timing: &mut Timing) -> Controller {
    let dind = dind_with_testbox(DindOptions::new(test), timing)
        .await
        .unwrap();
    dind.load_image(AGENT_IMAGE).await.unwrap();
    timing.phase("load-agent");
    let Parts {
        dir,
        config,
        store,
        docker,
        admin,
    } = parts(&dind, &[("AIRLOCK_STOP_GRACE", "1s")]).await;
    let services = Services::new(store.clone(), docker, Settings::from_config(&config));
    let auth = Auth::new(Some(airlock::config::Secret::new(ADMIN_TOKEN)), admin);
    timing.phase("controller-up");
    Controller {
        _dind: dind,
        state: AppState::new(services, auth),
        _dir: dir,
        store,
    }
}

/// A member with a full API token.
async fn member(store: &Store, name: &str) -> (UserId, String) {
    let user = store
        .create_user(NewUser {
            email: format!("{name}@example.org"),
            display_name: name.to_owned(),
            role: Role::Member,
        })
        .await
        .unwrap();
    let token = NewToken::generate(TokenKind::Api);
    let scopes: Scopes = [TokenScope::SandboxesRead, TokenScope::SandboxesWrite]
        .into_iter()
        .collect();
    let new = NewApiToken {
        user: user.id,
        name: "e2e".to_owned(),
        scopes,
        hash: token.hash.clone(),
        expires_at: None,
    };
    store.create_api_token(new).await.unwrap();
    (user.id, token.text)
}

impl Controller {
    async fn call(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
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

    async fn volume(&self, token: &str, name: &str, size_mb: u64) -> String {
        let body = json!({"name": name, "size_mb": size_mb});
        let (status, made) = self
            .call(token, Method::POST, "/v1/volumes", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        assert_eq!(made["quota_mode"], "soft", "{made}");
        made["id"].as_str().unwrap().to_owned()
    }

    /// `sh -c script` in sandbox `id`: the exit code and stdout+stderr.
    async fn sh(&self, token: &str, id: &str, script: &str) -> (i64, String) {
        let uri = format!("/v1/sandboxes/{id}/exec");
        let body = json!({"cmd": ["sh", "-c", script]});
        let (status, out) = self.call(token, Method::POST, &uri, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        let text = format!(
            "{}{}",
            out["stdout"].as_str().unwrap(),
            out["stderr"].as_str().unwrap()
        );
        (out["exit_code"].as_i64().unwrap(), text)
    }

    async fn delete(&self, token: &str, uri: &str) {
        let (status, body) = self.call(token, Method::DELETE, uri, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{uri}: {body}");
    }
}

#[tokio::test]
async fn agent_image_preset_runs_the_clis() {
    let mut timing = Timing::start("agent_image");
    let c = controller("agent_image", &mut timing).await;
    let (_, a) = member(&c.store, "agent-user").await;
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
