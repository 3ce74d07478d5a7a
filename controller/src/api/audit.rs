//! The audit trail: a route layer that records every authenticated request that changes
//! something (every `/v1` method but `GET` and `HEAD`), explicit records for logins (which
//! carry no bearer), and `GET /v1/audit` for admins.
//!
//! A record holds who (user and credential), the action (`METHOD /v1/route/{template}`), the
//! object (the path's ids and names, or what a handler names in an `AuditObject` response
//! extension, e.g. a new sandbox's id), the client's address and the answer's status.
//! Request bodies are never recorded, so no secret value reaches the trail. A failed append
//! is logged and does not change the answer: the action has already happened.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tracing::error;
use utoipa::{IntoParams, ToSchema};

use super::auth::Credential;
use super::error::ApiError;
use super::{AppState, Principal};
use crate::accounts::user::UserId;
use crate::store::{AuditRecord, NewAuditRecord};

/// The largest page.
const MAX_LIMIT: u32 = 500;
/// The page size when none is asked for.
const DEFAULT_LIMIT: u32 = 100;

/// A response extension naming the object a request created (its path cannot).
#[derive(Clone, Debug)]
pub(crate) struct AuditObject(pub String);

/// A response extension with the record's detail, e.g. a replaced document before and
/// after (never a secret value).
#[derive(Clone, Debug)]
pub(crate) struct AuditDetail(pub String);

/// `GET /v1/audit` query.
#[derive(Clone, Copy, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Page size (1..=500; default 100).
    pub limit: Option<u32>,
    /// Only records older than this id (the previous page's `next`).
    pub before: Option<i64>,
}

/// One audit record.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditDto {
    /// Increasing id.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who acted (absent for anonymous login attempts and the offline CLI).
    pub user_id: Option<String>,
    /// Which credential: `token:<id>`, `session:<id>`, `admin-token` or `cli`.
    pub credential: Option<String>,
    /// What was done, e.g. `POST /v1/sandboxes/{id}/stop` or `auth.login`.
    pub action: String,
    /// The object acted on.
    pub object: Option<String>,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The answer's HTTP status.
    pub status: u16,
    /// More about it (never a secret value).
    pub detail: Option<String>,
}

/// One page of audit records, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditPageDto {
    /// The records.
    pub items: Vec<AuditDto>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next: Option<i64>,
}

// === impl AuditDto ===

impl From<&AuditRecord> for AuditDto {
    fn from(record: &AuditRecord) -> Self {
        let r = &record.record;
        Self {
            id: record.id,
            at: super::tokens::rfc3339(record.at),
            user_id: r.user.map(|u| u.to_string()),
            credential: r.token.clone(),
            action: r.action.clone(),
            object: r.object.clone(),
            source_ip: r.source_ip.clone(),
            status: r.status,
            detail: r.detail.clone(),
        }
    }
}

/// `GET /v1/audit?limit=&before=` (admin): the audit trail, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPageDto), (status = 400), (status = 403)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPageDto>, ApiError> {
    principal.require_admin()?;
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    let records = state
        .service
        .store()
        .list_audit(params.before, limit + 1)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    let more = records.len() > limit as usize;
    let items: Vec<AuditDto> = records
        .iter()
        .take(limit as usize)
        .map(AuditDto::from)
        .collect();
    let next = if more {
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(AuditPageDto { items, next }))
}

/// Route layer (inside the bearer layer, around the guard): records every request that is
/// not a `GET` or `HEAD`, with its answer's status.
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let action = format!(
        "{} {}",
        request.method(),
        template.as_deref().unwrap_or(&path)
    );
    let path_object = template.as_deref().and_then(|t| path_values(t, &path));
    let user = request.extensions().get::<Principal>().map(|p| p.user);
    let token = request
        .extensions()
        .get::<Credential>()
        .map(|c| c.0.clone());
    let source_ip = source_ip(&request);
    let response = next.run(request).await;
    let object = response
        .extensions()
        .get::<AuditObject>()
        .map(|o| o.0.clone())
        .or(path_object);
    let entry = NewAuditRecord {
        user,
        token,
        action,
        object,
        source_ip: source_ip.map(|ip| ip.to_string()),
        status: response.status().as_u16(),
        detail: response
            .extensions()
            .get::<AuditDetail>()
            .map(|d| d.0.clone()),
    };
    append(&state, &entry).await;
    response
}

/// Appends a login attempt: `user` when the account exists, the email as the object.
pub(crate) async fn login(
    state: &AppState,
    user: Option<UserId>,
    email: &str,
    source: Option<IpAddr>,
    status: u16,
    detail: &str,
) {
    unauthenticated(state, "auth.login", user, email, source, status, detail).await;
}

/// Appends a record for a route without a bearer (`/v1/auth/*`).
pub(crate) async fn unauthenticated(
    state: &AppState,
    action: &str,
    user: Option<UserId>,
    email: &str,
    source: Option<IpAddr>,
    status: u16,
    detail: &str,
) {
    let entry = NewAuditRecord {
        user,
        token: None,
        action: action.to_owned(),
        object: Some(email.to_owned()),
        source_ip: source.map(|ip| ip.to_string()),
        status,
        detail: Some(detail.to_owned()),
    };
    append(state, &entry).await;
}

async fn append(state: &AppState, entry: &NewAuditRecord) {
    if let Err(error) = state.service.store().append_audit(entry).await {
        error!(%error, audit.action = %entry.action, "Audit record could not be written");
    }
}

/// The client's address, when the server was started with connect info.
fn source_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The path's values for the template's `{…}` segments, joined by `/`: the object acted on.
fn path_values(template: &str, path: &str) -> Option<String> {
    let values: Vec<&str> = template
        .split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, v)| v)
        .collect();
    (!values.is_empty()).then(|| values.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_come_from_the_template_segments() {
        let t = "/v1/sandboxes/{id}/stop";
        assert_eq!(
            path_values(t, "/v1/sandboxes/abc/stop").as_deref(),
            Some("abc")
        );
        assert_eq!(path_values("/v1/sandboxes", "/v1/sandboxes"), None);
        let t = "/v1/users/{id}/quota";
        assert_eq!(path_values(t, "/v1/users/u1/quota").as_deref(), Some("u1"));
    }
}
