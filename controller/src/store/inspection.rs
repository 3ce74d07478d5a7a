//! Inspection rows (migrations 0014 and 0017): a bound sandbox's inspection CA (the key sealed by the
//! secrets vault; the store never sees it in the clear) and the credentials list it was
//! created with. Read back for every push to the proxy, and re-sealed by `rotate-key`.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{with_db, Store, StoreError};
use crate::accounts::user::UserId;
use crate::sandbox::SandboxId;

/// A sandbox's inspection material as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredInspection {
    /// The sandbox.
    pub sandbox_id: SandboxId,
    /// Its owner (whose secrets the bindings name, and whose id the sealed key is bound to).
    pub owner: UserId,
    /// The CA certificate, PEM.
    pub ca_cert_pem: String,
    /// The CA's PKCS#8 key, sealed ([`inspection_key_name`] is its name in the vault).
    pub ca_key_sealed: Vec<u8>,
    /// The create's `credentials` list, JSON.
    pub bindings: String,
    /// Lowercase hex SHA-256 of the token in the sandbox's placeholders (migration 0017);
    /// `None` for sandboxes bound before it.
    pub gateway_hash: Option<String>,
}

/// The name a sandbox's sealed CA key is bound to in the vault's associated data. The `:`
/// keeps it apart from every secret name (which cannot hold one).
pub fn inspection_key_name(id: SandboxId) -> String {
    format!("inspection-ca:{id}")
}

impl std::fmt::Debug for StoredInspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredInspection")
            .field("sandbox_id", &self.sandbox_id)
            .field("owner", &self.owner)
            .field("bindings", &self.bindings)
            .finish_non_exhaustive()
    }
}

// === impl Store ===

impl Store {
    /// Stores a sandbox's inspection material (once, at create).
    pub async fn save_inspection(&self, row: &StoredInspection) -> Result<(), StoreError> {
        let at = OffsetDateTime::now_utc();
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO sandbox_inspection \
                 (sandbox_id, ca_cert_pem, ca_key_sealed, bindings, gateway_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.sandbox_id.as_uuid())
            .bind(&row.ca_cert_pem)
            .bind(&row.ca_key_sealed)
            .bind(&row.bindings)
            .bind(&row.gateway_hash)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A sandbox's inspection material, with its owner; `None` when it binds nothing.
    pub async fn inspection(&self, id: SandboxId) -> Result<Option<StoredInspection>, StoreError> {
        type Row = (Uuid, String, Vec<u8>, String, Option<String>);
        let row: Option<Row> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT s.owner_id, i.ca_cert_pem, i.ca_key_sealed, i.bindings, i.gateway_hash \
                 FROM sandbox_inspection i JOIN sandboxes s ON s.id = i.sandbox_id \
                 WHERE i.sandbox_id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(owner, ca_cert_pem, ca_key_sealed, bindings, gateway_hash)| StoredInspection {
                sandbox_id: id,
                owner: UserId::from_uuid(owner),
                ca_cert_pem,
                ca_key_sealed,
                bindings,
                gateway_hash,
            },
        ))
    }
}
