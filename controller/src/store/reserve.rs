//! The two halves of reserving a sandbox inside a caller's write transaction, shared by the
//! cold create ([`Store::create_sandbox_within_quota_holding`]) and the warm claim
//! ([`Store::claim_member`]), so both check quotas and write rows the same way:
//!
//! - `check_quota_on!` locks the owner (Postgres; SQLite's `BEGIN IMMEDIATE` already holds
//!   the write lock), reads the overrides and the usage, checks the spec against the quota
//!   ([`StoreError::QuotaExceeded`] otherwise) and records the create for the rate windows;
//! - `insert_sandbox_on!` inserts the `creating` row with its holds, its `created` event and
//!   the audit row.
//!
//! [`Store::create_sandbox_within_quota_holding`]: super::Store::create_sandbox_within_quota_holding
//! [`Store::claim_member`]: super::Store::claim_member
//! [`StoreError::QuotaExceeded`]: super::StoreError::QuotaExceeded

/// Inserts a sandbox row in `creating`, generation 1.
pub(crate) const INSERT_SANDBOX: &str = "INSERT INTO sandboxes (id, owner_id, image, spec, \
    desired_state, observed_state, generation, node, idempotency_key, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $9)";

/// Records one sandbox event.
pub(crate) const INSERT_EVENT: &str = "INSERT INTO sandbox_events (sandbox_id, generation, \
    event, from_state, to_state, end_reason, exit_code, at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Checks `$spec` (a `&SandboxSpec`) against `$defaults` (a `Quota`) with the owner's
/// overrides, through the write transaction `$tx`, at `$at`; records the create on success.
macro_rules! check_quota_on {
    ($tx:expr, $postgres:expr, $owner:expr, $spec:expr, $defaults:expr, $at:expr) => {{
        crate::store::lock_owner!($tx, $postgres, $owner);
        let overrides = crate::store::quotas::override_on!($tx, $owner);
        let now_ms = crate::store::quotas::epoch_ms($at);
        let usage = crate::store::quotas::usage_on!($tx, $owner, now_ms);
        let quota = $defaults.with(&overrides);
        crate::accounts::quota::check(&quota, &usage, $spec)
            .map_err(crate::store::StoreError::QuotaExceeded)?;
        sqlx::query("DELETE FROM sandbox_creates WHERE user_id = $1 AND at_ms <= $2")
            .bind($owner)
            .bind(now_ms - crate::store::quotas::hour_window_ms())
            .execute(&mut *$tx)
            .await?;
        sqlx::query("INSERT INTO sandbox_creates (user_id, at_ms) VALUES ($1, $2)")
            .bind($owner)
            .bind(now_ms)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use check_quota_on;

/// Inserts sandbox `$id` for `$new` (a `&NewSandbox`, its spec as `$doc`) on `$node`, its
/// mount holds `$holds`, its `created` event and `$audit` (an `Option<&NewAuditRecord>`
/// already naming it), through `$tx`, at `$at`.
macro_rules! insert_sandbox_on {
    ($tx:expr, $postgres:expr, $id:expr, $new:expr, $doc:expr, $node:expr, $holds:expr,
     $audit:expr, $at:expr) => {{
        let owner = $new.owner.as_uuid();
        sqlx::query(crate::store::reserve::INSERT_SANDBOX)
            .bind($id.as_uuid())
            .bind(owner)
            .bind($new.spec.image().as_str())
            .bind(sqlx::types::Json($doc))
            .bind(crate::sandbox::DesiredState::Running.as_str())
            .bind(crate::sandbox::SandboxState::Creating.as_str())
            .bind($node)
            .bind($new.idempotency_key.as_deref())
            .bind($at)
            .execute(&mut *$tx)
            .await?;
        crate::store::volumes::hold_mounts_on!($tx, $id.as_uuid(), $holds.volumes, $postgres);
        crate::store::folders::hold_folders_on!(
            $tx,
            $id.as_uuid(),
            $holds.folders,
            $postgres,
            owner
        );
        sqlx::query(crate::store::reserve::INSERT_EVENT)
            .bind($id.as_uuid())
            .bind(1_i64)
            .bind("created")
            .bind(None::<&str>)
            .bind(crate::sandbox::SandboxState::Creating.as_str())
            .bind(None::<&str>)
            .bind(None::<i64>)
            .bind($at)
            .execute(&mut *$tx)
            .await?;
        if let Some(record) = $audit {
            crate::store::audit::insert_audit_on!(&mut *$tx, record);
        }
    }};
}
pub(crate) use insert_sandbox_on;
