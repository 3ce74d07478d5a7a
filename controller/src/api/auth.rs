//! Bearer-token authentication into an [`Actor`].
//!
//! A request's bearer is one of: the configured admin token (`AIRLOCK_ADMIN_TOKEN`, compared
//! in constant time as SHA-256 digests, so not even its length leaks; acting as the bootstrap
//! admin user), a login session (`als_…`) or an API
//! token (`alt_…`). Session and API tokens are resolved by the accounts service
//! ([`crate::accounts::Accounts::authenticate`]); an unknown, expired or revoked token, or one
//! whose user is disabled, is a 401. The actor's role is the user's role narrowed by the
//! token's scopes, so the route guard and the commands only look at [`Actor::role`].
//!
//! While no enabled admin can log in or present an API token and no admin token is set,
//! every request is refused with `not_bootstrapped` and a message saying how to create the
//! first admin.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::edge::ClientAddr;
use super::error::ApiError;
use super::AppState;
use crate::accounts::user::{Role, UserId};
use crate::accounts::{Accounts, ADMIN_REQUIRED};
use crate::audit::{Actor, Noise, Via};
use crate::config::Secret;

/// The credentials the API accepts besides stored ones.
#[derive(Debug)]
pub struct Auth {
    admin_token: Option<Secret>,
    admin: UserId,
    /// Set once some admin can sign in; never cleared.
    bootstrapped: AtomicBool,
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
            bootstrapped,
        }
    }

    /// The actor a bearer token stands for, if any, coming from `source`.
    pub async fn authenticate(
        &self,
        accounts: &Accounts,
        token: &str,
        source: Option<IpAddr>,
    ) -> Result<Option<Actor>, ApiError> {
        if let Some(expected) = &self.admin_token {
            // Digests, so the comparison takes the same time whatever the lengths.
            let expected = Sha256::digest(expected.expose().as_bytes());
            let given = Sha256::digest(token.as_bytes());
            if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
                let actor = Actor::new(self.admin, Role::Admin, Via::AdminToken)
                    .with_credential("admin-token".to_owned(), source);
                return Ok(Some(actor));
            }
        }
        let found = accounts
            .authenticate(token)
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        Ok(found.map(|found| {
            let actor = Actor::new(found.user, found.role, found.via)
                .with_credential(found.credential, source);
            match found.scopes {
                Some(scopes) => actor.with_scopes(scopes),
                None => actor,
            }
        }))
    }

    /// Whether some admin can sign in (cached once true).
    async fn bootstrapped(&self, accounts: &Accounts) -> bool {
        if self.bootstrapped.load(Ordering::Relaxed) {
            return true;
        }
        // A store error counts as bootstrapped: the caller then answers a plain 401.
        let yes = accounts.bootstrapped().await.unwrap_or(true);
        if yes {
            self.bootstrapped.store(true, Ordering::Relaxed);
        }
        yes
    }
}

/// Refuses with 403 unless `actor` acts as an admin.
pub(crate) fn require_admin(actor: &Actor) -> Result<(), ApiError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(ADMIN_REQUIRED))
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

/// The client's address (see [`super::edge::ClientAddr`]), when the server was started with
/// connect info.
pub(crate) fn source_ip(request: &Request) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ClientAddr>()
        .map(|ClientAddr(ip)| *ip)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        })
}

/// Middleware: refuses the request with 401 unless it carries a valid bearer token, and
/// hands the [`Actor`] to the handlers. Until an admin can sign in, every request is refused
/// with `not_bootstrapped`, valid member tokens included.
pub(crate) async fn require_bearer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let accounts = &state.services.accounts;
    if !state.auth.bootstrapped(accounts).await {
        return Err(ApiError::NotBootstrapped);
    }
    let source = source_ip(&request);
    let found = match bearer_token(&request) {
        Some(token) if !token.is_empty() => {
            state.auth.authenticate(accounts, token, source).await?
        }
        _ => None,
    };
    let Some(actor) = found else {
        // Counted into one row per (source, minute), so a token-guessing flood stays small.
        state.services.audit.noise(&Noise {
            action: "auth.unauthorized",
            source,
            account: None,
            user: None,
            status: crate::audit::status::UNAUTHORIZED,
        });
        return Err(ApiError::Unauthorized);
    };
    request.extensions_mut().insert(actor);
    Ok(next.run(request).await)
}
