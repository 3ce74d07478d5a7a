//! `GET /v1/images`: the operator's allowed images and the start-up pre-pull's progress, for
//! any authenticated user (read scope). Without an allow list, `restricted` is false and the
//! list holds what `airlock images load` recorded.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;

use super::dto::rfc3339;
use super::error::ApiError;
use super::AppState;
use crate::audit::Actor;
use crate::images::catalog::ImageStatus;
use crate::images::ListImages;

/// The answer of `GET /v1/images`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ImagesDto {
    /// Whether an allow list (`AIRLOCK_IMAGES`/`AIRLOCK_IMAGES_FILE`) restricts creates.
    pub restricted: bool,
    /// Whether an allowed tag needs a digest (listed or recorded by an import).
    pub require_pinned: bool,
    /// Whether the pre-pull may load from a bundle folder.
    pub bundle_dir_configured: bool,
    /// Whether the pre-pull may pull from a registry.
    pub registry_configured: bool,
    /// One row per allowed image, in configuration order.
    pub images: Vec<ImageStatusDto>,
    /// Images recorded by imports on each node (newest first).
    pub recorded: Vec<RecordedImageDto>,
}

/// One allowed image's status.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ImageStatusDto {
    /// The entry as configured.
    pub image: String,
    /// The image id it is pinned to, if any.
    pub digest: Option<String>,
    /// `pending`, `present`, `loading`, `ready`, `missing` or `failed`.
    pub status: &'static str,
    /// `bundle` or `registry`, once known.
    pub source: Option<&'static str>,
    /// Bytes loaded so far.
    pub bytes_done: u64,
    /// Bytes to load (0 when unknown).
    pub bytes_total: u64,
    /// Why it is missing or failed, or the archive it loads from.
    pub message: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

/// One image an import recorded.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RecordedImageDto {
    /// The node.
    pub node: String,
    /// The tag (empty for an untagged image).
    pub reference: String,
    /// `sha256:…`, the image id.
    pub image_id: String,
    /// Bytes of its layers.
    pub size_bytes: i64,
    /// RFC 3339.
    pub loaded_at: String,
}

/// `GET /v1/images`: allowed images with their pre-pull status, and recorded imports.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, body = ImagesDto), (status = 401)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<ImagesDto>, ApiError> {
    let view = state.services.images.run(&actor, ListImages).await?;
    let config = &view.config;
    let recorded = view
        .recorded
        .into_iter()
        .map(|r| RecordedImageDto {
            node: r.node,
            reference: r.reference,
            image_id: r.image_id,
            size_bytes: r.size_bytes,
            loaded_at: rfc3339(r.loaded_at),
        })
        .collect();
    Ok(Json(ImagesDto {
        restricted: config.allow.is_some(),
        require_pinned: config.allow.as_ref().is_some_and(|a| a.require_pinned),
        bundle_dir_configured: config.bundle_dir.is_some(),
        registry_configured: config.registry.is_some(),
        images: view.statuses.iter().map(ImageStatusDto::from).collect(),
        recorded,
    }))
}

impl From<&ImageStatus> for ImageStatusDto {
    fn from(status: &ImageStatus) -> Self {
        Self {
            image: status.entry.to_string(),
            digest: status.pinned.clone(),
            status: status.state.as_str(),
            source: status.source.map(|s| s.as_str()),
            bytes_done: status.bytes_done,
            bytes_total: status.bytes_total,
            message: status.message.clone(),
            updated_at: rfc3339(status.updated_at),
        }
    }
}
