//! Bearer-token authentication into a [`Principal`].
//!
//! A request's bearer is one of: the configured admin token (`AIRLOCK_ADMIN_TOKEN`, compared
//! in constant time, acting as the bootstrap admin user), a login session (`als_…`) or an API
//! token (`alt_…`). Session and API tokens are looked up by their SHA-256; an unknown,
//! expired or revoked token, or one whose user is disabled, is a 401. The principal's role is
//! the user's role narrowed by the token's scopes ([`Role::narrowed`]), so handlers and the
//! route guard only look at [`Principal::role`].
//!
//! While no enabled admin can log in or present an API token and no admin token is set,
//! every request is refused with `not_bootstrapped` and a message saying how to create the
//! first admin.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::throttle::LoginThrottle;
use super::AppState;
use crate::accounts::credential::{hash_token, TokenKind};
use crate::accounts::user::{Role, UserId};
use crate::config::Secret;
use crate::store::{Bearer, Scope, Store};

/// Who is calling, once authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// Their effective role: the user's role narrowed by the token's scopes.
    pub role: Role,
    /// The kind of credential the request presented.
    pub credential: CredentialKind,
}

/// Which kind of bearer a request presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// The configured `AIRLOCK_ADMIN_TOKEN`.
    AdminToken,
    /// A login session (`als_…`).
    Session,
    /// A named API token (`alt_…`).
    ApiToken,
}

/// Which credential authenticated a request (`token:<id>`, `session:<id>` or
/// `admin-token`); a request extension beside the [`Principal`], for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential(pub String);

/// The credentials the API accepts.
#[derive(Debug)]
pub struct Auth {
    admin_token: Option<Secret>,
    admin: UserId,
    /// Failed-login throttling (see [`LoginThrottle`]).
    pub(crate) throttle: LoginThrottle,
    /// Set once some admin can sign in; never cleared.
    bootstrapped: AtomicBool,
}

// === impl Principal ===

impl Principal {
    /// What the principal may see: everything for an admin, their own objects otherwise.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::Admin => Scope::All,
            Role::Member | Role::Viewer => Scope::Owner(self.user),
        }
    }

    /// Whether the principal may change sandboxes (create, stop, delete, exec).
    pub fn can_write(&self) -> bool {
        self.role != Role::Viewer
    }

    /// Refuses with 403 when an API token tries to mint API tokens, unless it acts as an
    /// admin. Otherwise a leaked token could mint a successor, and revoking it would not end
    /// the leak: new tokens come from a login session (or offline, `airlock admin
    /// create-token`).
    pub fn require_session(&self) -> Result<(), ApiError> {
        match (self.credential, self.role) {
            (CredentialKind::ApiToken, Role::Member | Role::Viewer) => Err(ApiError::Forbidden(
                "API tokens cannot create API tokens: log in (POST /v1/auth/login) and use the \
                 session token",
            )),
            _ => Ok(()),
        }
    }

    /// Refuses with 403 unless the principal acts as an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Member | Role::Viewer => Err(ApiError::Forbidden(
                "this needs the admin role and a token with the `admin` scope",
            )),
        }
    }
}

// === impl Auth ===

impl Auth {
    /// Accepts `admin_token` (when set) as the bootstrap admin `admin`, plus every stored
    /// session and API token.
    pub fn new(admin_token: Option<Secret>, admin: UserId) -> Self {
        let bootstrapped = AtomicBool::new(admin_token.is_some());
        Self {
            admin_token,
            admin,
            throttle: LoginThrottle::default(),
            bootstrapped,
        }
    }

    /// The principal a bearer token stands for, if any.
    pub async fn authenticate(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<Principal>, ApiError> {
        let found = self.authenticate_credential(store, token).await?;
        Ok(found.map(|(principal, _credential)| principal))
    }

    /// [`Auth::authenticate`], with which credential it was (for the audit trail).
    pub async fn authenticate_credential(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<(Principal, Credential)>, ApiError> {
        if let Some(expected) = &self.admin_token {
            if bool::from(expected.expose().as_bytes().ct_eq(token.as_bytes())) {
                let principal = Principal {
                    user: self.admin,
                    role: Role::Admin,
                    credential: CredentialKind::AdminToken,
                };
                return Ok(Some((principal, Credential("admin-token".to_owned()))));
            }
        }
        let hash = hash_token(token);
        let (bearer, kind) = match TokenKind::of(token) {
            Some(TokenKind::Session) => {
                (store.session_bearer(&hash).await, CredentialKind::Session)
            }
            Some(TokenKind::Api) => (
                store.api_token_bearer(&hash).await,
                CredentialKind::ApiToken,
            ),
            Some(TokenKind::Invite) | None => return Ok(None),
        };
        let bearer = bearer.map_err(|error| ApiError::Internal(error.to_string()))?;
        Ok(bearer.filter(|bearer| !bearer.user.disabled).map(
            |Bearer {
                 user,
                 scopes,
                 credential,
             }| {
                let principal = Principal {
                    user: user.id,
                    role: user.role.narrowed(scopes),
                    credential: kind,
                };
                (principal, Credential(credential))
            },
        ))
    }

    /// Whether some admin can sign in (cached once true).
    async fn bootstrapped(&self, store: &Store) -> bool {
        if self.bootstrapped.load(Ordering::Relaxed) {
            return true;
        }
        // A store error counts as bootstrapped: the caller then answers a plain 401.
        let yes = store.has_credentials().await.unwrap_or(true);
        if yes {
            self.bootstrapped.store(true, Ordering::Relaxed);
        }
        yes
    }
}

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer_token(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Middleware: refuses the request with 401 unless it carries a valid bearer token, and
/// hands the [`Principal`] to the handlers. Until an admin can sign in, every request is
/// refused with `not_bootstrapped`, valid member tokens included.
pub(crate) async fn require_bearer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let store = state.service.store();
    if !state.auth.bootstrapped(store).await {
        return Err(ApiError::NotBootstrapped);
    }
    let found = match bearer_token(&request) {
        Some(token) if !token.is_empty() => {
            state.auth.authenticate_credential(store, token).await?
        }
        _ => None,
    };
    let Some((principal, credential)) = found else {
        return Err(ApiError::Unauthorized);
    };
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(credential);
    Ok(next.run(request).await)
}
