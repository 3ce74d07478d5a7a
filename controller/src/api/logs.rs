//! `GET /v1/sandboxes/{id}/logs?follow=true&since=SEQ`: the sandbox's stdout and stderr as
//! Server-Sent Events (framing in [`crate::sandboxes::logs`]).
//!
//! `since` (or the `Last-Event-ID` header, which wins when both are given, since a
//! reconnecting `EventSource` sends it) is the last sequence number the client has; the
//! stream starts after it. Without `follow` the response holds what is logged so far and
//! ends; with it, the stream ends when the sandbox's output ends. A sandbox still being
//! created has no log yet: 409 `not_started`.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use serde::Deserialize;

use super::error::ApiError;
use super::sandboxes::sandbox_id;
use super::{revoked, AppState};
use crate::audit::Actor;
use crate::sandboxes::logs::Follow;
use crate::sandboxes::StreamLogs;

/// The `Last-Event-ID` header.
const LAST_EVENT_ID: &str = "last-event-id";

/// `GET /v1/sandboxes/{id}/logs` query.
#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsParams {
    /// Keep the stream open for new lines.
    #[serde(default)]
    pub follow: Option<bool>,
    /// The last sequence number the client already has (0: from the start).
    #[serde(default)]
    pub since: Option<u64>,
}

/// `GET /v1/sandboxes/{id}/logs`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/logs", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), LogsParams),
    responses((status = 200, description = "Server-sent events", content_type = "text/event-stream"),
        (status = 404)))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<LogsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = sandbox_id(id)?;
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let after = match last_event_id(&headers)? {
        Some(seq) => seq,
        None => params.since.unwrap_or(0),
    };
    let follow = match params.follow {
        Some(true) => Follow::Yes,
        _ => Follow::No,
    };
    let command = StreamLogs { id, after, follow };
    let stream = state.services.sandboxes.run(&actor, command).await?;
    // A followed stream ends with its credential (revoked, logged out, user disabled).
    let stream = stream.take_until(revoked::ended(&state, &headers));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be a sequence number from this stream",
            )
        })
}
