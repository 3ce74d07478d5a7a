//! Quota rows: per-user overrides, and the usage a create is checked against. The check and
//! the reservation (the sandbox insert) run in one transaction in
//! [`Store::create_sandbox_within_quota`]: on SQLite the transaction starts `BEGIN IMMEDIATE`
//! and so holds the database's write lock; on Postgres it first locks the owner's `users` row
//! (`SELECT … FOR UPDATE`), so one user's creates serialize and other users' do not wait.

use std::time::Duration;

use sqlx::types::Json;
use time::OffsetDateTime;

use super::rows::SpecDoc;
use super::{now, with_db, Store, StoreError};
use crate::accounts::quota::{QuotaOverride, Usage, HOUR_WINDOW, RATE_WINDOW};
use crate::accounts::user::UserId;
use crate::sandbox::Cpus;

/// The live states a quota counts.
pub(crate) const LIVE_STATES: &str = "('creating', 'running', 'stopping')";

/// `(max_sandboxes, max_memory_mb, max_cpus_milli, max_lifetime_s, creates_per_min,
/// max_secrets, max_volumes, max_volume_bytes, creates_per_hour)`.
pub(crate) type OverrideRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Reads a user's usage through `$conn` (a pool or a transaction), at `$now_ms`.
macro_rules! usage_on {
    ($conn:expr, $owner:expr, $now_ms:expr) => {{
        let specs: Vec<(sqlx::types::Json<crate::store::rows::SpecDoc>,)> =
            sqlx::query_as(&format!(
                "SELECT spec FROM sandboxes WHERE owner_id = $1 AND observed_state IN {}",
                crate::store::quotas::LIVE_STATES
            ))
            .bind($owner)
            .fetch_all(&mut *$conn)
            .await?;
        let since = $now_ms - crate::store::quotas::hour_window_ms();
        let creates: Vec<(i64,)> = sqlx::query_as(
            "SELECT at_ms FROM sandbox_creates WHERE user_id = $1 AND at_ms > $2 \
             ORDER BY at_ms",
        )
        .bind($owner)
        .bind(since)
        .fetch_all(&mut *$conn)
        .await?;
        crate::store::quotas::usage(&specs, &creates, $now_ms)
    }};
}
pub(crate) use usage_on;

/// Reads a user's overrides through `$conn` (a pool connection or a transaction).
macro_rules! override_on {
    ($conn:expr, $owner:expr) => {{
        let row: Option<crate::store::quotas::OverrideRow> = sqlx::query_as(
            "SELECT max_sandboxes, max_memory_mb, max_cpus_milli, max_lifetime_s, \
             creates_per_min, max_secrets, max_volumes, max_volume_bytes, creates_per_hour \
             FROM user_quotas \
             WHERE user_id = $1",
        )
        .bind($owner)
        .fetch_optional(&mut *$conn)
        .await?;
        row.map(crate::store::quotas::from_row)
            .transpose()?
            .unwrap_or_default()
    }};
}
pub(crate) use override_on;

// === impl Store ===

impl Store {
    /// The user's overrides (all `None` when none were set).
    pub async fn quota_override(&self, user: UserId) -> Result<QuotaOverride, StoreError> {
        let owner = user.as_uuid();
        let overrides = with_db!(self, |pool, _begin| {
            let mut conn = pool.acquire().await?;
            override_on!(conn, owner)
        });
        Ok(overrides)
    }

