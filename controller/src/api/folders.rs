//! `/v1/folders`: host folders. Admins register (`POST`), read (`GET /{id}`), change grants
//! (`PUT /{id}/grants`; 409 `folder_in_use` while a live sandbox whose owner would lose the
//! grant mounts it), delete (`DELETE /{id}`, 409 `folder_in_use` while mounted) and list
//! candidates under the root (`GET /available`). `GET /v1/folders` lists every folder for an
//! admin and, for anyone else, the folders granted to them, without host paths or grants.
//! The rules are the folders service's ([`crate::folders`]).

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
use super::error::{ApiError, FieldReason};
use super::volumes::HolderDto;
use super::{json, with_status, AppState};
use crate::accounts::user::UserId;
use crate::audit::Actor;
use crate::folder::FolderId;
use crate::folders::{
    CreateFolder, DeleteFolder, FolderRequest, FolderView, GetFolder, ListAvailable, ListFolders,
    SetFolderGrants,
};

/// `POST /v1/folders`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFolderBody {
    /// `^[a-z0-9][a-z0-9_.-]{0,62}$`, unique on the controller.
    pub name: String,
    /// Absolute host path; its realpath must lie under `AIRLOCK_FOLDERS_ROOT`.
    pub path: String,
    /// `ro` or `rw`.
    pub mode: String,
    /// User ids who may mount it.
    #[serde(default)]
    pub grants: Vec<String>,
}

/// `PUT /v1/folders/{id}/grants`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsBody {
    /// User ids who may mount the folder (replaces the list).
    pub grants: Vec<String>,
}

/// A folder as the API shows it. `path`, `realpath`, `grants` and `in_use_by` are shown to
/// admins only.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FolderDto {
    /// Its id.
    pub id: String,
    /// Its name (what a mount names).
    pub name: String,
    /// `ro` or `rw`.
    pub mode: &'static str,
    /// The path as registered (admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its realpath at registration (admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realpath: Option<String>,
    /// Who may mount it (admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
    /// The live sandboxes mounting it (admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_use_by: Option<Vec<HolderDto>>,
    /// RFC 3339.
    pub created_at: String,
}

/// One candidate directory under the root.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CandidateDto {
    /// The directory's name.
    pub name: String,
    /// The path to register.
    pub path: String,
}

/// `GET /v1/folders/available`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AvailableDto {
    /// Directories one level under the root, by name.
    pub folders: Vec<CandidateDto>,
    /// Whether the list was cut at 1000.
    pub truncated: bool,
}

// === impl FolderDto ===

impl FolderDto {
    fn new(view: &FolderView, admin: bool) -> Self {
        let folder = &view.folder;
        Self {
            id: folder.id.to_string(),
            name: folder.name.to_string(),
            mode: folder.mode.as_str(),
            path: admin.then(|| folder.path.clone()),
            realpath: admin.then(|| folder.realpath.display().to_string()),
            grants: admin.then(|| folder.grants.iter().map(ToString::to_string).collect()),
            in_use_by: admin.then(|| {
                view.in_use_by
                    .iter()
                    .map(|holder| HolderDto {
                        sandbox_id: holder.sandbox.to_string(),
                        target: holder.target.clone(),
                        read_only: holder.read_only,
                    })
                    .collect()
            }),
            created_at: rfc3339(folder.created_at),
        }
    }
}

/// The path's folder id; anything unparsable is a missing folder.
fn folder_id(id: Result<Path<String>, PathRejection>) -> Result<FolderId, ApiError> {
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such folder"))?;
    id.parse()
        .map_err(|_bad| ApiError::NotFound("no such folder"))
}

/// The grant list's user ids; a malformed one is refused naming its index.
fn user_ids(grants: &[String]) -> Result<Vec<UserId>, ApiError> {
    let mut ids = Vec::with_capacity(grants.len());
    let mut errors = Vec::new();
    for (i, text) in grants.iter().enumerate() {
        match text.parse::<UserId>() {
            Ok(id) => ids.push(id),
            Err(_bad) => errors.push(FieldReason {
                field: format!("grants[{i}]"),
                reason: "must be a user id".to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// `POST /v1/folders`: 201 with the new folder (admins).
#[utoipa::path(post, path = "/v1/folders", tag = "folders", request_body = CreateFolderBody,
    responses((status = 201, body = FolderDto), (status = 400), (status = 403),
        (status = 409)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_admin(&actor)?;
    let body: CreateFolderBody = json::body(body)?;
    let request = FolderRequest {
        name: body.name,
        path: body.path,
        mode: body.mode,
        grants: user_ids(&body.grants)?,
    };
    let view = state
        .services
        .folders
        .run(&actor, CreateFolder { request })
        .await?;
    Ok(with_status(
        StatusCode::CREATED,
        FolderDto::new(&view, true),
    ))
}

/// `GET /v1/folders`: every folder (admins), or the caller's granted ones without host paths.
#[utoipa::path(get, path = "/v1/folders", tag = "folders",
    responses((status = 200, body = [FolderDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<FolderDto>>, ApiError> {
    let views = state.services.folders.run(&actor, ListFolders).await?;
    let admin = actor.is_admin();
    Ok(Json(
        views.iter().map(|v| FolderDto::new(v, admin)).collect(),
    ))
}

/// `GET /v1/folders/available`: directories one level under the root (admins).
#[utoipa::path(get, path = "/v1/folders/available", tag = "folders",
    responses((status = 200, body = AvailableDto), (status = 403), (status = 409)))]
pub(crate) async fn available(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<AvailableDto>, ApiError> {
    require_admin(&actor)?;
    let (found, truncated) = state.services.folders.run(&actor, ListAvailable).await?;
    let folders = found
        .into_iter()
        .map(|c| CandidateDto {
            name: c.name,
            path: c.path.display().to_string(),
        })
        .collect();
    Ok(Json(AvailableDto { folders, truncated }))
}

/// `GET /v1/folders/{id}`: one folder with its grants and mounts (admins).
#[utoipa::path(get, path = "/v1/folders/{id}", tag = "folders",
    params(("id" = String, Path, description = "Folder id")),
    responses((status = 200, body = FolderDto), (status = 403), (status = 404)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<FolderDto>, ApiError> {
    require_admin(&actor)?;
    let id = folder_id(id)?;
    let view = state.services.folders.run(&actor, GetFolder { id }).await?;
    Ok(Json(FolderDto::new(&view, true)))
}

/// `DELETE /v1/folders/{id}`: 204; 409 `folder_in_use` while a live sandbox mounts it.
#[utoipa::path(delete, path = "/v1/folders/{id}", tag = "folders",
    params(("id" = String, Path, description = "Folder id")),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    require_admin(&actor)?;
    let id = folder_id(id)?;
    state
        .services
        .folders
        .run(&actor, DeleteFolder { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/folders/{id}/grants`: replaces who may mount the folder (admins); 409
/// `folder_in_use` naming the live sandboxes that mount it whose owners would lose the grant.
#[utoipa::path(put, path = "/v1/folders/{id}/grants", tag = "folders", request_body = GrantsBody,
    params(("id" = String, Path, description = "Folder id")),
    responses((status = 200, body = FolderDto), (status = 400), (status = 403),
        (status = 404), (status = 409)))]
pub(crate) async fn put_grants(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FolderDto>, ApiError> {
    require_admin(&actor)?;
    let id = folder_id(id)?;
    let body: GrantsBody = json::body(body)?;
    let grants = user_ids(&body.grants)?;
    let command = SetFolderGrants { id, grants };
    let view = state.services.folders.run(&actor, command).await?;
    Ok(Json(FolderDto::new(&view, true)))
}
