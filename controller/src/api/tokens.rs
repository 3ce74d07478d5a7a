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
use utoipa::ToSchema;

use super::dto::rfc3339;
use super::error::ApiError;
use super::{json, with_status, AppState};
use crate::accounts::user::{Scopes, TokenScope};
use crate::accounts::{fields, CreateToken, ListTokens, RevokeToken, TokenOwner};
use crate::audit::Actor;
use crate::store::{ApiToken, TokenId};

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

/// Parses requested scope names: at least one, each known.
fn parse_scopes(names: &[String]) -> Result<Scopes, ApiError> {
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
    Ok(scopes)
}

/// `GET /v1/tokens`: the caller's tokens (every user's for an admin).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<TokenDto>>, ApiError> {
    let tokens = state.services.accounts.run(&actor, ListTokens).await?;
    Ok(Json(tokens.iter().map(TokenDto::from).collect()))
}

/// `POST /v1/tokens`: 201 with the token text, shown this once. Needs a login session (or
/// admin rights): an API token cannot mint another.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateTokenBody,
    responses((status = 201, body = NewTokenDto), (status = 400), (status = 403)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Refused callers learn nothing about their body.
    CreateToken::require_session(&actor)?;
    let dto: CreateTokenBody = json::body(body)?;
    let command = CreateToken {
        owner: TokenOwner::Actor,
        name: fields::token_name(&dto.name)?,
        scopes: parse_scopes(&dto.scopes)?,
        expires_in: dto.expires_in_s.map(Duration::from_secs),
    };
    let issued = state.services.accounts.run(&actor, command).await?;
    let dto = NewTokenDto {
        token: issued.text,
        info: TokenDto::from(&issued.token),
    };
    Ok(with_status(StatusCode::CREATED, dto))
}

/// `DELETE /v1/tokens/{id}`: revokes the token (204, also when already revoked); another
/// user's token is a 404.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 404)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such token"))?;
    let id: TokenId = id
        .parse()
        .map_err(|_malformed| ApiError::NotFound("no such token"))?;
    state
        .services
        .accounts
        .run(&actor, RevokeToken { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