    /// Replaces the user's overrides; a missing user is [`StoreError::NotFound`].
    pub async fn set_quota_override(
        &self,
        user: UserId,
        quota: &QuotaOverride,
    ) -> Result<(), StoreError> {
        if self.get_user(user).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        let int = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO user_quotas (user_id, max_sandboxes, max_memory_mb, \
                 max_cpus_milli, max_lifetime_s, creates_per_min, updated_at, max_secrets, \
                 max_volumes, max_volume_bytes, creates_per_hour) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (user_id) DO UPDATE SET max_sandboxes = excluded.max_sandboxes, \
                 max_memory_mb = excluded.max_memory_mb, \
                 max_cpus_milli = excluded.max_cpus_milli, \
                 max_lifetime_s = excluded.max_lifetime_s, \
                 creates_per_min = excluded.creates_per_min, updated_at = excluded.updated_at, \
                 max_secrets = excluded.max_secrets, max_volumes = excluded.max_volumes, \
                 max_volume_bytes = excluded.max_volume_bytes, \
                 creates_per_hour = excluded.creates_per_hour",
            )
            .bind(user.as_uuid())
            .bind(int(quota.max_sandboxes))
            .bind(int(quota.max_memory_mb))
            .bind(int(quota.max_cpus.map(|c| u64::from(c.millis()))))
            .bind(int(quota.max_lifetime.map(|d| d.as_secs())))
            .bind(int(quota.creates_per_min))
            .bind(now())
            .bind(int(quota.max_secrets))
            .bind(int(quota.max_volumes))
            .bind(int(quota.max_volume_bytes))
            .bind(int(quota.creates_per_hour))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// What the user uses now (a plain read; creates check it again under the lock).
    pub async fn quota_usage(&self, user: UserId) -> Result<Usage, StoreError> {
        let now_ms = epoch_ms(now());
        let owner = user.as_uuid();
        let usage = with_db!(self, |pool, _begin| {
            let mut conn = pool.acquire().await?;
            usage_on!(conn, owner, now_ms)
        });
        Ok(usage)
    }
}

/// Milliseconds since the epoch (the create-rate rows' clock).
pub(crate) fn epoch_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The rate window in milliseconds.
pub(crate) fn window_ms() -> i64 {
    i64::try_from(RATE_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// The hourly create window in milliseconds (how long a create row is kept).
pub(crate) fn hour_window_ms() -> i64 {
    i64::try_from(HOUR_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// Sums live sandboxes' limits and counts the creates of the last minute and of the last
/// hour; `creates` are the hour's, oldest first.
pub(crate) fn usage(specs: &[(Json<SpecDoc>,)], creates: &[(i64,)], now_ms: i64) -> Usage {
    let resets = |oldest: Option<i64>, window: i64| {
        let ms = oldest.map_or(0, |at| (at + window - now_ms).max(0));
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    };
    let minute: Vec<i64> = creates
        .iter()
        .map(|(at,)| *at)
        .filter(|at| *at > now_ms - window_ms())
        .collect();
    Usage {
        sandboxes: specs.len() as u64,
        memory_mb: specs.iter().map(|(s,)| s.0.memory_mb()).sum(),
        cpus_milli: specs.iter().map(|(s,)| s.0.cpus_milli()).sum(),
        recent_creates: minute.len() as u64,
        rate_resets_in: resets(minute.first().copied(), window_ms()),
        hour_creates: creates.len() as u64,
        hour_resets_in: resets(creates.first().map(|(at,)| *at), hour_window_ms()),
    }
}

pub(crate) fn from_row(row: OverrideRow) -> Result<QuotaOverride, StoreError> {
    let (sandboxes, memory, cpus, lifetime, rate, secrets, volumes, volume_bytes, hourly) = row;
    let whole = |column: &'static str, v: Option<i64>| {
        v.map(|v| u64::try_from(v).map_err(|e| StoreError::corrupt(column, e)))
            .transpose()
    };
    let cpus = whole("max_cpus_milli", cpus)?
        .map(|m| u32::try_from(m).map(Cpus::from_millis))
        .transpose()
        .map_err(|e| StoreError::corrupt("max_cpus_milli", e))?;
    Ok(QuotaOverride {
        max_sandboxes: whole("max_sandboxes", sandboxes)?,
        max_memory_mb: whole("max_memory_mb", memory)?,
        max_cpus: cpus,
        max_lifetime: whole("max_lifetime_s", lifetime)?.map(Duration::from_secs),
        creates_per_min: whole("creates_per_min", rate)?,
        max_secrets: whole("max_secrets", secrets)?,
        max_volumes: whole("max_volumes", volumes)?,
        max_volume_bytes: whole("max_volume_bytes", volume_bytes)?,
        creates_per_hour: whole("creates_per_hour", hourly)?,
    })
}
