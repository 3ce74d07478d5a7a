//! The in-process controller the agent e2e tests (`agent_run`, `agent_volumes`, `agent_image`)
//! drive: the API over a DinD, members with API tokens, and the calls those tests share (JSON
//! requests, `sh -c` through exec, volumes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::credential::{NewToken, TokenKind};
use airlock::accounts::user::{Role, Scopes, TokenScope, UserId};
use airlock::api::{app, AppState, Auth};
use airlock::config::Secret;
use airlock::services::{Services, Settings};
use airlock::store::{NewApiToken, NewUser, Store};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::dind::Dind;
use tower::ServiceExt;

use crate::controller::{parts, Parts};
use crate::Timing;

/// The admin bearer the controller accepts.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-agents-0123456789";

/// A controller over a DinD, driven in-process.
#[derive(Debug)]
pub struct AgentApi {
    /// The node; dropped (and removed) with the controller.
    pub dind: Dind,
    /// The API's state.
    pub state: AppState,
    /// Its store.
    pub store: Store,
    _dir: TempDir,
}

impl AgentApi {
    /// The controller over `dind`, configured with `env` (plus a 1 s stop grace).
    pub async fn start(dind: Dind, env: &[(&str, &str)], timing: &mut Timing) -> Self {
        let env: Vec<_> = [("AIRLOCK_STOP_GRACE", "1s")]
            .into_iter()
            .chain(env.iter().copied())
            .collect();
        let Parts {
            dir,
            config,
            store,
            docker,
            admin,
        } = parts(&dind, &env).await;
        let mut settings = Settings::from_config(&config);
        settings.staging_dir = dir.path().join("uploads");
        let services = Services::new(store.clone(), docker, settings);
        let auth = Auth::new(Some(Secret::new(ADMIN_TOKEN)), admin);
        timing.phase("controller-up");
        Self {
            dind,
            state: AppState::new(services, auth),
            store,
            _dir: dir,
        }
    }

    /// A new member with a sandboxes read/write API token: its id and the token.
    pub async fn member(&self, name: &str) -> (UserId, String) {
        let user = self
            .store
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
        self.store.create_api_token(new).await.unwrap();
        (user.id, token.text)
    }

    /// One JSON request with `token`: the status and the body (`null` when empty).
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        crate::controller::api_call(&self.state, token, method, uri, body).await
    }

    /// `sh -c script` in sandbox `id`: the exit code and stdout+stderr.
    pub async fn sh(&self, token: &str, id: &str, script: &str) -> (i64, String) {
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

    /// A new volume (soft quota on these nodes): its id.
    pub async fn volume(&self, token: &str, name: &str, size_mb: u64) -> String {
        let body = json!({"name": name, "size_mb": size_mb});
        let (status, made) = self
            .call(token, Method::POST, "/v1/volumes", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        assert_eq!(made["quota_mode"], "soft", "{made}");
        made["id"].as_str().unwrap().to_owned()
    }

    /// `DELETE uri`, which must answer 204.
    pub async fn delete(&self, token: &str, uri: &str) {
        let (status, body) = self.call(token, Method::DELETE, uri, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{uri}: {body}");
    }
}

impl AgentApi {
    /// One request with raw bytes and extra headers: the status, the headers and the body.
    pub async fn raw(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body)).unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes.to_vec())
    }

    /// A request whose `body` the caller streams (e.g. from a channel), as a future to spawn:
    /// the status and the answer's body.
    pub fn streamed(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Body,
    ) -> impl std::future::Future<Output = (StatusCode, Vec<u8>)> + Send + 'static {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .unwrap();
        let state = self.state.clone();
        async move {
            let response = app(state).oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, bytes.to_vec())
        }
    }
}
