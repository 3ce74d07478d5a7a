//! The start-up pass that rewrites stored sandbox policies written before `allow_public`
//! existed, so that none changes meaning (the rule is [`upgrade_stored`]): after the SQL
//! migrations, in one transaction, touching only rows whose policy does not mention
//! `allow_public`, so running it again changes nothing.

use tracing::info;
use uuid::Uuid;

use super::{with_db, Store, StoreError};
use crate::egress::policy::upgrade_stored;

/// Rows that may predate `allow_public` (a domain name cannot hold a `"`, so the pattern
/// only matches the key).
const CANDIDATES: &str = "SELECT sandbox_id, policy FROM sandbox_egress \
    WHERE policy IS NULL OR policy NOT LIKE '%\"allow_public\"%'";

const REWRITE: &str = "UPDATE sandbox_egress SET policy = $2, policy_hash = $3 \
    WHERE sandbox_id = $1";

// === impl Store ===

impl Store {
    /// Rewrites every stored policy without `allow_public`; returns how many changed.
    pub async fn upgrade_stored_policies(&self) -> Result<u64, StoreError> {
        let changed = with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let rows = sqlx::query_as::<_, (Uuid, Option<String>)>(CANDIDATES)
                .fetch_all(&mut *tx)
                .await?;
            let mut changed = 0;
            for (id, policy) in rows {
                let Some((json, hash)) = upgrade_stored(policy.as_deref()) else {
                    continue;
                };
                sqlx::query(REWRITE)
                    .bind(id)
                    .bind(json)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                changed += 1;
            }
            tx.commit().await?;
            changed
        });
        if changed > 0 {
            info!(
                policies = changed,
                "Stored egress policies rewritten with an explicit allow_public"
            );
        }
        Ok(changed)
    }
}
