//! The route guard: role and scope rules applied before any handler runs, so a new route is
//! covered by default.
//!
//! - Reading (`GET`, `HEAD`) needs only a valid bearer; commands filter by
//!   [`Actor::scope`] and answer 404 for objects the caller may not see. A `GET` that
//!   executes (the WebSocket exec, [`EXECUTES_SUFFIX`]) is a write.
//! - Anything else needs a role that can write (member or admin, with `sandboxes:write` or
//!   `admin` on the token), except the self-service routes (`/v1/tokens`, logout, password
//!   change), where every user manages their own credentials (within their role's scopes).
//! - A viewer's write to a *sandbox* or a *volume* is checked for visibility first: another
//!   user's object stays a 404, so ids cannot be probed; an own one (or a create) is a 403.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::require_admin;
use super::error::ApiError;
use super::AppState;
use crate::accounts::user::Role;
use crate::audit::Actor;
use crate::sandbox::SandboxId;
use crate::sandboxes::{GetSandbox, SandboxError};
use crate::volume::VolumeId;
use crate::volumes::{GetVolume, VolumeError};

/// Path prefixes every authenticated user may write to (their own objects only).
const SELF_SERVICE: &[&str] = &["/v1/tokens", "/v1/auth/logout", "/v1/me/password"];

/// Paths only an admin may use at all (any method): the audit trail and the policy
/// authority (ceilings, infrastructure).
const ADMIN_ONLY: &[&str] = &["/v1/audit", "/v1/policy", "/v1/pools"];

/// Suffix of the `GET` routes under `/v1/sandboxes/{id}` that run a command, and so need
/// the write role although their method reads.
const EXECUTES_SUFFIX: &str = "/exec/ws";

/// Middleware: enforces the rules above; runs after [`super::auth::require_bearer`].
pub(crate) async fn require_role(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let actor = request
        .extensions()
        .get::<Actor>()
        .cloned()
        .ok_or(ApiError::Unauthorized)?;
    let path = request.uri().path();
    if admin_only(request.method(), path) {
        require_admin(&actor)?;
        return Ok(next.run(request).await);
    }
    let reading = matches!(*request.method(), Method::GET | Method::HEAD) && !executes(path);
    let self_service = SELF_SERVICE
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")));
    if reading || self_service || actor.role() != Role::Viewer {
        return Ok(next.run(request).await);
    }
    if let Some(id) = sandbox_in_path(path) {
        match state
            .services
            .sandboxes
            .run(&actor, GetSandbox { id })
            .await
        {
            Ok(_) => {}
            Err(SandboxError::NotFound) => return Err(ApiError::NotFound("no such sandbox")),
            Err(error) => return Err(ApiError::Internal(error.to_string())),
        }
    }
    if let Some(id) = volume_in_path(path) {
        match state.services.volumes.run(&actor, GetVolume { id }).await {
            Ok(_) => {}
            Err(VolumeError::NotFound) => return Err(ApiError::NotFound("no such volume")),
            Err(error) => return Err(ApiError::Internal(error.to_string())),
        }
    }
    Err(ApiError::Forbidden(
        "read-only: this needs the member or admin role and a token with `sandboxes:write`",
    ))
}

/// Admin-only requests: anything under [`ADMIN_ONLY`], and changing a user's quota
/// (`PUT /v1/users/{id}/quota`; reading it is for admins and the user themself, which the
/// handler decides).
fn admin_only(method: &Method, path: &str) -> bool {
    let under = ADMIN_ONLY
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")));
    let quota_change = *method != Method::GET
        && *method != Method::HEAD
        && path.strip_prefix("/v1/users/").is_some_and(|rest| {
            rest.split_once('/')
                .is_some_and(|(id, tail)| !id.is_empty() && tail == "quota")
        });
    under || quota_change
}

/// Whether `path` is a `GET` route that runs a command in a sandbox.
fn executes(path: &str) -> bool {
    path.starts_with("/v1/sandboxes/") && path.trim_end_matches('/').ends_with(EXECUTES_SUFFIX)
}

/// The sandbox a `/v1/sandboxes/{id}…` path names; `None` for other paths. An id that does
/// not parse names no sandbox, and the handler answers that with a 404 itself.
fn sandbox_in_path(path: &str) -> Option<SandboxId> {
    let rest = path.strip_prefix("/v1/sandboxes/")?;
    rest.split('/').next()?.parse().ok()
}

/// The volume a `/v1/volumes/{id}…` path names; `None` for other paths.
fn volume_in_path(path: &str) -> Option<VolumeId> {
    let rest = path.strip_prefix("/v1/volumes/")?;
    rest.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_come_from_the_path() {
        let id = "0190a4a0-0000-7000-8000-000000000000";
        assert!(sandbox_in_path(&format!("/v1/sandboxes/{id}")).is_some());
        assert!(sandbox_in_path(&format!("/v1/sandboxes/{id}/stop")).is_some());
        assert!(sandbox_in_path("/v1/sandboxes").is_none());
        assert!(sandbox_in_path("/v1/sandboxes/nope").is_none());
        assert!(sandbox_in_path("/v1/tokens/x").is_none());
    }

    #[test]
    fn admin_only_paths() {
        assert!(admin_only(&Method::GET, "/v1/audit"));
        assert!(admin_only(&Method::GET, "/v1/audit/x"));
        assert!(!admin_only(&Method::GET, "/v1/auditx"));
        assert!(admin_only(&Method::GET, "/v1/policy/ceilings"));
        assert!(admin_only(&Method::PUT, "/v1/policy/ceilings"));
        assert!(admin_only(&Method::PUT, "/v1/users/abc/quota"));
        assert!(!admin_only(&Method::GET, "/v1/users/abc/quota"));
        assert!(!admin_only(&Method::PATCH, "/v1/users/abc"));
    }

    #[test]
    fn the_websocket_exec_is_a_write() {
        let id = "0190a4a0-0000-7000-8000-000000000000";
        assert!(executes(&format!("/v1/sandboxes/{id}/exec/ws")));
        assert!(executes(&format!("/v1/sandboxes/{id}/exec/ws/")));
        assert!(!executes(&format!("/v1/sandboxes/{id}/exec")));
        assert!(!executes(&format!("/v1/sandboxes/{id}/logs")));
        assert!(!executes("/v1/sandboxes"));
    }
}
