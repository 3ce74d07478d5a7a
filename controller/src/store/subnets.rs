//! Subnet allocations: one /29 per sandbox, unique across the store, so parallel creates
//! never collide and allocations survive restarts.

use std::collections::HashSet;

use ipnet::Ipv4Net;
use tracing::instrument;

use super::{now, with_db, Backend, Store, StoreError};
use crate::sandbox::names::network_name;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::SandboxId;

/// How often an allocation that lost a race for a subnet picks the next one.
const MAX_ATTEMPTS: usize = 64;

/// Takes a subnet unless another allocation (of it, or for this sandbox) exists.
const INSERT_ALLOCATION: &str = "INSERT INTO subnet_allocations (subnet, sandbox_id, \
    allocated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

const SET_SUBNET: &str =
    "UPDATE sandboxes SET subnet = $1, network_name = $2, updated_at = $3 WHERE id = $4";

// === impl Store ===

impl Store {
    /// The sandbox's /29: the one it already holds, or the first free one in `pools`, taken
    /// in one transaction. Also records the subnet and network name on the sandbox.
    ///
    /// The `subnet` primary key makes a double allocation impossible: on Postgres a racing
    /// insert waits for the winner, does nothing, and the loser tries the next free subnet;
    /// on SQLite the write transaction holds the lock from the start.
    ///
    /// At most `per_owner` /29s are held by one owner's sandboxes at once, so one tenant
    /// cannot use up the pools: past it, [`StoreError::SubnetCapReached`]. The count and the
    /// insert are serialized per owner like a quota check (the owner's `users` row locked on
    /// Postgres; SQLite's write lock).
    #[instrument(skip_all, fields(sandbox.id = %id))]
    pub async fn allocate_subnet(
        &self,
        id: SandboxId,
        pools: &[Ipv4Net],
        per_owner: u64,
    ) -> Result<SandboxSubnet, StoreError> {
        let postgres = self.backend() == Backend::Postgres;
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            if postgres {
                sqlx::query(
                    "SELECT u.id FROM users u JOIN sandboxes s ON s.owner_id = u.id \
                     WHERE s.id = $1 FOR UPDATE OF u",
                )
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            }
            for _ in 0..MAX_ATTEMPTS {
                let held: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT a.subnet FROM sandboxes s \
                     LEFT JOIN subnet_allocations a ON a.sandbox_id = s.id WHERE s.id = $1",
                )
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                match held {
                    None => return Err(StoreError::NotFound),
                    Some((Some(held),)) => {
                        tx.commit().await?;
                        return parse_subnet(&held);
                    }
                    Some((None,)) => {}
                }
                // A /29 whose sandbox is being deleted is on its way back: not counted.
                let (held_by_owner,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM subnet_allocations a \
                     JOIN sandboxes s ON s.id = a.sandbox_id \
                     WHERE s.owner_id = (SELECT owner_id FROM sandboxes WHERE id = $1) \
                     AND s.desired_state <> 'deleted'",
                )
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
                if u64::try_from(held_by_owner).unwrap_or(0) >= per_owner {
                    return Err(StoreError::SubnetCapReached { cap: per_owner });
                }
                let taken: Vec<(String,)> = sqlx::query_as("SELECT subnet FROM subnet_allocations")
                    .fetch_all(&mut *tx)
                    .await?;
                let subnet = SandboxSubnet::first_free(pools, &parse_taken(&taken)?)
                    .ok_or(StoreError::SubnetsExhausted)?;
                let at = now();
                let inserted = sqlx::query(INSERT_ALLOCATION)
                    .bind(subnet.to_string())
                    .bind(id.as_uuid())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if inserted.rows_affected() == 1 {
                    sqlx::query(SET_SUBNET)
                        .bind(subnet.to_string())
                        .bind(network_name(id))
                        .bind(at)
                        .bind(id.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(subnet);
                }
            }
            Err(StoreError::Contended)
        })
    }

    /// Frees the sandbox's /29 (after its network is gone). Returns whether it held one.
    pub async fn release_subnet(&self, id: SandboxId) -> Result<bool, StoreError> {
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let removed = sqlx::query("DELETE FROM subnet_allocations WHERE sandbox_id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE sandboxes SET subnet = NULL, updated_at = $1 WHERE id = $2")
                .bind(now())
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(removed == 1)
        })
    }

    /// Frees the /29 of a sandbox that ended `failed` or `lost`, only while it is still at
    /// `generation`: the reconciler's fenced release. Returns whether it held one.
    pub async fn release_ended_subnet(
        &self,
        id: SandboxId,
        generation: i64,
    ) -> Result<bool, StoreError> {
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let owner = sqlx::query(
                "UPDATE sandboxes SET subnet = NULL, updated_at = $1 WHERE id = $2 \
                 AND generation = $3 AND observed_state IN ('failed', 'lost')",
            )
            .bind(now())
            .bind(id.as_uuid())
            .bind(generation)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if owner != 1 {
                return Ok(false);
            }
            let removed = sqlx::query("DELETE FROM subnet_allocations WHERE sandbox_id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(removed == 1)
        })
    }

    /// How many /29s are held by sandboxes whose delete has begun (their networks are still
    /// being removed): an exhausted pool that has some will have them back shortly.
    pub async fn subnets_releasing(&self) -> Result<u64, StoreError> {
        let (count,): (i64,) = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM subnet_allocations a \
                 JOIN sandboxes s ON s.id = a.sandbox_id WHERE s.desired_state = 'deleted'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every sandbox's allocation: `(subnet, sandbox)`. The reconciler compares it with
    /// Docker. Pool members' /29s are not listed (see [`Store::list_members`]).
    pub async fn subnet_allocations(&self) -> Result<Vec<(SandboxSubnet, SandboxId)>, StoreError> {
        let rows: Vec<(String, uuid::Uuid)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT subnet, sandbox_id FROM subnet_allocations \
                 WHERE sandbox_id IS NOT NULL ORDER BY subnet",
            )
            .fetch_all(pool)
            .await?
        });
        rows.iter()
            .map(|(subnet, id)| Ok((parse_subnet(subnet)?, SandboxId::from_uuid(*id))))
            .collect()
    }
}

fn parse_taken(rows: &[(String,)]) -> Result<HashSet<Ipv4Net>, StoreError> {
    rows.iter()
        .map(|(text,)| parse_subnet(text).map(|s| s.net()))
        .collect()
}

fn parse_subnet(text: &str) -> Result<SandboxSubnet, StoreError> {
    text.parse::<Ipv4Net>()
        .ok()
        .and_then(SandboxSubnet::new)
        .ok_or_else(|| StoreError::corrupt("subnet", format!("`{text}` is not a /29")))
}
