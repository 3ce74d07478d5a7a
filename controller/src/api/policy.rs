//! The operator's policy authority, for admins: `GET`/`PUT /v1/policy/ceilings` (the
//! ceilings document, where it came from, and what it resolves to per role; a `PUT` is
//! audited with the document before and after) and `GET /v1/policy/infrastructure` (the
//! deployment's own address space, which no policy can open).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::auth::require_admin;
use super::dto::rfc3339;
use super::error::ApiError;
use super::AppState;
use crate::accounts::user::Role;
use crate::audit::Actor;
use crate::egress::ceilings::CeilingsDoc;
use crate::egress::{CeilingsView, GetCeilings, GetInfrastructure, PutCeilings};

/// The ceilings as they stand.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct CeilingsDto {
    /// `default` (nothing stored: built-in defaults), `file` (imported from
    /// `AIRLOCK_POLICY_FILE`) or `api` (the last `PUT`).
    pub source: &'static str,
    /// `AIRLOCK_POLICY_FILE`, when set.
    pub file: Option<String>,
    /// SHA-256 of the last imported file; a restart re-imports the file when it differs.
    pub file_sha256: Option<String>,
    /// The admin who wrote the document (API writes).
    pub updated_by: Option<String>,
    /// When the document was written (RFC 3339).
    pub updated_at: Option<String>,
    /// `AIRLOCK_DEFAULT_POLICY`: `public` or `deny`.
    pub default_policy: &'static str,
    /// The document (what a `PUT` takes).
    #[schema(value_type = Object)]
    pub ceilings: Value,
    /// What applies per role (`admin`, `member`, `viewer`), with each ceiling's label.
    #[schema(value_type = Object)]
    pub effective: Value,
    /// The deployment's own address space.
    pub infrastructure: Vec<String>,
}

/// The infrastructure list.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct InfrastructureDto {
    /// CIDRs no sandbox may reach through the proxy, whatever its policy.
    pub cidrs: Vec<String>,
}

/// `GET /v1/policy/ceilings` (admin).
#[utoipa::path(get, path = "/v1/policy/ceilings", tag = "policy",
    responses((status = 200, body = CeilingsDto), (status = 403)))]
pub(crate) async fn get_ceilings(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<CeilingsDto>, ApiError> {
    let view = state.services.policy.run(&actor, GetCeilings).await?;
    Ok(Json(CeilingsDto::from(&view)))
}

/// `PUT /v1/policy/ceilings` (admin): replaces the document; 400 naming the field when it
/// cannot be accepted (a role's default policy must satisfy its own ceiling). Audited with
/// the document before and after.
#[utoipa::path(put, path = "/v1/policy/ceilings", tag = "policy",
    request_body(content = Object, description = "The ceilings document"),
    responses((status = 200, body = CeilingsDto), (status = 400), (status = 403)))]
pub(crate) async fn put_ceilings(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CeilingsDto>, ApiError> {
    require_admin(&actor)?;
    let doc: CeilingsDoc = super::json::body(body)?;
    let view = state
        .services
        .policy
        .run(&actor, PutCeilings { doc })
        .await?;
    Ok(Json(CeilingsDto::from(&view)))
}

/// `GET /v1/policy/infrastructure` (admin).
#[utoipa::path(get, path = "/v1/policy/infrastructure", tag = "policy",
    responses((status = 200, body = InfrastructureDto), (status = 403)))]
pub(crate) async fn infrastructure(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<InfrastructureDto>, ApiError> {
    let cidrs = state.services.policy.run(&actor, GetInfrastructure).await?;
    Ok(Json(InfrastructureDto {
        cidrs: cidrs.iter().map(ToString::to_string).collect(),
    }))
}

// === impl CeilingsDto ===

impl From<&CeilingsView> for CeilingsDto {
    fn from(view: &CeilingsView) -> Self {
        let roles: serde_json::Map<String, Value> = Role::ALL
            .iter()
            .map(|role| {
                let applied = view.ceilings.for_role(*role);
                let mut value = applied.ceiling.to_value();
                if let Some(object) = value.as_object_mut() {
                    object.insert("label".to_owned(), applied.label.into());
                }
                (role.as_str().to_owned(), value)
            })
            .collect();
        Self {
            source: view.source,
            file: view.file.as_ref().map(|p| p.display().to_string()),
            file_sha256: view.file_sha256.clone(),
            updated_by: view.updated_by.map(|u| u.to_string()),
            updated_at: view.updated_at.map(rfc3339),
            default_policy: view.default_policy.as_str(),
            ceilings: serde_json::to_value(view.ceilings.doc()).unwrap_or_default(),
            effective: json!({ "roles": roles }),
            infrastructure: view
                .infrastructure
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}
