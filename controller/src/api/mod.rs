//! The HTTP API: an axum router under `/v1` plus `/healthz`, `/readyz` and `/metrics`.
//!
//! A handler parses its request into one typed command, runs it on the domain service that
//! owns it ([`crate::services::Services`]), and renders the result as a DTO ([`dto`]) or an
//! [`ApiError`]. Handlers never reach the store or Docker. Every `/v1` route sits behind the
//! bearer-token middleware ([`auth`]), which hands handlers the [`crate::audit::Actor`];
//! every request gets one span and one completion event.

pub mod audit;
pub mod auth;
pub mod dto;
pub mod edge;
mod egress;
pub mod error;
mod exec;
mod exec_ws;
mod files;
pub mod folders;
mod guard;
pub mod images;
mod json;
pub mod listener;
mod logs;
pub mod openapi;
mod policy;
pub mod pools;
pub mod presets;
pub mod providers;
pub mod quotas;
mod revoked;
mod sandboxes;
pub mod secrets;
mod selftest;
pub mod tokens;
pub mod users;
pub mod volumes;

pub use auth::Auth;
pub use error::{ApiError, FieldReason};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tracing::{info, Instrument};

use crate::config::Secret;
use crate::services::Services;

/// What every handler shares; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The domain services.
    pub services: Services,
    /// The accepted credentials.
    pub auth: Arc<Auth>,
    /// The token `/metrics` requires, if any (`AIRLOCK_METRICS_TOKEN`).
    metrics_token: Option<Arc<Secret>>,
    /// The client address, request timeout and security headers (see [`edge`]).
    pub edge: Arc<edge::Edge>,
}

// === impl AppState ===

impl AppState {
    /// State over `services`, authenticating with `auth`.
    pub fn new(services: Services, auth: Auth) -> Self {
        Self {
            services,
            auth: Arc::new(auth),
            metrics_token: None,
            edge: Arc::default(),
        }
    }

    /// `/metrics` answers only a request bearing `token` (when `Some`).
    pub fn with_metrics_token(mut self, token: Option<Secret>) -> Self {
        self.metrics_token = token.map(Arc::new);
        self
    }

    /// The same state with `edge`'s timeout, trusted proxies and TLS flag.
    pub fn with_edge(mut self, edge: edge::Edge) -> Self {
        self.edge = Arc::new(edge);
        self
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
        .layer(middleware::from_fn_with_state(state.clone(), edge::edge))
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
        .services
        .ready()
        .await
        .map_err(|error| ApiError::Unavailable {
            code: "not_ready",
            message: "the store or the Docker node is not reachable",
            detail: error.to_string(),
        })?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus metrics (see [`crate::metrics`]), from a snapshot at most 2 s old; behind
/// `AIRLOCK_METRICS_TOKEN` when it is set.
async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    if let Some(expected) = &state.metrics_token {
        let given = auth::bearer_token(&request).unwrap_or_default();
        // Digests first, so the comparison takes the same time whatever the lengths.
        let (expected, given) = (
            Sha256::digest(expected.expose()),
            Sha256::digest(given.as_bytes()),
        );
        if !bool::from(expected.ct_eq(&given)) {
            return ApiError::Unauthorized.into_response();
        }
    }
    let gauges = state.services.gauges().await;
    let text = state.services.metrics().render(&gauges);
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
        .services
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
