//! `/v1/users/{id}/quota`: a user's effective quota, its overrides and current usage
//! (`GET`: an admin, or the user themself; anyone else gets a 404), and the overrides
//! (`PUT`: admins only). Defaults come from `AIRLOCK_QUOTA_*`; `max_secrets`, `max_volumes`
//! and `max_volume_bytes` are enforced by the secrets and volumes stores in the transaction
//! that adds one.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::require_admin;
use super::error::{ApiError, FieldReason};
use super::users::user_id;
use super::{json, AppState};
use crate::accounts::quota::{
    Amount, Quota, QuotaOverride, Resources, Usage, UNLIMITED, UNLIMITED_CPUS, UNLIMITED_LIFETIME,
};
use crate::accounts::{GetQuota, PutQuota, QuotaView};
use crate::audit::Actor;
use crate::sandbox::Cpus;

/// `PUT /v1/users/{id}/quota`: each field absent or `null` falls back to the operator
/// default.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// Most sandboxes alive at once.
    pub max_sandboxes: Option<u64>,
    /// Most memory (MiB) across live sandboxes.
    pub max_memory_mb: Option<u64>,
    /// Most CPUs across live sandboxes (fractional).
    pub max_cpus: Option<f64>,
    /// Longest sandbox lifetime (absolute timeout), in seconds.
    pub max_lifetime_s: Option<u64>,
    /// Most creates per minute.
    pub creates_per_min: Option<u64>,
    /// Most creates per hour, ended sandboxes included.
    pub creates_per_hour: Option<u64>,
    /// Most secrets.
    pub max_secrets: Option<u64>,
    /// Most volumes.
    pub max_volumes: Option<u64>,
    /// Most bytes across the sizes of the user's volumes.
    pub max_volume_bytes: Option<u64>,
}

/// Quota values; `null` means no limit.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct QuotaValues {
    /// Most sandboxes alive at once.
    pub max_sandboxes: Option<u64>,
    /// Most memory (MiB) across live sandboxes.
    pub max_memory_mb: Option<u64>,
    /// Most CPUs across live sandboxes.
    pub max_cpus: Option<f64>,
    /// Longest sandbox lifetime, in seconds.
    pub max_lifetime_s: Option<u64>,
    /// Most creates per minute.
    pub creates_per_min: Option<u64>,
    /// Most creates per hour, ended sandboxes included.
    pub creates_per_hour: Option<u64>,
    /// Most secrets.
    pub max_secrets: Option<u64>,
    /// Most volumes.
    pub max_volumes: Option<u64>,
    /// Most bytes across the sizes of the user's volumes.
    pub max_volume_bytes: Option<u64>,
}

/// Current use.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct UsageDto {
    /// Live sandboxes (creating, running, stopping).
    pub sandboxes: u64,
    /// Their memory, MiB.
    pub memory_mb: u64,
    /// Their CPUs.
    pub cpus: f64,
    /// Creates in the last minute.
    pub creates_last_min: u64,
    /// Creates in the last hour, ended sandboxes included.
    pub creates_last_hour: u64,
}

/// A user's quota.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct QuotaDto {
    /// The user.
    pub user_id: String,
    /// What applies: the defaults with the overrides.
    pub effective: QuotaValues,
    /// The user's overrides (`null`: the default).
    pub overrides: QuotaBody,
    /// What the user uses now.
    pub usage: UsageDto,
}

// === impl QuotaBody ===

impl Serialize for QuotaBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "max_sandboxes": self.max_sandboxes,
            "max_memory_mb": self.max_memory_mb,
            "max_cpus": self.max_cpus,
            "max_lifetime_s": self.max_lifetime_s,
            "creates_per_min": self.creates_per_min,
            "creates_per_hour": self.creates_per_hour,
            "max_secrets": self.max_secrets,
            "max_volumes": self.max_volumes,
            "max_volume_bytes": self.max_volume_bytes,
        })
        .serialize(serializer)
    }
}

