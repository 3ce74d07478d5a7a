//! Volume rows and their mounts.
//!
//! - A create checks the owner's volume quota and inserts the row in one transaction
//!   ([`Store::create_volume_within_quota`]): `BEGIN IMMEDIATE` on SQLite, the owner's `users`
//!   row locked `FOR UPDATE` on Postgres, so parallel creates cannot overshoot.
//! - A sandbox's volume mounts are written in the transaction that inserts the sandbox
//!   (`hold_mounts_on!`), which refuses a second read-write holder and, in soft mode, a
//!   read-write mount of a volume sampled over its size; the unique partial index
//!   `volume_mounts_one_writer` backs the first rule; a live files-write lease (`leases`)
//!   also refuses a read-write mount. The transition that ends a sandbox
//!   releases its mounts in the same transaction (`RELEASE_MOUNTS`).
//! - A delete runs in one transaction that refuses while any mount or write lease is held.

use std::collections::BTreeMap;

use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{lock_owner, now, with_db, Backend, Scope, Store, StoreError};
use crate::accounts::user::UserId;
use crate::sandbox::SandboxId;
use crate::volume::{
    self, QuotaMode, VolumeId, VolumeName, VolumeQuota, VolumeQuotaOverride, VolumeSpec,
    VolumeUsage,
};

/// Releases every mount a sandbox holds (`$1` the time, `$2` the sandbox).
pub(crate) const RELEASE_MOUNTS: &str = "UPDATE volume_mounts SET released_at = $1 \
    WHERE sandbox_id = $2 AND released_at IS NULL";

const SELECT_VOLUME: &str = "SELECT id, owner_id, name, docker_name, node, size_mb, labels, \
    quota_mode, used_bytes, sampled_at, created_at FROM volumes ";

/// A volume as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    /// Its id.
    pub id: VolumeId,
    /// Its owner.
    pub owner: UserId,
    /// Name, size and labels.
    pub spec: VolumeSpec,
    /// The Docker volume.
    pub docker_name: String,
    /// The node it lives on.
    pub node: String,
    /// How its size is enforced.
    pub quota_mode: QuotaMode,
    /// The last sampled usage, in bytes.
    pub used_bytes: Option<u64>,
    /// When it was sampled.
    pub sampled_at: Option<OffsetDateTime>,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A volume to create.
#[derive(Clone, Debug)]
pub struct NewVolume {
    /// The id (its Docker name derives from it).
    pub id: VolumeId,
    /// The owner.
    pub owner: UserId,
    /// The validated request.
    pub spec: VolumeSpec,
    /// The node.
    pub node: String,
    /// How its size will be enforced.
    pub quota_mode: QuotaMode,
}

/// One held mount of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeHolder {
    /// The sandbox.
    pub sandbox: SandboxId,
    /// Where it is mounted.
    pub target: String,
    /// Read-only or not.
    pub read_only: bool,
}

/// One mount a new sandbox holds, by volume id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountHold {
    /// The volume.
    pub volume: VolumeId,
    /// The target in the sandbox.
    pub target: String,
    /// Read-only or not.
    pub read_only: bool,
}

type VolumeRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    i64,
    Json<BTreeMap<String, String>>,
    String,
    Option<i64>,
    Option<OffsetDateTime>,
    OffsetDateTime,
);

