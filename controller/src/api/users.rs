//! Account routes: login, invites, `me`, and the admin's user list and changes.
//!
//! - `POST /v1/auth/login` and `POST /v1/auth/accept-invite` need no bearer. A failed login
//!   says the same thing, after about the same work (a dummy argon2 verify), whether or not
//!   the account exists, and is throttled per account and per source address.
//! - `GET /v1/users`, `POST /v1/users/invites`, `DELETE /v1/users/invites/{id}` and
//!   `PATCH /v1/users/{id}` are admin-only.
//! - `POST /v1/auth/logout` ends the caller's session; `POST /v1/me/password` changes the
//!   caller's password and ends every other session of theirs (login sessions only).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::require_admin;
use super::dto::rfc3339;
use super::edge::ClientAddr;
use super::error::ApiError;
use super::{json, with_status, AppState};
use crate::accounts::user::{Role, UserId};
use crate::accounts::{
    fields, AcceptInvite, ChangePassword, CreateInvite, GetMe, ListUsers, Login, Logout,
    RevokeInvite, Session, UpdateUser,
};
use crate::audit::Actor;
use crate::store::User;

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
    /// The invite's id (`DELETE /v1/users/invites/{id}` withdraws it).
    pub id: String,
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
            created_at: rfc3339(user.created_at),
        }
    }
}

// === impl SessionDto ===

impl From<Session> for SessionDto {
    fn from(session: Session) -> Self {
        Self {
            token: session.token,
            expires_at: rfc3339(session.expires_at),
            user: UserDto::from(&session.user),
        }
    }
}

/// `POST /v1/auth/login`: a session token for a correct email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = SessionDto), (status = 401), (status = 429)),
    security(()))]
pub(crate) async fn login(
    State(state): State<AppState>,
    source: Option<Extension<ClientAddr>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SessionDto>, ApiError> {
    let LoginBody { email, password } = json::body(body)?;
    let actor = Actor::anonymous(source.map(|Extension(ClientAddr(ip))| ip));
    let command = Login { email, password };
    let session = state.services.accounts.run(&actor, command).await?;
    Ok(Json(SessionDto::from(session)))
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
    let dto: AcceptInviteBody = json::body(body)?;
    // The acceptance row carries no address: the account did not exist when it was sent.
    let actor = Actor::anonymous(None);
    let command = AcceptInvite {
        token: dto.token,
        password: dto.password,
        display_name: dto.display_name,
    };
    let session = state.services.accounts.run(&actor, command).await?;
    Ok(with_status(StatusCode::CREATED, SessionDto::from(session)))
}

/// `GET /v1/me`: the caller's account and effective role.
#[utoipa::path(get, path = "/v1/me", tag = "users", responses((status = 200, body = MeDto)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<MeDto>, ApiError> {
    let user = state.services.accounts.run(&actor, GetMe).await?;
    Ok(Json(MeDto {
        user: UserDto::from(&user),
        effective_role: actor.role().as_str(),
    }))
}

/// `GET /v1/users` (admin): every account.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    responses((status = 200, body = [UserDto]), (status = 403)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<UserDto>>, ApiError> {
    let users = state.services.accounts.run(&actor, ListUsers).await?;
    Ok(Json(users.iter().map(UserDto::from).collect()))
}

/// `POST /v1/users/invites` (admin): a single-use, expiring invite token; 409 when the email
/// already has an account.
#[utoipa::path(post, path = "/v1/users/invites", tag = "users", request_body = InviteBody,
    responses((status = 201, body = InviteDto), (status = 403), (status = 409)))]
pub(crate) async fn invite(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Refused callers learn nothing about their body.
    require_admin(&actor)?;
    let dto: InviteBody = json::body(body)?;
    let command = CreateInvite {
        email: fields::email(&dto.email)?,
        role: fields::role("role", dto.role.as_deref())?.unwrap_or(Role::Member),
        ttl: CreateInvite::ttl(dto.expires_in_s)?,
    };
    let invitation = state.services.accounts.run(&actor, command).await?;
    let dto = InviteDto {
        id: invitation.id.to_string(),
        token: invitation.token,
        email: invitation.email,
        role: invitation.role.as_str(),
        expires_at: rfc3339(invitation.expires_at),
    };
    Ok(with_status(StatusCode::CREATED, dto))
}

/// `PATCH /v1/users/{id}` (admin): change a user's role or disabled flag.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", request_body = UpdateUserBody,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserDto), (status = 403), (status = 404)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserDto>, ApiError> {
    require_admin(&actor)?;
    let id = user_id(id)?;
    let dto: UpdateUserBody = json::body(body)?;
    let command = UpdateUser {
        id,
        role: fields::role("role", dto.role.as_deref())?,
        disabled: dto.disabled,
    };
    let user = state.services.accounts.run(&actor, command).await?;
    Ok(Json(UserDto::from(&user)))
}

/// The path's user id; one that does not parse names no user, so it is a 404.
pub(crate) fn user_id(id: Result<Path<String>, PathRejection>) -> Result<UserId, ApiError> {
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such user"))?;
    id.parse::<uuid::Uuid>()
        .map(UserId::from_uuid)
        .map_err(|_malformed| ApiError::NotFound("no such user"))
}

/// `POST /v1/me/password`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// The current password.
    pub current_password: String,
    /// The new password (at least 12 characters).
    pub new_password: String,
}

impl std::fmt::Debug for PasswordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordBody { .. }")
    }
}

/// `POST /v1/me/password`: the answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PasswordChangedDto {
    /// How many other sessions of the account were ended.
    pub sessions_ended: u64,
}

/// `POST /v1/auth/logout`: ends the caller's login session (204).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401), (status = 403)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<StatusCode, ApiError> {
    state.services.accounts.run(&actor, Logout).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/me/password`: a new password given the current one; every other session of the
/// account ends (login sessions only).
#[utoipa::path(post, path = "/v1/me/password", tag = "users", request_body = PasswordBody,
    responses((status = 200, body = PasswordChangedDto), (status = 400), (status = 403)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PasswordChangedDto>, ApiError> {
    let dto: PasswordBody = json::body(body)?;
    let command = ChangePassword {
        current: dto.current_password,
        new: dto.new_password,
    };
    let sessions_ended = state.services.accounts.run(&actor, command).await?;
    Ok(Json(PasswordChangedDto { sessions_ended }))
}

/// `DELETE /v1/users/invites/{id}` (admin): withdraws an unused invite (204).
#[utoipa::path(delete, path = "/v1/users/invites/{id}", tag = "users",
    params(("id" = String, Path, description = "Invite id")),
    responses((status = 204), (status = 403), (status = 404)))]
pub(crate) async fn revoke_invite(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    require_admin(&actor)?;
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such invite"))?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_invalid| ApiError::NotFound("no such invite"))?;
    state
        .services
        .accounts
        .run(&actor, RevokeInvite { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
