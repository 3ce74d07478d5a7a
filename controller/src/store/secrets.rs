//! Secret rows: per-owner sealed values (see [`crate::secrets::vault`]; the store never sees a
//! plaintext), the key check value, and key rotation in one transaction.

use time::OffsetDateTime;
use uuid::Uuid;

use super::inspection_key_name;
use super::{lock_owner, now, with_db, Store, StoreError};
use crate::accounts::quota::{Amount, QuotaExceeded, QuotaKind};
use crate::accounts::user::UserId;
use crate::sandbox::SandboxId;
use crate::secrets::exposure::Exposure;

/// A secret as listed: never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMeta {
    /// Its name, unique per owner.
    pub name: String,
    /// Where its value may go.
    pub expose: Exposure,
    /// When it was first stored.
    pub created_at: OffsetDateTime,
    /// When its value last changed.
    pub updated_at: OffsetDateTime,
}

/// One sealed secret, for rotation.
#[derive(Clone, Debug)]
pub struct SealedSecret {
    /// The owner.
    pub owner: UserId,
    /// The name.
    pub name: String,
    /// `nonce || ciphertext`.
    pub sealed: Vec<u8>,
}

/// The upsert of one secret: `$5` is the exposure of a new row, `$6` the one a replace
/// writes (`NULL`: the row keeps its own).
const UPSERT_SECRET: &str = "INSERT INTO secrets (owner_id, name, sealed, created_at, updated_at, \
     expose) VALUES ($1, $2, $3, $4, $4, $5) \
     ON CONFLICT (owner_id, name) DO UPDATE SET sealed = excluded.sealed, \
     updated_at = excluded.updated_at, expose = COALESCE($6, secrets.expose) \
     RETURNING created_at";

fn exposure(text: &str) -> Result<Exposure, StoreError> {
    text.parse()
        .map_err(|e| StoreError::corrupt("secrets.expose", e))
}

// === impl Store ===

impl Store {
    /// Stores (or replaces) `owner`'s secret `name`; `true` when it is new. `expose` `None`:
    /// a new secret is [`Exposure::NEW_DEFAULT`], a replaced one keeps its exposure.
    pub async fn put_secret(
        &self,
        owner: UserId,
        name: &str,
        sealed: &[u8],
        expose: Option<Exposure>,
    ) -> Result<bool, StoreError> {
        let at = now();
        let created_at: OffsetDateTime = with_db!(self, |pool, _begin| {
            sqlx::query_scalar(UPSERT_SECRET)
                .bind(owner.as_uuid())
                .bind(name)
                .bind(sealed)
                .bind(at)
                .bind(expose.unwrap_or(Exposure::NEW_DEFAULT).as_str())
                .bind(expose.map(Exposure::as_str))
                .fetch_one(pool)
                .await?
        });
        Ok(created_at == at)
    }

