//! `/v1/secrets`: the caller's secrets. Values go in once (`PUT`) and never come out of the
//! API: listings carry names, exposures and timestamps only. A secret's `expose` says where a
//! value may go: `env` (an environment variable through `secret_env` at create) or
//! `egress_only` (only the egress proxy adds it to requests to a bound endpoint; the default
//! for a new secret). Every user sees only their own secrets, so another user's secret is a
//! 404 like a missing one. Values are sealed at rest (see [`crate::secrets::vault`]). The
//! rules are the secrets service's ([`crate::secrets`]).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::rfc3339;
use super::error::ApiError;
use super::{json, with_status, AppState};
use crate::audit::Actor;
use crate::secrets::{self, DeleteSecret, Exposure, ListSecrets, PutSecret};
use crate::store::SecretMeta;

/// `PUT /v1/secrets/{name}`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecretBody {
    /// The value (UTF-8, no NUL, at most 64 KiB). Never shown again.
    pub value: String,
    /// `env` (may be put into a sandbox's environment with `secret_env`) or `egress_only`
    /// (only bound at egress). Absent: `egress_only` for a new secret; a replaced secret
    /// keeps its exposure.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "egress_only")]
    pub expose: Option<String>,
}

/// A secret as listed: never its value.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SecretDto {
    /// Its name.
    pub name: String,
    /// `env` or `egress_only`.
    #[schema(value_type = String, example = "egress_only")]
    pub expose: &'static str,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when the value last changed.
    pub updated_at: String,
}

// === impl PutSecretBody ===

impl std::fmt::Debug for PutSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretBody")
            .field("value", &"***")
            .field("expose", &self.expose)
            .finish()
    }
}

// === impl SecretDto ===

impl From<&SecretMeta> for SecretDto {
    fn from(secret: &SecretMeta) -> Self {
        Self {
            name: secret.name.clone(),
            expose: secret.expose.as_str(),
            created_at: rfc3339(secret.created_at),
            updated_at: rfc3339(secret.updated_at),
        }
    }
}

/// The path's secret name (see [`secrets::name`]).
fn secret_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = name.map_err(|_rejected| ApiError::NotFound("no such secret"))?;
    Ok(secrets::name(&name)?)
}

/// The body's `expose`, when given.
fn exposure(expose: Option<&str>) -> Result<Option<Exposure>, ApiError> {
    expose
        .map(|text| {
            text.parse()
                .map_err(|_unknown| ApiError::field("expose", "must be `env` or `egress_only`"))
        })
        .transpose()
}

/// `GET /v1/secrets`: the caller's secrets (names, exposures and timestamps; never values).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = [SecretDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<SecretDto>>, ApiError> {
    let secrets = state.services.secrets.run(&actor, ListSecrets).await?;
    Ok(Json(secrets.iter().map(SecretDto::from).collect()))
}

/// `PUT /v1/secrets/{name}`: stores or replaces a secret; 201 when new, 200 when replaced;
/// a new name past the caller's `max_secrets` is a 403 `quota_exceeded`; an `expose` other
/// than `env` and `egress_only` is a 400 naming `expose`.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", request_body = PutSecretBody,
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 201, body = SecretDto), (status = 200, body = SecretDto),
        (status = 400),
        (status = 403, description = "viewer, or `quota_exceeded` (`max_secrets`)"),
        (status = 503)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = secret_name(name)?;
    let body: PutSecretBody = json::body(body)?;
    let command = PutSecret {
        name,
        expose: exposure(body.expose.as_deref())?,
        value: body.value,
    };
    let stored = state.services.secrets.run(&actor, command).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_status(status, SecretDto::from(&stored.meta)))
}

/// `DELETE /v1/secrets/{name}`: 204, or 404 when the caller has no such secret.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204), (status = 403), (status = 404)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(name) = name.map_err(|_rejected| ApiError::NotFound("no such secret"))?;
    let command = DeleteSecret { name };
    state.services.secrets.run(&actor, command).await?;
    Ok(StatusCode::NO_CONTENT)
}
