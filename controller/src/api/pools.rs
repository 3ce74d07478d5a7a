//! The node's warm pools, for admins: `GET /v1/pools` (what runs: ready members, hit rate,
//! claim times; see [`crate::sandboxes::pool`]), `PUT /v1/pools` and `GET /v1/pools/config`
//! (the stored document they are set from; see [`crate::pool_config`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::dto::rfc3339;
use super::error::ApiError;
use super::AppState;
use crate::audit::Actor;
use crate::pool_config::{GetPoolConfig, PoolConfigView, SetPools};
use crate::sandboxes::{ListPools, PoolView};

/// A node's stored pool document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PoolConfigDto {
    /// The node.
    pub node: String,
    /// The pools as stored (canonical; `[]`: none).
    #[schema(value_type = Vec<Object>)]
    pub document: Value,
    /// Who wrote it: `env` (`AIRLOCK_POOLS` at start), `api`, or `none`.
    pub source: &'static str,
    /// The admin who wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// When (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Members the document keeps ready, over all its pools.
    pub members: u64,
    /// Why it applies no pools: it fails the operator's bounds as they are now
    /// (`field: reason` each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One warm pool.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PoolDto {
    /// The image as configured (`AIRLOCK_POOLS`).
    pub image: String,
    /// The pool key's hash (the members' `airlock.pool` label); absent until the image
    /// resolved on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The image id the members run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The members' user, `uid:gid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ready members wanted.
    pub size: u64,
    /// Ready members now.
    pub ready: u64,
    /// Members being made.
    pub warming: u64,
    /// The members' limits (a claim with others updates them).
    pub shape: ShapeDto,
    /// Seconds a member waits unclaimed before it is replaced.
    pub max_idle_s: u64,
    /// Creates served warm since the controller started.
    pub claims: u64,
    /// Creates of this pool's key that found no ready member (served cold).
    pub misses: u64,
    /// `claims / (claims + misses)`; absent before any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<f64>,
    /// Median claim time in milliseconds (API request → running), over the last 1,024.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_p50_ms: Option<f64>,
    /// 99th percentile claim time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_p99_ms: Option<f64>,
}

/// A pool's member limits.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct ShapeDto {
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Most processes.
    pub pids: u64,
}

impl From<&PoolView> for PoolDto {
    fn from(view: &PoolView) -> Self {
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        Self {
            image: view.image.clone(),
            key: view.key.clone(),
            image_digest: view.image_digest.clone(),
            user: view.user.clone(),
            size: view.size,
            ready: view.ready,
            warming: view.warming,
            shape: ShapeDto {
                cpus: view.shape.cpus.as_f64(),
                memory_mb: view.shape.memory_mb,
                pids: view.shape.pids,
            },
            max_idle_s: view.max_idle_s,
            claims: view.claims,
            misses: view.misses,
            hit_rate: view.hit_rate,
            claim_p50_ms: ms(view.claim_p50),
            claim_p99_ms: ms(view.claim_p99),
        }
    }
}

impl From<PoolConfigView> for PoolConfigDto {
    fn from(view: PoolConfigView) -> Self {
        Self {
            node: view.node,
            document: serde_json::from_str(&view.document).unwrap_or_default(),
            source: view.source,
            updated_by: view.updated_by.map(|u| u.to_string()),
            updated_at: view.updated_at.map(rfc3339),
            members: view.pools.iter().map(|p| p.size).sum(),
            problems: view.problems.iter().map(ToString::to_string).collect(),
        }
    }
}

/// `GET /v1/pools`: the node's warm pools (admin).
#[utoipa::path(get, path = "/v1/pools", tag = "sandboxes",
    responses((status = 200, body = [PoolDto]), (status = 403)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Vec<PoolDto>>, ApiError> {
    let views = state.services.sandboxes.run(&actor, ListPools).await?;
    Ok(Json(views.iter().map(PoolDto::from).collect()))
}

/// `PUT /v1/pools` (admin): replaces the node's pool document, a JSON array of
/// `{image, user?, size, max_idle_s?, shape?, scratch_mb?}` (`[]`: no pools). 400 naming every
/// field that fails the operator's bounds; nothing is stored then. The pools apply at once:
/// new ones start filling, and members of a pool that is gone or changed are replaced.
/// Audited with the pools before and after.
#[utoipa::path(put, path = "/v1/pools", tag = "sandboxes",
    request_body(content = Vec<Object>, description = "The pool document"),
    responses((status = 200, body = PoolConfigDto), (status = 400), (status = 403)))]
pub(crate) async fn set(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PoolConfigDto>, ApiError> {
    let document: Value = super::json::body(body)?;
    let set = SetPools {
        document: document.to_string(),
    };
    let view = state.services.pool_config.run(&actor, set).await?;
    Ok(Json(view.into()))
}

/// `GET /v1/pools/config` (admin): the node's stored pool document.
#[utoipa::path(get, path = "/v1/pools/config", tag = "sandboxes",
    responses((status = 200, body = PoolConfigDto), (status = 403)))]
pub(crate) async fn config(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<PoolConfigDto>, ApiError> {
    let view = state
        .services
        .pool_config
        .run(&actor, GetPoolConfig)
        .await?;
    Ok(Json(view.into()))
}
