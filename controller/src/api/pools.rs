//! `GET /v1/pools` (admin): the node's warm pools (see [`crate::sandboxes::pool`]), with
//! their ready members, hit rate and claim times.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::audit::Actor;
use crate::sandboxes::{ListPools, PoolView};

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
