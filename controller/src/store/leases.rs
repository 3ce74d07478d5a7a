//! Write leases on volumes: a files write holds one while its never-started helper mounts the
//! volume read-write (`migrations/*/0019`).
//!
//! A lease is taken under the volume row's lock (`BEGIN IMMEDIATE` on SQLite, `FOR UPDATE` on
//! Postgres) only while no sandbox holds the volume read-write, and `hold_mounts_on!` refuses
//! a read-write mount while a live lease exists under the same lock: a files write and a
//! read-write sandbox never write one volume at once. Files writes do not exclude each other.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{with_db, Backend, Store, StoreError};
use crate::sandbox::SandboxId;
use crate::volume::VolumeId;

/// The one query for a live lease (`$1` the volume, `$2` now in unix seconds).
pub(crate) const LIVE_LEASE: &str =
    "SELECT id FROM volume_write_leases WHERE volume_id = $1 AND expires_at > $2 LIMIT 1";

/// A held write lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseId(Uuid);

/// Now, in the leases' unix seconds.
pub(crate) fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

// === impl Store ===

impl Store {
    /// Takes a write lease on `volume` for at most `ttl`, unless a sandbox holds it read-write
    /// ([`StoreError::VolumeHeld`]) or it is gone ([`StoreError::NotFound`]).
    pub async fn take_volume_write_lease(
        &self,
        volume: VolumeId,
        ttl: Duration,
    ) -> Result<LeaseId, StoreError> {
        let postgres = self.backend() == Backend::Postgres;
        let id = Uuid::new_v4();
        let now = unix_now();
        let expires = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let lock = if postgres {
                "SELECT id FROM volumes WHERE id = $1 FOR UPDATE"
            } else {
                "SELECT id FROM volumes WHERE id = $1"
            };
            let found: Option<Uuid> = sqlx::query_scalar(lock)
                .bind(volume.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
            found.ok_or(StoreError::NotFound)?;
            let holder: Option<Uuid> = sqlx::query_scalar(
                "SELECT sandbox_id FROM volume_mounts WHERE volume_id = $1 \
                 AND read_only = FALSE AND released_at IS NULL",
            )
            .bind(volume.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(holder) = holder {
                return Err(StoreError::VolumeHeld {
                    volume,
                    holder: SandboxId::from_uuid(holder),
                });
            }
            sqlx::query(
                "DELETE FROM volume_write_leases WHERE volume_id = $1 AND expires_at <= $2",
            )
            .bind(volume.as_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO volume_write_leases (id, volume_id, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(volume.as_uuid())
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(LeaseId(id))
        })
    }

    /// Releases a lease (a no-op when it is already gone).
    pub async fn release_volume_write_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        with_db!(self, |pool, _begin| {
            sqlx::query("DELETE FROM volume_write_leases WHERE id = $1")
                .bind(lease.0)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Drops every lease on `node`'s volumes: at start, no files write of this node is live.
    pub async fn clear_volume_write_leases(&self, node: &str) -> Result<u64, StoreError> {
        let cleared = with_db!(self, |pool, _begin| {
            sqlx::query(
                "DELETE FROM volume_write_leases WHERE volume_id IN \
                 (SELECT id FROM volumes WHERE node = $1)",
            )
            .bind(node)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(cleared)
    }
}
