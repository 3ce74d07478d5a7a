//! `/v1/tokens`: a user's named API tokens. A token's text is returned once, at creation;
//! the store keeps its SHA-256 only. Scopes may not exceed what the caller's effective role
//! allows, so a narrowed token cannot mint a broader one. Members and viewers see and revoke
//! their own tokens; another user's token is a 404. Admins see and revoke everyone's. Only a
//! login session (or an admin) creates tokens, so revoking a leaked token ends the leak.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::info;
use utoipa::ToSchema;

use super::error::ApiError;
use super::users::json_body;
use super::{with_status, AppState, Principal};
use crate::accounts::credential::{NewToken, TokenKind};
use crate::accounts::user::{Scopes, TokenScope};
use crate::store::{ApiToken, NewApiToken, StoreError, TokenId};

/// Longest token name.
const MAX_NAME_BYTES: usize = 100;
/// Longest token lifetime: one year.
const MAX_EXPIRES_IN_S: u64 = 366 * 86_400;

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// A name to recognise it by.
    pub name: String,
    /// `sandboxes:read`, `sandboxes:write` and/or `admin`.
    pub scopes: Vec<String>,
    /// Lifetime in seconds; absent: never expires.
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// An API token as listed (never its text).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenDto {
    /// Its id.
    pub id: String,
    /// Its owner.
    pub user_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<&'static str>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if it expires.
    pub expires_at: Option<String>,
    /// RFC 3339, if revoked.
    pub revoked_at: Option<String>,
}

/// A new token: the only time its text is shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct NewTokenDto {
    /// The bearer token (`alt_…`).
    pub token: String,
    /// Its record.
    #[serde(flatten)]
    pub info: TokenDto,
}

// === impl TokenDto ===

impl From<&ApiToken> for TokenDto {
    fn from(token: &ApiToken) -> Self {
        Self {
            id: token.id.to_string(),
            user_id: token.user.to_string(),
            name: token.name.clone(),
            scopes: token.scopes.iter().map(TokenScope::as_str).collect(),
            created_at: rfc3339(token.created_at),
            expires_at: token.expires_at.map(rfc3339),
            revoked_at: token.revoked_at.map(rfc3339),
        }
    }
}

/// RFC 3339 text of a timestamp.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_unformattable| at.to_string())
}

/// Parses and checks requested scopes against what `principal` may grant.
pub(crate) fn parse_scopes(names: &[String], principal: &Principal) -> Result<Scopes, ApiError> {
    let scopes = names
        .iter()
        .map(|name| name.parse::<TokenScope>())
        .collect::<Result<Scopes, _>>()
        .map_err(|_unknown| {
            ApiError::field("scopes", "must be sandboxes:read, sandboxes:write or admin")
        })?;
    if scopes.is_empty() {
        return Err(ApiError::field("scopes", "must name at least one scope"));
    }
    if !scopes.is_subset(Scopes::allowed_for(principal.role)) {
        return Err(ApiError::Forbidden(
            "a token cannot have scopes beyond the caller's role and token",
        ));
    }
    Ok(scopes)
}

/// `GET /v1/tokens`: the caller's tokens (every user's for an admin).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<TokenDto>>, ApiError> {
    let tokens = state
        .service
        .store()
        .list_api_tokens(principal.scope())
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(Json(tokens.iter().map(TokenDto::from).collect()))
}

/// `POST /v1/tokens`: 201 with the token text, shown this once. Needs a login session (or
/// admin rights): an API token cannot mint another.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateTokenBody,
    responses((status = 201, body = NewTokenDto), (status = 400), (status = 403)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require_session()?;
    let dto: CreateTokenBody = json_body(body)?;
    let name = dto.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::field("name", "must be 1 to 100 bytes"));
    }
    let scopes = parse_scopes(&dto.scopes, &principal)?;
    let expires_at = match dto.expires_in_s {
        None => None,
        Some(secs) if (1..=MAX_EXPIRES_IN_S).contains(&secs) => {
            Some(crate::store::now() + Duration::from_secs(secs))
        }
        Some(_) => return Err(ApiError::field("expires_in_s", "must be 1 to 31622400")),
    };
    let token = NewToken::generate(TokenKind::Api);
    let new = NewApiToken {
        user: principal.user,
        name,
        scopes,
        hash: token.hash.clone(),
        expires_at,
    };
    let stored = state
        .service
        .store()
        .create_api_token(new)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    info!(user.id = %principal.user, token.id = %stored.id, "API token created");
    let dto = NewTokenDto {
        token: token.text,
        info: TokenDto::from(&stored),
    };
    let mut response = with_status(StatusCode::CREATED, dto);
    let object = super::audit::AuditObject(stored.id.to_string());
    response.extensions_mut().insert(object);
    Ok(response)
}

/// `DELETE /v1/tokens/{id}`: revokes the token (204, also when already revoked); another
/// user's token is a 404.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 404)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such token"))?;
    let id: TokenId = id
        .parse()
        .map_err(|_malformed| ApiError::NotFound("no such token"))?;
    match state
        .service
        .store()
        .revoke_api_token(principal.scope(), id)
        .await
    {
        Ok(()) => {
            info!(user.id = %principal.user, token.id = %id, "API token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound) => Err(ApiError::NotFound("no such token")),
        Err(error) => Err(ApiError::Internal(error.to_string())),
    }
}
