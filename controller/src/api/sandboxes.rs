//! `/v1/sandboxes` handlers: parse and check the input, call the service, shape the output.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};

use super::dto::{self, CreateSandbox, ListParams, PageDto, SandboxDto, WaitParams};
use super::error::{ApiError, FieldReason};
use super::{with_status, AppState, Principal};
use crate::sandbox::{SandboxId, SandboxState};
use crate::sandboxes::{CreateOptions, ServiceError};
use crate::store::{Created, ListQuery};

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
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body =
        body.map_err(|rejection| ApiError::bad_request("invalid_body", rejection.body_text()))?;
    let dto: CreateSandbox = super::json::parse(&body)?;
    // The egress policy: validated by the proxy's own compiler here; the service completes
    // it from the ceiling's default and checks it against the caller's ceiling.
    let policy = match dto.policy.clone() {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(super::egress::parse_policy(value)?),
    };
    let key = idempotency_key(&headers)?;
    let selftest = dto.selftest.and_then(super::selftest::SelftestField::mode);
    let secret_env = dto.secret_env.clone().unwrap_or_default();
    let request = dto.into_request();
    let env = request.env.clone();
    let created = state
        .service
        .create_with(
            principal.user,
            request,
            key,
            CreateOptions {
                secret_env,
                policy,
                role: Some(principal.role),
            },
        )
        .await
        .map_err(|error| match error {
            ServiceError::Invalid(errors) => ApiError::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldReason {
                        field: dto::env_field(&e.field, &env),
                        reason: e.problem.to_string(),
                    })
                    .collect(),
            ),
            other => other.into(),
        })?;
    // Isolation self-test at create (issue 6); in `required` mode it may fail the create.
    if let (Created::New(sandbox), Some(mode)) = (&created, selftest) {
        return super::selftest::after_create(&state, sandbox.clone(), mode).await;
    }
    let (status, sandbox) = match created {
        Created::New(sandbox) => (StatusCode::CREATED, sandbox),
        Created::Existing(sandbox) => (StatusCode::OK, sandbox),
    };
    let mut response = with_status(status, SandboxDto::from(&sandbox));
    response
        .extensions_mut()
        .insert(super::audit::AuditObject(sandbox.id.to_string()));
    Ok(response)
}

/// `GET /v1/sandboxes?state=&cursor=&limit=`.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes", params(ListParams),
    responses((status = 200, body = PageDto)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PageDto>, ApiError> {
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let query = list_query(&params)?;
    let page = state.service.list(principal.scope(), query).await?;
    Ok(Json(PageDto::from(&page)))
}

/// `GET /v1/sandboxes/{id}`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxDto), (status = 404)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SandboxDto>, ApiError> {
    let id = sandbox_id(id)?;
    let sandbox = state.service.get(principal.scope(), id).await?;
    let mut dto = SandboxDto::from(&sandbox);
    dto.selftest = super::selftest::latest(&state, principal.scope(), id).await?;
    Ok(Json(dto))
}

/// `DELETE /v1/sandboxes/{id}`: 204, also when it was already gone.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    match sandbox_id(id) {
        Ok(id) => state.service.delete(principal.scope(), id).await?,
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
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SandboxDto>, ApiError> {
    let id = sandbox_id(id)?;
    let sandbox = state.service.stop(principal.scope(), id).await?;
    Ok(Json(SandboxDto::from(&sandbox)))
}

/// `GET /v1/sandboxes/{id}/wait?timeout_s=`: blocks until the sandbox ends; 408 when the
/// timeout passes first.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/wait", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), WaitParams),
    responses((status = 200, body = SandboxDto), (status = 404), (status = 408)))]
pub(crate) async fn wait(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
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
    let sandbox = state.service.wait(principal.scope(), id, limit).await?;
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
