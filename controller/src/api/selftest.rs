//! `/v1/sandboxes/{id}/selftest` and the `selftest` field of a create: the isolation
//! self-test's API (see [`crate::sandboxes::selftest`]).
//!
//! A create with `"selftest": "required"` whose self-test does not pass answers
//! `422 {"error":"selftest_failed","message":..,"sandbox":..,"selftest":..}`
//! ([`ApiError::SelftestFailed`]): the sandbox exists, has ended `failed` with reason
//! `error`, and holds nothing in Docker.

use airlock_probe::Report;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::dto::rfc3339;
use super::error::ApiError;
use super::sandboxes::sandbox_id;
use super::AppState;
use crate::audit::Actor;
use crate::sandbox::selftest::{Selftest, SelftestMode};
use crate::sandboxes::{GetSelftest, RunSelftest};

/// The create request's `selftest`: `true`, `false` or `"required"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SelftestField {
    /// `true` runs it and records the result; `false` does not run it.
    Flag(bool),
    /// `"required"`: a result other than `passed` fails the create.
    Named(SelftestName),
}

/// The named self-test modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelftestName {
    /// Fail the create unless the self-test passes.
    Required,
}

/// A self-test result as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SelftestDto {
    /// `passed`, `failed` or `error`.
    pub status: &'static str,
    /// The sandbox generation it ran against.
    pub generation: i64,
    /// RFC 3339.
    pub ran_at: String,
    /// Why it could not run (for `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The probe's report: every check with its target, expectation, result and detail.
    #[schema(value_type = Option<Object>)]
    pub report: Option<Report>,
}

// === impl SelftestField ===

impl SelftestField {
    /// The mode asked for; `None` for `false`.
    pub fn mode(self) -> Option<SelftestMode> {
        match self {
            Self::Flag(false) => None,
            Self::Flag(true) => Some(SelftestMode::Record),
            Self::Named(SelftestName::Required) => Some(SelftestMode::Required),
        }
    }
}

impl From<&Selftest> for SelftestDto {
    fn from(selftest: &Selftest) -> Self {
        Self {
            status: selftest.status.as_str(),
            generation: selftest.generation,
            ran_at: rfc3339(selftest.ran_at),
            message: selftest.message.clone(),
            report: selftest.report.clone(),
        }
    }
}

/// `GET /v1/sandboxes/{id}/selftest`: the latest result; 404 when none ran.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/selftest", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SelftestDto), (status = 404)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SelftestDto>, ApiError> {
    let id = sandbox_id(id)?;
    let selftest = state
        .services
        .sandboxes
        .run(&actor, GetSelftest { id })
        .await?;
    selftest
        .as_ref()
        .map(|selftest| Json(SelftestDto::from(selftest)))
        .ok_or(ApiError::NotFound("no self-test has run for this sandbox"))
}

/// `POST /v1/sandboxes/{id}/selftest`: runs it now (the sandbox must be running) and
/// returns the result; a failing result is still a 200, its `status` says so.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/selftest", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SelftestDto), (status = 403), (status = 404), (status = 409)))]
pub(crate) async fn run(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SelftestDto>, ApiError> {
    let id = sandbox_id(id)?;
    let selftest = state
        .services
        .sandboxes
        .run(&actor, RunSelftest { id })
        .await?;
    Ok(Json(SelftestDto::from(&selftest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selftest_field_takes_a_flag_or_required() {
        let parse =
            |json: &str| serde_json::from_str::<SelftestField>(json).map(SelftestField::mode);
        assert_eq!(parse("true").unwrap(), Some(SelftestMode::Record));
        assert_eq!(parse("false").unwrap(), None);
        assert_eq!(
            parse(r#""required""#).unwrap(),
            Some(SelftestMode::Required)
        );
        assert!(parse(r#""sometimes""#).is_err());
        assert!(parse("1").is_err());
    }
}