/// Inserts the volume mounts of sandbox `$id` through `$tx`, refusing a second read-write
/// holder ([`StoreError::VolumeHeld`]) and a read-write mount of a soft-quota volume sampled
/// over its size ([`StoreError::VolumeOverQuota`]). `$postgres` locks each volume row first.
macro_rules! hold_mounts_on {
    ($tx:expr, $id:expr, $mounts:expr, $postgres:expr) => {{
        for mount in $mounts {
            let volume = mount.volume.as_uuid();
            let lock = if $postgres {
                "SELECT size_mb, used_bytes FROM volumes WHERE id = $1 FOR UPDATE"
            } else {
                "SELECT size_mb, used_bytes FROM volumes WHERE id = $1"
            };
            let row: Option<(i64, Option<i64>)> = sqlx::query_as(lock)
                .bind(volume)
                .fetch_optional(&mut *$tx)
                .await?;
            let (size_mb, used) = row.ok_or(crate::store::StoreError::NotFound)?;
            if !mount.read_only {
                let over = used.unwrap_or(0) > size_mb.saturating_mul(1024 * 1024);
                if over {
                    return Err(crate::store::StoreError::VolumeOverQuota {
                        volume: mount.volume,
                    });
                }
                let held: Option<(Uuid,)> = sqlx::query_as(
                    "SELECT sandbox_id FROM volume_mounts WHERE volume_id = $1 \
                     AND read_only = FALSE AND released_at IS NULL",
                )
                .bind(volume)
                .fetch_optional(&mut *$tx)
                .await?;
                if let Some((holder,)) = held {
                    return Err(crate::store::StoreError::VolumeHeld {
                        volume: mount.volume,
                        holder: crate::sandbox::SandboxId::from_uuid(holder),
                    });
                }
                let leased: Option<Uuid> = sqlx::query_scalar(crate::store::leases::LIVE_LEASE)
                    .bind(volume)
                    .bind(crate::store::leases::unix_now())
                    .fetch_optional(&mut *$tx)
                    .await?;
                if leased.is_some() {
                    return Err(crate::store::StoreError::VolumeWriting {
                        volume: mount.volume,
                    });
                }
            }
            sqlx::query(
                "INSERT INTO volume_mounts (sandbox_id, volume_id, target, read_only) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind($id)
            .bind(volume)
            .bind(mount.target.as_str())
            .bind(mount.read_only)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use hold_mounts_on;

// === impl Store ===

impl Store {
    /// Creates the volume row if the owner's quota (`defaults` with their overrides) allows
    /// it; the check and the insert are one transaction. A taken name is
    /// [`StoreError::Conflict`].
    pub async fn create_volume_within_quota(
        &self,
        new: NewVolume,
        defaults: VolumeQuota,
    ) -> Result<Volume, StoreError> {
        let owner = new.owner.as_uuid();
        let postgres = self.backend() == Backend::Postgres;
        let at = now();
        let size_mb = i64::try_from(new.spec.size_mb).unwrap_or(i64::MAX);
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            lock_owner!(tx, postgres, owner);
            let overrides: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
                "SELECT max_volumes, max_volume_bytes FROM user_quotas WHERE user_id = $1",
            )
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
            let (count, mb): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), CAST(SUM(size_mb) AS BIGINT) FROM volumes WHERE owner_id = $1",
            )
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?;
            let quota = defaults.with(&override_from(overrides.unwrap_or_default())?);
            let usage = VolumeUsage {
                volumes: whole(count),
                bytes: whole(mb.unwrap_or(0)).saturating_mul(1024 * 1024),
            };
            volume::check(&quota, &usage, new.spec.size_mb).map_err(StoreError::QuotaExceeded)?;
            sqlx::query(
                "INSERT INTO volumes (id, owner_id, name, docker_name, node, size_mb, labels, \
                 quota_mode, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(new.id.as_uuid())
            .bind(owner)
            .bind(new.spec.name.as_str())
            .bind(volume::docker_name(new.id))
            .bind(new.node.as_str())
            .bind(size_mb)
            .bind(Json(&new.spec.labels))
            .bind(new.quota_mode.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_volume(Scope::All, new.id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The volume, if `scope` may see it (another owner's is `None`, like a missing one).
    pub async fn get_volume(
        &self,
        scope: Scope,
        id: VolumeId,
    ) -> Result<Option<Volume>, StoreError> {
        let row: Option<VolumeRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!(
                "{SELECT_VOLUME} WHERE id = $1 AND ($2 IS NULL OR owner_id = $2)"
            ))
            .bind(id.as_uuid())
            .bind(scope_owner(scope))
            .fetch_optional(pool)
            .await?
        });
        row.map(into_volume).transpose()
    }

    /// The owner's volume called `name`.
    pub async fn volume_by_name(
        &self,
        owner: UserId,
        name: &VolumeName,
    ) -> Result<Option<Volume>, StoreError> {
        let row: Option<VolumeRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!(
                "{SELECT_VOLUME} WHERE owner_id = $1 AND name = $2"
            ))
            .bind(owner.as_uuid())
            .bind(name.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(into_volume).transpose()
    }

    /// Every volume `scope` may see, oldest first.
    pub async fn list_volumes(&self, scope: Scope) -> Result<Vec<Volume>, StoreError> {
        let rows: Vec<VolumeRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(&format!(
                "{SELECT_VOLUME} WHERE ($1 IS NULL OR owner_id = $1) ORDER BY id"
            ))
            .bind(scope_owner(scope))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(into_volume).collect()
    }

    /// The sandboxes holding the volume now.
    pub async fn volume_holders(&self, id: VolumeId) -> Result<Vec<VolumeHolder>, StoreError> {
        let rows: Vec<(Uuid, String, bool)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT sandbox_id, target, read_only FROM volume_mounts \
                 WHERE volume_id = $1 AND released_at IS NULL ORDER BY sandbox_id",
            )
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(sandbox, target, read_only)| VolumeHolder {
                sandbox: SandboxId::from_uuid(sandbox),
                target,
                read_only,
            })
            .collect())
    }

    /// Deletes the row unless a mount is held ([`StoreError::VolumeInUse`]); `None` when
    /// `scope` cannot see it.
    pub async fn delete_volume(
        &self,
        scope: Scope,
        id: VolumeId,
    ) -> Result<Option<Volume>, StoreError> {
        let Some(found) = self.get_volume(scope, id).await? else {
            return Ok(None);
        };
        let postgres = self.backend() == Backend::Postgres;
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            // Serializes with a create holding a mount (it locks the volume row too).
            if postgres {
                sqlx::query("SELECT id FROM volumes WHERE id = $1 FOR UPDATE")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            let held: Vec<(Uuid,)> = sqlx::query_as(
                "SELECT sandbox_id FROM volume_mounts WHERE volume_id = $1 \
                 AND released_at IS NULL",
            )
            .bind(id.as_uuid())
            .fetch_all(&mut *tx)
            .await?;
            let leased: Option<Uuid> = sqlx::query_scalar(super::leases::LIVE_LEASE)
                .bind(id.as_uuid())
                .bind(super::leases::unix_now())
                .fetch_optional(&mut *tx)
                .await?;
            if leased.is_some() {
                return Err(StoreError::VolumeWriting { volume: id });
            }
            if !held.is_empty() {
                return Err(StoreError::VolumeInUse {
                    holders: held
                        .into_iter()
                        .map(|(s,)| SandboxId::from_uuid(s))
                        .collect(),
                });
            }
            sqlx::query("DELETE FROM volumes WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(Some(found))
    }

    /// Records a usage sample.
    pub async fn set_volume_usage(
        &self,
        id: VolumeId,
        used_bytes: u64,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool, _begin| {
            sqlx::query("UPDATE volumes SET used_bytes = $1, sampled_at = $2 WHERE id = $3")
                .bind(i64::try_from(used_bytes).unwrap_or(i64::MAX))
                .bind(at)
                .bind(id.as_uuid())
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

fn scope_owner(scope: Scope) -> Option<Uuid> {
    match scope {
        Scope::Owner(owner) => Some(owner.as_uuid()),
        Scope::All => None,
    }
}

fn whole(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn override_from(
    (volumes, bytes): (Option<i64>, Option<i64>),
) -> Result<VolumeQuotaOverride, StoreError> {
    let column = |name: &'static str, v: Option<i64>| {
        v.map(|v| u64::try_from(v).map_err(|e| StoreError::corrupt(name, e)))
            .transpose()
    };
    Ok(VolumeQuotaOverride {
        max_volumes: column("max_volumes", volumes)?,
        max_volume_bytes: column("max_volume_bytes", bytes)?,
    })
}

fn into_volume(row: VolumeRow) -> Result<Volume, StoreError> {
    let (id, owner, name, docker_name, node, size_mb, labels, mode, used, sampled, created) = row;
    let name = VolumeName::parse(&name).map_err(|p| StoreError::corrupt("name", p))?;
    let size_mb = u64::try_from(size_mb).map_err(|e| StoreError::corrupt("size_mb", e))?;
    let quota_mode = mode
        .parse()
        .map_err(|e| StoreError::corrupt("quota_mode", e))?;
    Ok(Volume {
        id: VolumeId::from_uuid(id),
        owner: UserId::from_uuid(owner),
        spec: VolumeSpec::from_stored(name, size_mb, labels.0),
        docker_name,
        node,
        quota_mode,
        used_bytes: used.map(whole),
        sampled_at: sampled,
        created_at: created,
    })
}
