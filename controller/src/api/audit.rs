//! The audit trail over HTTP: `GET /v1/audit` for admins, and the refusal recorder.
//!
//! `GET /v1/audit` pages the trail in (time, id) order, newest first or (`order=oldest`)
//! oldest first, within `since`/`until` (RFC 3339), continuing from the opaque `next`
//! cursor of the previous page.
//!
//! Commands file their own rows ([`crate::audit`]). The recorder runs every request it sees
//! (every `/v1` method but `GET` and `HEAD`) on a task of its own, so a client that hangs up
//! mid-request (axum then drops the request's future) never cuts an action off from its row:
//! the action and its row finish either way. The recorder, a route layer between the
//! bearer layer and the route guard, also covers every authenticated request that changes
//! something (every `/v1` method but `GET` and `HEAD`) whose command filed no row: a request
//! the guard refused, one whose body or path did not parse, one a command refused (no such
//! object, over quota, invalid), and a delete of an id that cannot exist. Its row names the
//! route template (`METHOD /v1/route/{template}`), the path's ids and names as the object,
//! the caller, the client's address and the answer's status. Request bodies are never
//! recorded, so no secret value reaches the trail.

use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::auth::source_ip;
use super::dto::rfc3339;
use super::error::ApiError;
use super::AppState;
use crate::audit::{Actor, AuditCursor, ListAudit, Receipt};
use crate::store::{AuditRecord, NewAuditRecord};

/// The page size when none is asked for.
const DEFAULT_LIMIT: u32 = 100;

/// `GET /v1/audit` query.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Page size (1..=500; default 100).
    pub limit: Option<u32>,
    /// Only records written at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Only records written before this instant (RFC 3339).
    pub until: Option<String>,
    /// The previous page's `next` (opaque; from a listing in the same order).
    pub cursor: Option<String>,
    /// `newest` (default) or `oldest` first.
    pub order: Option<String>,
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
    /// How many events the record stands for (failed logins and refused tokens are counted
    /// into one record per source, account and minute).
    pub count: u64,
}

/// One page of audit records.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditPageDto {
    /// The records, in the order asked for.
    pub items: Vec<AuditDto>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next: Option<String>,
}

// === impl AuditDto ===

impl From<&AuditRecord> for AuditDto {
    fn from(record: &AuditRecord) -> Self {
        let r = &record.record;
        Self {
            id: record.id,
            at: rfc3339(record.at),
            user_id: r.user.map(|u| u.to_string()),
            credential: r.token.clone(),
            action: r.action.clone(),
            object: r.object.clone(),
            source_ip: r.source_ip.clone(),
            status: r.status,
            detail: r.detail.clone(),
            count: r.count.max(1),
        }
    }
}

/// `GET /v1/audit?limit=&since=&until=&cursor=&order=` (admin): the audit trail.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPageDto), (status = 400), (status = 403)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPageDto>, ApiError> {
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let oldest_first = match params.order.as_deref() {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(_) => return Err(ApiError::field("order", "must be `newest` or `oldest`")),
    };
    let cursor = params
        .cursor
        .as_deref()
        .map(AuditCursor::parse)
        .transpose()?;
    let command = ListAudit {
        since: instant("since", params.since.as_deref())?,
        until: instant("until", params.until.as_deref())?,
        cursor,
        oldest_first,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let page = state.services.audit.run(&actor, command).await?;
    Ok(Json(AuditPageDto {
        items: page.items.iter().map(AuditDto::from).collect(),
        next: page.next.map(|c| c.encode()),
    }))
}

/// An optional RFC 3339 query value; a 400 naming `field` when it is not one.
fn instant(field: &str, text: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    text.map(|text| {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|_unparsed| {
            ApiError::field(field, "must be an RFC 3339 time like 2026-01-01T00:00:00Z")
        })
    })
    .transpose()
}

/// Route layer (inside the bearer layer, around the guard): hands the actor a receipt, and
/// records a request that is not a `GET` or `HEAD` when no command filed its row.
pub(crate) async fn record(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let receipt = Receipt::default();
    let actor = request.extensions_mut().remove::<Actor>();
    let actor = actor.map(|actor| actor.with_receipt(receipt.clone()));
    if let Some(actor) = &actor {
        request.extensions_mut().insert(actor.clone());
    }
    let route = Route::of(&request);
    // The action and its row finish even when the client hangs up and this future is dropped.
    let task = tokio::spawn(async move {
        let response = next.run(request).await;
        if !receipt.filed() {
            let row = route.row(actor.as_ref(), response.status().as_u16());
            state.services.audit.append(&row).await;
        }
        response
    });
    match task.await {
        Ok(response) => response,
        Err(error) => ApiError::Internal(format!("request task: {error}")).into_response(),
    }
}

/// What the recorder knows of a request before it runs.
struct Route {
    action: String,
    object: Option<String>,
    source_ip: Option<String>,
}

// === impl Route ===

impl Route {
    fn of(request: &Request) -> Self {
        let template = request
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        let path = request.uri().path();
        Self {
            action: format!(
                "{} {}",
                request.method(),
                template.as_deref().unwrap_or(path)
            ),
            object: template.as_deref().and_then(|t| path_values(t, path)),
            source_ip: source_ip(request).map(|ip| ip.to_string()),
        }
    }

    fn row(self, actor: Option<&Actor>, status: u16) -> NewAuditRecord {
        NewAuditRecord {
            user: actor.and_then(Actor::user),
            token: actor.and_then(|a| a.credential().map(str::to_owned)),
            action: self.action,
            object: self.object,
            source_ip: self.source_ip,
            status,
            detail: None,
            count: 1,
        }
    }
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
