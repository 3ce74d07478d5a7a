//! Account routes: login, invites, `me`, and the admin's user list and changes.
//!
//! - `POST /v1/auth/login` and `POST /v1/auth/accept-invite` need no bearer. A failed login
//!   says the same thing, after about the same work (a dummy argon2 verify), whether or not
//!   the account exists, and is throttled per account and per source address.
//! - `GET /v1/users`, `POST /v1/users/invites` and `PATCH /v1/users/{id}` are admin-only.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;

use super::error::ApiError;
use super::{with_status, AppState, Principal};
use crate::accounts::credential::{self, NewToken, TokenKind};
use crate::accounts::user::{Role, UserId};
use crate::store::{AcceptInvite, NewInvite, StoreError, User, UserUpdate};

/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Default invite lifetime.
pub const INVITE_TTL: Duration = Duration::from_secs(7 * 86_400);
/// Longest accepted email or display name.
const MAX_NAME_BYTES: usize = 254;

/// `POST /v1/auth/login`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The account's email.
    pub email: String,
    /// The password.
    pub password: String,
}

/// A new session.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SessionDto {
    /// The bearer token (`als_…`); shown once.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Who logged in.
    pub user: UserDto,
}

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserDto {
    /// Its id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `admin`, `member` or `viewer`.
    pub role: &'static str,
    /// Disabled users' tokens stop working.
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /v1/me`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MeDto {
    /// The account.
    pub user: UserDto,
    /// The role this request acts with: the account's role narrowed by the token's scopes.
    pub effective_role: &'static str,
}

/// `POST /v1/users/invites`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// The invitee's email.
    pub email: String,
    /// Their role (default `member`).
    #[serde(default)]
    pub role: Option<String>,
    /// Lifetime in seconds (default 7 days, at most 30 days).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// A new invite.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InviteDto {
    /// The single-use invite token (`ali_…`); shown once.
    pub token: String,
    /// The invitee's email.
    pub email: String,
    /// The role they will get.
    pub role: &'static str,
    /// RFC 3339.
    pub expires_at: String,
}

/// `POST /v1/auth/accept-invite`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInviteBody {
    /// The invite token.
    pub token: String,
    /// The new account's password (at least 12 characters).
    pub password: String,
    /// The new account's display name.
    pub display_name: String,
}

/// `PATCH /v1/users/{id}`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    /// New role.
    #[serde(default)]
    pub role: Option<String>,
    /// Disable or enable the account.
    #[serde(default)]
    pub disabled: Option<bool>,
}

// === impl LoginBody ===

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("email", &self.email)
            .field("password", &"***")
            .finish()
    }
}

impl std::fmt::Debug for AcceptInviteBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptInviteBody")
            .field("token", &"***")
            .field("password", &"***")
            .field("display_name", &self.display_name)
            .finish()
    }
}

// === impl UserDto ===

impl From<&User> for UserDto {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            role: user.role.as_str(),
            disabled: user.disabled,
            created_at: super::tokens::rfc3339(user.created_at),
        }
    }
}

/// Parses a JSON body, as every handler here does.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body =
        body.map_err(|rejection| ApiError::bad_request("invalid_body", rejection.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))
}

fn internal(error: impl ToString) -> ApiError {
    ApiError::Internal(error.to_string())
}

fn parse_role(field: &str, role: Option<&str>) -> Result<Option<Role>, ApiError> {
    role.map(|role| {
        role.parse::<Role>()
            .map_err(|_unknown| ApiError::field(field, "must be admin, member or viewer"))
    })
    .transpose()
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let ok = email.len() <= MAX_NAME_BYTES
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email.to_lowercase())
    } else {
        Err(ApiError::field("email", "must be an email address"))
    }
}

/// `POST /v1/auth/login`: a session token for a correct email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = SessionDto), (status = 401), (status = 429)),
    security(()))]
pub(crate) async fn login(
    State(state): State<AppState>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SessionDto>, ApiError> {
    let LoginBody { email, password } = json_body(body)?;
    let email = email.trim().to_lowercase();
    let source = source.map(|Extension(ConnectInfo(addr))| addr.ip());
    let throttle = &state.auth.throttle;
    if let Err(retry_after_s) = throttle.attempt(&email, source) {
        super::audit::login(&state, None, &email, source, 429, "throttled").await;
        return Err(ApiError::LoginThrottled { retry_after_s });
    }
    let store = state.service.store();
    let found = store.user_login(&email).await.map_err(internal)?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let verified = credential::verify_password(password, hash)
        .await
        .map_err(internal)?;
    let user = match user {
        Some(user) if verified && !user.disabled => user,
        other => {
            // The attempt was counted as a failure when it began.
            info!(client.addr = ?source, "Login failed");
            let id = other.map(|user| user.id);
            super::audit::login(&state, id, &email, source, 401, "failed").await;
            return Err(ApiError::InvalidCredentials);
        }
    };
    throttle.succeeded(&email, source);
    let token = NewToken::generate(TokenKind::Session);
    let expires_at = crate::store::now() + SESSION_TTL;
    store
        .create_session(user.id, &token.hash, expires_at)
        .await
        .map_err(internal)?;
    info!(user.id = %user.id, "Login succeeded");
    super::audit::login(&state, Some(user.id), &email, source, 200, "succeeded").await;
    Ok(Json(SessionDto {
        token: token.text,
        expires_at: super::tokens::rfc3339(expires_at),
        user: UserDto::from(&user),
    }))
}

/// `POST /v1/auth/accept-invite`: redeems an invite, creating the account; 201 with a session.
#[utoipa::path(post, path = "/v1/auth/accept-invite", tag = "auth",
    request_body = AcceptInviteBody,
    responses((status = 201, body = SessionDto), (status = 404), (status = 409)),
    security(()))]
pub(crate) async fn accept_invite(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let dto: AcceptInviteBody = json_body(body)?;
    if let Some(problem) = credential::password_problem(&dto.password) {
        return Err(ApiError::field("password", problem));
    }
    let display_name = dto.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.len() > MAX_NAME_BYTES {
        return Err(ApiError::field("display_name", "must be 1 to 254 bytes"));
    }
    if TokenKind::of(&dto.token) != Some(TokenKind::Invite) {
        return Err(ApiError::NotFound(
            "no such invite, or it was used or expired",
        ));
    }
    let password_hash = credential::hash_password(dto.password)
        .await
        .map_err(internal)?;
    let accept = AcceptInvite {
        hash: credential::hash_token(&dto.token),
        display_name,
        password_hash,
    };
    let store = state.service.store();
    let user = match store.accept_invite(accept).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => {
            return Err(ApiError::NotFound(
                "no such invite, or it was used or expired",
            ))
        }
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::Conflict {
                code: "email_taken",
                message: "an account with this email already exists".to_owned(),
            })
        }
        Err(error) => return Err(internal(error)),
    };
    let token = NewToken::generate(TokenKind::Session);
    let expires_at = crate::store::now() + SESSION_TTL;
    store
        .create_session(user.id, &token.hash, expires_at)
        .await
        .map_err(internal)?;
    info!(user.id = %user.id, "Invite accepted");
    let (id, email) = (Some(user.id), user.email.as_str());
    super::audit::unauthenticated(
        &state,
        "auth.accept-invite",
        id,
        email,
        None,
        201,
        "accepted",
    )
    .await;
    let session = SessionDto {
        token: token.text,
        expires_at: super::tokens::rfc3339(expires_at),
        user: UserDto::from(&user),
    };
    Ok(with_status(StatusCode::CREATED, session))
}

/// `GET /v1/me`: the caller's account and effective role.
#[utoipa::path(get, path = "/v1/me", tag = "users", responses((status = 200, body = MeDto)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<MeDto>, ApiError> {
    let user = state
        .service
        .store()
        .get_user(principal.user)
        .await
        .map_err(internal)?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(MeDto {
        user: UserDto::from(&user),
        effective_role: principal.role.as_str(),
    }))
}

/// `GET /v1/users` (admin): every account.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    responses((status = 200, body = [UserDto]), (status = 403)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<UserDto>>, ApiError> {
    principal.require_admin()?;
    let users = state.service.store().list_users().await.map_err(internal)?;
    Ok(Json(users.iter().map(UserDto::from).collect()))
}

/// `POST /v1/users/invites` (admin): a single-use, expiring invite token; 409 when the email
/// already has an account.
#[utoipa::path(post, path = "/v1/users/invites", tag = "users", request_body = InviteBody,
    responses((status = 201, body = InviteDto), (status = 403), (status = 409)))]
pub(crate) async fn invite(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let dto: InviteBody = json_body(body)?;
    let email = check_email(&dto.email)?;
    let role = parse_role("role", dto.role.as_deref())?.unwrap_or(Role::Member);
    let ttl = match dto.expires_in_s {
        None => INVITE_TTL,
        Some(secs) if (60..=30 * 86_400).contains(&secs) => Duration::from_secs(secs),
        Some(_) => return Err(ApiError::field("expires_in_s", "must be 60 to 2592000")),
    };
    let store = state.service.store();
    if store
        .get_user_by_email(&email)
        .await
        .map_err(internal)?
        .is_some()
    {
        return Err(ApiError::Conflict {
            code: "email_taken",
            message: "an account with this email already exists".to_owned(),
        });
    }
    let token = NewToken::generate(TokenKind::Invite);
    let expires_at = crate::store::now() + ttl;
    let new = NewInvite {
        email: email.clone(),
        role,
        hash: token.hash.clone(),
        created_by: principal.user,
        expires_at,
    };
    store.create_invite(new).await.map_err(internal)?;
    info!(user.id = %principal.user, "Invite created");
    let dto = InviteDto {
        token: token.text,
        email,
        role: role.as_str(),
        expires_at: super::tokens::rfc3339(expires_at),
    };
    Ok(with_status(StatusCode::CREATED, dto))
}

/// `PATCH /v1/users/{id}` (admin): change a user's role or disabled flag.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", request_body = UpdateUserBody,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserDto), (status = 403), (status = 404)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserDto>, ApiError> {
    principal.require_admin()?;
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such user"))?;
    let id = id
        .parse::<uuid::Uuid>()
        .map(UserId::from_uuid)
        .map_err(|_malformed| ApiError::NotFound("no such user"))?;
    let dto: UpdateUserBody = json_body(body)?;
    let update = UserUpdate {
        role: parse_role("role", dto.role.as_deref())?,
        disabled: dto.disabled,
    };
    if id == principal.user && (update.disabled == Some(true) || update.role.is_some()) {
        return Err(ApiError::Conflict {
            code: "self_change",
            message: "admins cannot disable or demote themselves".to_owned(),
        });
    }
    let user = match state.service.store().update_user(id, update).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("no such user")),
        Err(error) => return Err(internal(error)),
    };
    info!(user.id = %id, "User updated");
    Ok(Json(UserDto::from(&user)))
}
