//! `/v1/secrets`: the caller's secrets. Values go in once (`PUT`) and never come out of the
//! API: listings carry names and timestamps only, and a sandbox gets a value only as an
//! environment variable (`secret_env` at create). Every user sees only their own secrets, so
//! another user's secret is a 404 like a missing one. Values are sealed at rest (see
//! [`crate::secrets::vault`]).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::users::json_body;
use super::{with_status, AppState, Principal};
use crate::secrets::vault::Vault;
use crate::store::SecretMeta;

/// Longest secret name.
const MAX_NAME_BYTES: usize = 128;
/// Largest secret value.
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// `PUT /v1/secrets/{name}`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecretBody {
    /// The value (UTF-8, no NUL, at most 64 KiB). Never shown again.
    pub value: String,
}

/// A secret as listed: never its value.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SecretDto {
    /// Its name.
    pub name: String,
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
            .finish()
    }
}

// === impl SecretDto ===

impl From<&SecretMeta> for SecretDto {
    fn from(secret: &SecretMeta) -> Self {
        Self {
            name: secret.name.clone(),
            created_at: super::tokens::rfc3339(secret.created_at),
            updated_at: super::tokens::rfc3339(secret.updated_at),
        }
    }
}

fn vault(state: &AppState) -> Result<&Vault, ApiError> {
    state.service.vault().ok_or(ApiError::Unavailable {
        code: "secrets_disabled",
        message: "secrets are not enabled on this controller",
        detail: "the service runs without a vault".to_owned(),
    })
}

fn internal(error: impl ToString) -> ApiError {
    ApiError::Internal(error.to_string())
}

/// A secret name: 1 to 128 of `A-Z a-z 0-9 _ . -`.
fn secret_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = name.map_err(|_rejected| ApiError::NotFound("no such secret"))?;
    let valid = (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(ApiError::field(
            "name",
            "must be 1 to 128 of the characters A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(name)
}

/// `GET /v1/secrets`: the caller's secrets (names and timestamps; never values).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = [SecretDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<SecretDto>>, ApiError> {
    let secrets = state
        .service
        .store()
        .list_secrets(principal.user)
        .await
        .map_err(internal)?;
    Ok(Json(secrets.iter().map(SecretDto::from).collect()))
}

/// `PUT /v1/secrets/{name}`: stores or replaces a secret; 201 when new, 200 when replaced.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", request_body = PutSecretBody,
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 201, body = SecretDto), (status = 200, body = SecretDto),
        (status = 400), (status = 403), (status = 503)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = secret_name(name)?;
    let body: PutSecretBody = json_body(body)?;
    if body.value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::field("value", "must be at most 65536 bytes"));
    }
    if body.value.contains('\0') {
        return Err(ApiError::field("value", "must not contain a NUL byte"));
    }
    let sealed = vault(&state)?.seal(principal.user, &name, body.value.as_bytes());
    let store = state.service.store();
    let created = store
        .put_secret(principal.user, &name, &sealed)
        .await
        .map_err(internal)?;
    let meta = store
        .list_secrets(principal.user)
        .await
        .map_err(internal)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| internal("secret vanished after its write"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_status(status, SecretDto::from(&meta)))
}

/// `DELETE /v1/secrets/{name}`: 204, or 404 when the caller has no such secret.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204), (status = 403), (status = 404)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = secret_name(name).map_err(|_invalid| ApiError::NotFound("no such secret"))?;
    let removed = state
        .service
        .store()
        .delete_secret(principal.user, &name)
        .await
        .map_err(internal)?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such secret"))
    }
}