impl QuotaBody {
    fn from_override(o: &QuotaOverride) -> Self {
        Self {
            max_sandboxes: o.max_sandboxes,
            max_memory_mb: o.max_memory_mb,
            max_cpus: o.max_cpus.map(Cpus::as_f64),
            max_lifetime_s: o.max_lifetime.map(|d| d.as_secs()),
            creates_per_min: o.creates_per_min,
            creates_per_hour: o.creates_per_hour,
            max_secrets: o.max_secrets,
            max_volumes: o.max_volumes,
            max_volume_bytes: o.max_volume_bytes,
        }
    }

    fn into_override(self) -> Result<QuotaOverride, ApiError> {
        let mut errors = Vec::new();
        let max_cpus = match self.max_cpus {
            None => None,
            Some(cpus) => match Cpus::from_f64(cpus) {
                Some(cpus) => Some(cpus),
                None => {
                    errors.push(FieldReason {
                        field: "max_cpus".to_owned(),
                        reason: "must be a positive number of CPUs".to_owned(),
                    });
                    None
                }
            },
        };
        if self.max_lifetime_s == Some(0) {
            errors.push(FieldReason {
                field: "max_lifetime_s".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(QuotaOverride {
            max_sandboxes: self.max_sandboxes,
            max_memory_mb: self.max_memory_mb,
            max_cpus,
            max_lifetime: self.max_lifetime_s.map(Duration::from_secs),
            creates_per_min: self.creates_per_min,
            creates_per_hour: self.creates_per_hour,
            max_secrets: self.max_secrets,
            max_volumes: self.max_volumes,
            max_volume_bytes: self.max_volume_bytes,
        })
    }
}

// === impl QuotaValues ===

impl QuotaValues {
    fn new(q: &Quota, r: &Resources) -> Self {
        let limited = |n: u64| (n != UNLIMITED).then_some(n);
        Self {
            max_sandboxes: limited(q.max_sandboxes),
            max_memory_mb: limited(q.max_memory_mb),
            max_cpus: (q.max_cpus != UNLIMITED_CPUS).then(|| q.max_cpus.as_f64()),
            max_lifetime_s: (q.max_lifetime != UNLIMITED_LIFETIME)
                .then_some(q.max_lifetime.as_secs()),
            creates_per_min: limited(q.creates_per_min),
            creates_per_hour: limited(q.creates_per_hour),
            max_secrets: limited(r.max_secrets),
            max_volumes: limited(r.max_volumes),
            max_volume_bytes: limited(r.max_volume_bytes),
        }
    }
}

impl From<&Usage> for UsageDto {
    fn from(u: &Usage) -> Self {
        Self {
            sandboxes: u.sandboxes,
            memory_mb: u.memory_mb,
            cpus: Amount::CpusMilli(u.cpus_milli)
                .to_json()
                .as_f64()
                .unwrap_or_default(),
            creates_last_min: u.recent_creates,
            creates_last_hour: u.hour_creates,
        }
    }
}

impl From<QuotaView> for QuotaDto {
    fn from(view: QuotaView) -> Self {
        Self {
            user_id: view.user.to_string(),
            effective: QuotaValues::new(&view.effective, &view.resources),
            overrides: QuotaBody::from_override(&view.overrides),
            usage: UsageDto::from(&view.usage),
        }
    }
}

/// `GET /v1/users/{id}/quota` (admin, or the user themself): effective quota, overrides and
/// usage.
#[utoipa::path(get, path = "/v1/users/{id}/quota", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = QuotaDto), (status = 404)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<QuotaDto>, ApiError> {
    let user = user_id(id)?;
    let view = state
        .services
        .accounts
        .run(&actor, GetQuota { user })
        .await?;
    Ok(Json(QuotaDto::from(view)))
}

/// `PUT /v1/users/{id}/quota` (admin): replaces the user's overrides.
#[utoipa::path(put, path = "/v1/users/{id}/quota", tag = "users", request_body = QuotaBody,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = QuotaDto), (status = 400), (status = 403), (status = 404)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<QuotaDto>, ApiError> {
    require_admin(&actor)?;
    let user = user_id(id)?;
    let body: QuotaBody = json::body(body)?;
    let overrides = body.into_override()?;
    let command = PutQuota { user, overrides };
    let view = state.services.accounts.run(&actor, command).await?;
    Ok(Json(QuotaDto::from(view)))
}
