//! `/v1/sandboxes` handlers: parse and check the input, call the service, shape the output.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};

use super::dto::{self, CreateSandbox, ListParams, PageDto, SandboxDto, WaitParams};
use super::error::{sandbox_fields, ApiError, FieldReason};
use super::selftest::{SelftestDto, SelftestField};
use super::{json, with_status, AppState};
use crate::audit::Actor;
use crate::egress::TenantPolicy;
use crate::sandbox::{SandboxId, SandboxState};
use crate::sandboxes::lifecycle::{
    DeleteSandbox, GetSandbox, ListSandboxes, StopSandbox, WaitSandbox,
};
use crate::sandboxes::{self, Creation, SandboxError};
use crate::store::ListQuery;

/// The idempotency header.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest accepted idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest (and default) `wait`.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// `POST /v1/sandboxes`: 201 with the new sandbox, or 200 with the one an earlier request
/// with the same `Idempotency-Key` created.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes", request_body = CreateSandbox,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay-safe create")),
    responses((status = 201, body = SandboxDto), (status = 200, body = SandboxDto),
        (status = 400), (status = 403), (status = 429)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let dto: CreateSandbox = json::body(body)?;
    // The policy object is the proxy's own: its compiler validates it here.
    let policy = match dto.policy.clone() {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => {
            Some(TenantPolicy::parse(value).map_err(|reason| ApiError::field("policy", reason))?)
        }
    };
    let idempotency_key = idempotency_key(&headers)?;
    let selftest = dto.selftest.and_then(SelftestField::mode);
    let secret_env = dto.secret_env.clone().unwrap_or_default();
    let preset = dto.preset.clone();
    let credentials = dto.credentials.clone().unwrap_or_default();
    let credentials = credentials.into_iter().map(Into::into).collect();
    let request = dto.into_request();
    let env = request.env.clone();
    let command = sandboxes::CreateSandbox {
        request,
        policy,
        secret_env,
        idempotency_key,
        selftest,
        preset,
        credentials,
    };
    let creation = state
        .services
        .sandboxes
        .run(&actor, command)
        .await
        .map_err(|error| env_fields(error, &env))?;
    render_creation(creation)
}

/// The answer to a create: 201, 200 for a repeat, or the 422 of a failed required self-test.
fn render_creation(creation: Creation) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(creation.status()).unwrap_or(StatusCode::CREATED);
    match creation {
        Creation::Created { sandbox, selftest } => {
            let mut dto = SandboxDto::from(&sandbox);
            dto.selftest = selftest.as_ref().map(SelftestDto::from);
            Ok(with_status(status, dto))
        }
        Creation::Existing(sandbox) => Ok(with_status(status, SandboxDto::from(&sandbox))),
        Creation::SelftestFailed { sandbox, selftest } => {
            Err(ApiError::selftest_failed(&sandbox, &selftest))
        }
    }
}

/// A create's invalid fields under the API's names (`env.NAME` for the domain's `env[i]`).
fn env_fields(error: SandboxError, env: &[(String, String)]) -> ApiError {
    match error {
        SandboxError::Invalid(errors) => {
            sandbox_fields(errors, |field| dto::env_field(&field, env))
        }
        other => other.into(),
    }
}

/// `GET /v1/sandboxes?state=&cursor=&limit=`.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes", params(ListParams),
    responses((status = 200, body = PageDto)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PageDto>, ApiError> {
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let query = list_query(&params)?;
    let command = ListSandboxes { query };
    let page = state.services.sandboxes.run(&actor, command).await?;
    Ok(Json(PageDto::from(&page)))
}

/// `GET /v1/sandboxes/{id}`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxDto), (status = 404)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SandboxDto>, ApiError> {
    let id = sandbox_id(id)?;
    let described = state
        .services
        .sandboxes
        .run(&actor, GetSandbox { id })
        .await?;
    let mut dto = SandboxDto::from(&described.sandbox);
    dto.selftest = described.selftest.as_ref().map(SelftestDto::from);
    Ok(Json(dto))
}

/// `DELETE /v1/sandboxes/{id}`: 204 once nothing of the sandbox runs any more (its network
/// and row follow in the background), also when it was already gone.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    match sandbox_id(id) {
        Ok(id) => {
            state
                .services
                .sandboxes
                .run(&actor, DeleteSandbox { id })
                .await?
        }
        // An id that cannot exist is already deleted.
        Err(ApiError::NotFound(_)) => {}
        Err(error) => return Err(error),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sandboxes/{id}/stop`: returns the ended sandbox.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/stop", tag = "sandboxes", params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxDto), (status = 403), (status = 404)))]
pub(crate) async fn stop(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SandboxDto>, ApiError> {
    let id = sandbox_id(id)?;
    let sandbox = state
        .services
        .sandboxes
        .run(&actor, StopSandbox { id })
        .await?;
    Ok(Json(SandboxDto::from(&sandbox)))
}

/// `GET /v1/sandboxes/{id}/wait?timeout_s=`: blocks until the sandbox ends; 408 when the
/// timeout passes first.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/wait", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), WaitParams),
    responses((status = 200, body = SandboxDto), (status = 404), (status = 408)))]
pub(crate) async fn wait(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Json<SandboxDto>, ApiError> {
    let id = sandbox_id(id)?;
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let limit = match params.timeout_s {
        None => MAX_WAIT,
        Some(secs) if secs >= 1 && secs <= MAX_WAIT.as_secs() => Duration::from_secs(secs),
        Some(_) => {
            let reason = format!("must be between 1 and {}", MAX_WAIT.as_secs());
            return Err(ApiError::field("timeout_s", reason));
        }
    };
    let command = WaitSandbox { id, limit };
    let sandbox = state.services.sandboxes.run(&actor, command).await?;
    if !sandbox.state.is_terminal() {
        return Err(ApiError::WaitTimeout);
    }
    Ok(Json(SandboxDto::from(&sandbox)))
}

/// The path's sandbox id; one that does not parse names no sandbox, so it is a 404.
pub(crate) fn sandbox_id(id: Result<Path<String>, PathRejection>) -> Result<SandboxId, ApiError> {
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such sandbox"))?;
    id.parse()
        .map_err(|_malformed| ApiError::NotFound("no such sandbox"))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()))
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

fn list_query(params: &ListParams) -> Result<ListQuery, ApiError> {
    let mut errors = Vec::new();
    let state = match params.state.as_deref().map(str::parse::<SandboxState>) {
        None => None,
        Some(Ok(state)) => Some(state),
        Some(Err(_unknown)) => {
            let names: Vec<_> = SandboxState::ALL.iter().map(|s| s.as_str()).collect();
            errors.push(reason(
                "state",
                format!("must be one of {}", names.join(", ")),
            ));
            None
        }
    };
    let after = match params.cursor.as_deref().map(str::parse::<SandboxId>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_malformed)) => {
            errors.push(reason("cursor", "must be a previous page's `next`"));
            None
        }
    };
    let limit = params.limit.unwrap_or(0);
    if params.limit.is_some() && !(1..=ListQuery::MAX_LIMIT).contains(&limit) {
        errors.push(reason(
            "limit",
            format!("must be between 1 and {}", ListQuery::MAX_LIMIT),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(ListQuery {
        state,
        after,
        limit,
    })
}

fn reason(field: &str, reason: impl Into<String>) -> FieldReason {
    FieldReason {
        field: field.to_owned(),
        reason: reason.into(),
    }
}