    /// Like [`Store::put_secret`], but a new name is refused with
    /// [`StoreError::QuotaExceeded`] (`max_secrets`) when `owner` already has `max` secrets
    /// (`max` is the default; the owner's `user_quotas.max_secrets` override wins).
    /// The count and the insert are one transaction (SQLite: `BEGIN IMMEDIATE`; Postgres:
    /// the owner's `users` row locked first), so parallel puts cannot overshoot.
    pub async fn put_secret_within(
        &self,
        owner: UserId,
        name: &str,
        sealed: &[u8],
        expose: Option<Exposure>,
        max: u64,
    ) -> Result<bool, StoreError> {
        let at = now();
        let postgres = self.backend() == super::Backend::Postgres;
        let created_at: OffsetDateTime = with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            lock_owner!(tx, postgres, owner.as_uuid());
            // The owner's other secrets, and whether this name is one already (a replace).
            let (others, exists): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*) - COUNT(CASE WHEN name = $2 THEN 1 END), \
                 COUNT(CASE WHEN name = $2 THEN 1 END) FROM secrets WHERE owner_id = $1",
            )
            .bind(owner.as_uuid())
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            // The user's override, read under the same lock as the count.
            let own: Option<(Option<i64>,)> =
                sqlx::query_as("SELECT max_secrets FROM user_quotas WHERE user_id = $1")
                    .bind(owner.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
            let max = match own.and_then(|(v,)| v) {
                Some(v) => u64::try_from(v).map_err(|e| StoreError::corrupt("max_secrets", e))?,
                None => max,
            };
            let used = u64::try_from(others).unwrap_or(0);
            if exists == 0 && used >= max {
                return Err(StoreError::QuotaExceeded(QuotaExceeded {
                    kind: QuotaKind::MaxSecrets,
                    limit: Amount::Whole(max),
                    used: Amount::Whole(used),
                    requested: Amount::Whole(1),
                    retry_after: None,
                }));
            }
            let created_at = sqlx::query_scalar(UPSERT_SECRET)
                .bind(owner.as_uuid())
                .bind(name)
                .bind(sealed)
                .bind(at)
                .bind(expose.unwrap_or(Exposure::NEW_DEFAULT).as_str())
                .bind(expose.map(Exposure::as_str))
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            created_at
        });
        Ok(created_at == at)
    }

    /// `owner`'s secrets, by name.
    pub async fn list_secrets(&self, owner: UserId) -> Result<Vec<SecretMeta>, StoreError> {
        let rows: Vec<(String, String, OffsetDateTime, OffsetDateTime)> =
            with_db!(self, |pool, _begin| {
                sqlx::query_as(
                    "SELECT name, expose, created_at, updated_at FROM secrets \
                     WHERE owner_id = $1 ORDER BY name",
                )
                .bind(owner.as_uuid())
                .fetch_all(pool)
                .await?
            });
        rows.into_iter()
            .map(|(name, expose, created_at, updated_at)| {
                Ok(SecretMeta {
                    name,
                    expose: exposure(&expose)?,
                    created_at,
                    updated_at,
                })
            })
            .collect()
    }

    /// Removes `owner`'s secret `name`; `false` when there was none.
    pub async fn delete_secret(&self, owner: UserId, name: &str) -> Result<bool, StoreError> {
        let removed = with_db!(self, |pool, _begin| {
            sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND name = $2")
                .bind(owner.as_uuid())
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed == 1)
    }

    /// `owner`'s sealed secret `name`, if any.
    pub async fn sealed_secret(
        &self,
        owner: UserId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed = with_db!(self, |pool, _begin| {
            sqlx::query_scalar("SELECT sealed FROM secrets WHERE owner_id = $1 AND name = $2")
                .bind(owner.as_uuid())
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(sealed)
    }

    /// `owner`'s sealed secret `name` and its exposure, read together, if any.
    pub async fn sealed_secret_exposed(
        &self,
        owner: UserId,
        name: &str,
    ) -> Result<Option<(Vec<u8>, Exposure)>, StoreError> {
        let row: Option<(Vec<u8>, String)> = with_db!(self, |pool, _begin| {
            sqlx::query_as("SELECT sealed, expose FROM secrets WHERE owner_id = $1 AND name = $2")
                .bind(owner.as_uuid())
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(sealed, expose)| Ok((sealed, exposure(&expose)?)))
            .transpose()
    }

    /// The stored key check value; `candidate` is stored first when there is none.
    pub async fn key_check_or_insert(&self, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let check = with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO secret_key_check (id, sealed, created_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&candidate)
            .bind(now())
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT sealed FROM secret_key_check WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        Ok(check)
    }

    /// Re-seals every secret and the key check value in one transaction: `reseal` gets each
    /// sealed secret and returns it sealed under the new key, `is_current` must accept the
    /// stored check value (the old key), and `new_check` replaces it. Any failure rolls the
    /// whole rotation back. Sandboxes' inspection CA keys are re-sealed the same way (as
    /// their owner's, under [`inspection_key_name`]). Returns how many values were re-sealed.
    pub async fn rotate_secrets<E>(
        &self,
        is_current: impl Fn(&[u8]) -> bool,
        reseal: impl Fn(&SealedSecret) -> Result<Vec<u8>, E>,
        new_check: Vec<u8>,
    ) -> Result<Result<usize, E>, StoreError> {
        let at = now();
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let check: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT sealed FROM secret_key_check WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if check.as_deref().is_some_and(|c| !is_current(c)) {
                return Err(StoreError::KeyMismatch);
            }
            let rows: Vec<(Uuid, String, Vec<u8>)> = sqlx::query_as(
                "SELECT owner_id, name, sealed FROM secrets ORDER BY owner_id, name",
            )
            .fetch_all(&mut *tx)
            .await?;
            let count = rows.len();
            for (owner, name, sealed) in rows {
                let secret = SealedSecret {
                    owner: UserId::from_uuid(owner),
                    name,
                    sealed,
                };
                let resealed = match reseal(&secret) {
                    Ok(resealed) => resealed,
                    Err(error) => return Ok(Err(error)),
                };
                sqlx::query("UPDATE secrets SET sealed = $1 WHERE owner_id = $2 AND name = $3")
                    .bind(resealed)
                    .bind(owner)
                    .bind(&secret.name)
                    .execute(&mut *tx)
                    .await?;
            }
            // Every inspection CA key is sealed with the same key, under its own name.
            let keys: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(
                "SELECT s.owner_id, i.sandbox_id, i.ca_key_sealed FROM sandbox_inspection i \
                 JOIN sandboxes s ON s.id = i.sandbox_id ORDER BY i.sandbox_id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let count = count + keys.len();
            for (owner, sandbox, sealed) in keys {
                let key = SealedSecret {
                    owner: UserId::from_uuid(owner),
                    name: inspection_key_name(SandboxId::from_uuid(sandbox)),
                    sealed,
                };
                let resealed = match reseal(&key) {
                    Ok(resealed) => resealed,
                    Err(error) => return Ok(Err(error)),
                };
                sqlx::query(
                    "UPDATE sandbox_inspection SET ca_key_sealed = $1 WHERE sandbox_id = $2",
                )
                .bind(resealed)
                .bind(sandbox)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM secret_key_check")
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO secret_key_check (id, sealed, created_at) VALUES (1, $1, $2)")
                .bind(new_check)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(count))
        })
    }
}
