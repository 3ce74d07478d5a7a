//! `/v1/volumes`: the caller's volumes (workspaces). Another user's volume is a 404 like a
//! missing one; an admin sees everyone's. The rules are the volumes service's
//! ([`crate::volumes`]).

use std::collections::BTreeMap;

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
use crate::audit::Actor;
use crate::volume::{VolumeId, VolumeRequest};
use crate::volumes::{CreateVolume, DeleteVolume, GetVolume, ListVolumes, VolumeView};

/// `POST /v1/volumes`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeBody {
    /// `^[a-z0-9][a-z0-9_.-]{0,62}$`, unique among the caller's volumes.
    pub name: String,
    /// Size in MiB (at most `AIRLOCK_MAX_VOLUME_MB`); counts against `max_volume_bytes`.
    pub size_mb: u64,
    /// User labels (never under `airlock.`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A volume as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VolumeDto {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Size in MiB.
    pub size_mb: u64,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// `soft` (sampled usage; over its size, no new read-write mounts) or `hard` (a
    /// filesystem quota).
    pub quota_mode: &'static str,
    /// Bytes used at the last sample; `null` before the first.
    pub used_bytes: Option<u64>,
    /// RFC 3339, when `used_bytes` was sampled.
    pub sampled_at: Option<String>,
    /// The sandboxes mounting it now.
    pub in_use_by: Vec<HolderDto>,
    /// RFC 3339.
    pub created_at: String,
}

/// One sandbox mounting a volume.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HolderDto {
    /// The sandbox.
    pub sandbox_id: String,
    /// Where it is mounted.
    pub target: String,
    /// Whether read-only.
    pub read_only: bool,
}

// === impl VolumeDto ===

impl From<&VolumeView> for VolumeDto {
    fn from(view: &VolumeView) -> Self {
        let volume = &view.volume;
        Self {
            id: volume.id.to_string(),
            name: volume.spec.name.to_string(),
            size_mb: volume.spec.size_mb,
            labels: volume.spec.labels.clone(),
            quota_mode: volume.quota_mode.as_str(),
            used_bytes: volume.used_bytes,
            sampled_at: volume.sampled_at.map(rfc3339),
            in_use_by: view
                .in_use_by
                .iter()
                .map(|holder| HolderDto {
                    sandbox_id: holder.sandbox.to_string(),
                    target: holder.target.clone(),
                    read_only: holder.read_only,
                })
                .collect(),
            created_at: rfc3339(volume.created_at),
        }
    }
}

/// The path's volume id; anything unparsable is a missing volume.
pub(crate) fn volume_id(id: Result<Path<String>, PathRejection>) -> Result<VolumeId, ApiError> {
    let Path(id) = id.map_err(|_rejected| ApiError::NotFound("no such volume"))?;
    id.parse()
        .map_err(|_bad| ApiError::NotFound("no such volume"))
}

/// `POST /v1/volumes`: 201 with the new volume.
#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = CreateVolumeBody,
    responses((status = 201, body = VolumeDto), (status = 400), (status = 403),
        (status = 409)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateVolumeBody = json::body(body)?;
    let request = VolumeRequest {
        name: body.name,
        size_mb: body.size_mb,
        labels: body.labels.unwrap_or_default(),
    };
    let command = CreateVolume { request };
    let view = state.services.volumes.run(&actor, command).await?;
    Ok(with_status(StatusCode::CREATED, VolumeDto::from(&view)))
}

/// `GET /v1/volumes`: the caller's volumes (an admin's: everyone's), oldest first.
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes",
    responses((status = 200, body = [VolumeDto])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<VolumeDto>>, ApiError> {
    let views = state.services.volumes.run(&actor, ListVolumes).await?;
    Ok(Json(views.iter().map(VolumeDto::from).collect()))
}

/// `GET /v1/volumes/{id}`: one volume, with its usage and who mounts it.
#[utoipa::path(get, path = "/v1/volumes/{id}", tag = "volumes",
    params(("id" = String, Path, description = "Volume id")),
    responses((status = 200, body = VolumeDto), (status = 404)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VolumeDto>, ApiError> {
    let id = volume_id(id)?;
    let view = state.services.volumes.run(&actor, GetVolume { id }).await?;
    Ok(Json(VolumeDto::from(&view)))
}

/// `DELETE /v1/volumes/{id}`: 204; 409 `volume_in_use` while a sandbox mounts it.
#[utoipa::path(delete, path = "/v1/volumes/{id}", tag = "volumes",
    params(("id" = String, Path, description = "Volume id")),
    responses((status = 204), (status = 404), (status = 409)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = volume_id(id)?;
    state
        .services
        .volumes
        .run(&actor, DeleteVolume { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
