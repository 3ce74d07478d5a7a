//! The HTTP API: an axum router under `/v1` plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Handlers parse and check their input into typed values, call the [`SandboxService`], and
//! turn the result into a DTO ([`dto`]) or an [`ApiError`]. Every `/v1` route sits behind the
//! bearer-token middleware ([`auth`]); every request gets one span and one completion event.

pub mod auth;
pub mod dto;
pub mod error;
mod exec;
// Interactive exec over a WebSocket (issue 4).
mod exec_ws;
mod json;
mod logs;
// The operator's policy authority: ceilings and the infrastructure list (admins).
mod policy;
mod sandboxes;
// Accounts (issue 5): users, tokens, the route guard, login throttling, OpenAPI.
mod guard;
// Allowed images and the pre-pull (issue 7).
pub mod images;
pub mod openapi;
// The network plane's routes (issue 6).
mod egress;
mod selftest;
mod throttle;
pub mod tokens;
pub mod users;
// Quotas, secrets and the audit trail (issue 5).
pub mod audit;
pub mod quotas;
pub mod secrets;

pub use auth::{Auth, CredentialKind, Principal};
pub use error::{ApiError, FieldReason};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, Instrument};

use crate::sandboxes::SandboxService;

/// What every handler shares; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The sandbox service.
    pub service: SandboxService,
    /// The accepted credentials.
    pub auth: Arc<Auth>,
}

// === impl AppState ===

impl AppState {
    /// State over `service`, authenticating with `auth`.
    pub fn new(service: SandboxService, auth: Auth) -> Self {
        Self {
            service,
            auth: Arc::new(auth),
        }
    }
}

/// The whole API as one router.
pub fn app(state: AppState) -> Router {
    // Every /v1 route is registered in `openapi::v1`, which also builds the document.
    let (v1, _doc) = openapi::v1(&state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// Liveness: the process serves requests.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store and the DinD answer.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .service
        .ready()
        .await
        .map_err(|error| ApiError::Unavailable {
            code: "not_ready",
            message: "the store or the Docker node is not reachable",
            detail: error.to_string(),
        })?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus metrics (see [`crate::metrics`]); no token, like `/healthz`.
async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = state.service.gauges().await;
    let text = state.service.metrics().render(&gauges);
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response()
}

/// Counts every request by method, route template and status.
async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .service
        .metrics()
        .request(method.as_str(), &path, status);
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route")
}

/// One span per request, and one event when it completes.
async fn trace_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        http.method = %request.method(),
        http.path = %request.uri().path(),
    );
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        info!(
            http.status = response.status().as_u16(),
            duration_ms = started.elapsed().as_millis(),
            "Request completed"
        );
        response
    }
    .instrument(span)
    .await
}

/// `StatusCode` plus JSON, for handlers that pick their success status.
pub(crate) fn with_status<T: serde::Serialize>(status: StatusCode, body: T) -> Response {
    (status, Json(body)).into_response()
}
