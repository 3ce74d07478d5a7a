//! Bearer-token authentication. Today one admin token from the configuration maps to the
//! bootstrap admin user in the store; per-user tokens (hashed in the store) slot in here
//! later without touching the handlers, which only see a [`Principal`].

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::Secret;
use crate::store::Scope;
use crate::user::{Role, UserId};

/// Who is calling, once authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// Their role.
    pub role: Role,
}

/// The credentials the API accepts.
#[derive(Clone, Debug)]
pub struct Auth {
    admin_token: Option<Secret>,
    admin: UserId,
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
}

// === impl Auth ===

impl Auth {
    /// Accepts `admin_token` (when set) as the bootstrap admin `admin`. Without a token every
    /// request is refused.
    pub fn new(admin_token: Option<Secret>, admin: UserId) -> Self {
        Self { admin_token, admin }
    }

    /// The principal a bearer token stands for.
    fn authenticate(&self, token: &str) -> Option<Principal> {
        let expected = self.admin_token.as_ref()?;
        let matches: bool = expected.expose().as_bytes().ct_eq(token.as_bytes()).into();
        matches.then_some(Principal {
            user: self.admin,
            role: Role::Admin,
        })
    }
}

/// Middleware: refuses the request with 401 unless it carries a valid bearer token, and
/// hands the [`Principal`] to the handlers.
pub(crate) async fn require_bearer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let principal = token
        .and_then(|token| state.auth.authenticate(token))
        .ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}
