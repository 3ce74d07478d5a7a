//! The warm claim: one transaction that checks the owner's quota (the same
//! `check_quota_on!` as a cold create), picks the pool's oldest ready member, creates the
//! sandbox row (with its audit row) on the member's node under the member's own id, marks
//! the member `claiming` linked to it, and passes the member's /29, network and container to
//! the sandbox.
//!
//! The pick is `SELECT … ORDER BY ready_at, id LIMIT 1` followed by an update fenced on
//! `state = 'ready'`. On Postgres the pick adds `FOR UPDATE SKIP LOCKED`, so parallel claims
//! (other owners, who do not wait for each other's owner lock) each take a different member
//! without waiting; on SQLite the transaction starts `BEGIN IMMEDIATE` and holds the write
//! lock, so claims simply serialize. Either way a member is claimed at most once; a claim
//! that finds none, or fails its quota, writes nothing at all.

use uuid::Uuid;

use super::folders::Holds;
use super::pool::{select_member, MemberRow, PoolMember};
use super::reserve::{check_quota_on, insert_sandbox_on};
use super::rows::{SandboxRow, SpecDoc};
use super::sandboxes::{existing, select_sandbox};
use super::{
    now, with_db, Backend, Created, NewAuditRecord, NewSandbox, Sandbox, Store, StoreError,
};
use crate::accounts::quota::Quota;
use crate::pool::{MemberId, MemberState, PoolKey};

/// The pick of the pool's oldest ready member (on `$2`'s node, when given).
const PICK: &str = "SELECT id, node, container_id, network_name FROM pool_members \
    WHERE pool_key = $1 AND state = 'ready' AND ($2 IS NULL OR node = $2) \
    ORDER BY ready_at, id LIMIT 1";

/// A claim request.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    /// The pool to claim from.
    pub key: &'a PoolKey,
    /// The sandbox to create; its `node`, when given, limits the pick to that node (the
    /// sandbox is placed on the member's node either way). It holds no mounts: a request
    /// with mounts takes the cold path.
    pub new: NewSandbox,
    /// The quota defaults (the owner's overrides apply on top).
    pub quota: Quota,
    /// Most /29s one owner's sandboxes may hold (`AIRLOCK_MAX_SUBNETS_PER_USER`).
    pub subnet_cap: u64,
    /// The audit row, committed with the sandbox (its object set to the sandbox's id).
    pub audit: Option<&'a NewAuditRecord>,
}

/// A member a claim took, and the sandbox it now is.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedMember {
    /// The member, `claiming`, linked to the sandbox.
    pub member: PoolMember,
    /// The new sandbox (`creating`), holding the member's network, /29 and container.
    pub sandbox: Sandbox,
}

/// What a claim did.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOutcome {
    /// A member was claimed.
    Claimed(Box<ClaimedMember>),
    /// The idempotency key was used before: the earlier sandbox, nothing claimed.
    Existing(Box<Sandbox>),
    /// The pool has no ready member (on that node): nothing was written; go cold.
    NoReadyMember,
}

// === impl Store ===

impl Store {
    /// Claims the oldest ready member of `claim.key` for a new sandbox, in one transaction
    /// (see the module docs). A create past the owner's quota is
    /// [`StoreError::QuotaExceeded`], past the owner's subnets
    /// [`StoreError::SubnetCapReached`]; both claim nothing. The proxy credential and the
    /// frame are the caller's, after this commits.
    pub async fn claim_member(&self, claim: Claim<'_>) -> Result<ClaimOutcome, StoreError> {
        let doc = SpecDoc::from_spec(&claim.new.spec);
        if let Some(row) = self.find_by_key(&claim.new).await? {
            return repeat(row, &doc);
        }
        match self.try_claim(&claim, &doc).await {
            Err(StoreError::Conflict { .. }) if claim.new.idempotency_key.is_some() => {
                let row = self.find_by_key(&claim.new).await?;
                let row = row.ok_or(StoreError::NotFound)?;
                repeat(row, &doc)
            }
            other => other,
        }
    }

    async fn try_claim(
        &self,
        claim: &Claim<'_>,
        doc: &SpecDoc,
    ) -> Result<ClaimOutcome, StoreError> {
        let at = now();
        let postgres = self.backend() == Backend::Postgres;
        let new = &claim.new;
        let owner = new.owner.as_uuid();
        let pool_key = claim.key.hash();
        let pick = if postgres {
            format!("{PICK} FOR UPDATE SKIP LOCKED")
        } else {
            PICK.to_owned()
        };
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            check_quota_on!(tx, postgres, owner, &new.spec, claim.quota, at);
            let picked: Option<(Uuid, String, Option<String>, String)> = sqlx::query_as(&pick)
                .bind(pool_key.as_str())
                .bind(new.node.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
            let Some((member, node, container, network)) = picked else {
                return Ok(ClaimOutcome::NoReadyMember);
            };
            // The member's objects already carry this id (see `MemberId::sandbox_id`).
            let id = MemberId::from_uuid(member).sandbox_id();
            let audit = claim.audit.map(|record| NewAuditRecord {
                object: Some(id.to_string()),
                ..record.clone()
            });
            let held: Option<(String,)> =
                sqlx::query_as("SELECT subnet FROM subnet_allocations WHERE member_id = $1")
                    .bind(member)
                    .fetch_optional(&mut *tx)
                    .await?;
            if held.is_some() {
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM subnet_allocations a \
                     JOIN sandboxes s ON s.id = a.sandbox_id WHERE s.owner_id = $1",
                )
                .bind(owner)
                .fetch_one(&mut *tx)
                .await?;
                if u64::try_from(count).unwrap_or(0) >= claim.subnet_cap {
                    return Err(StoreError::SubnetCapReached {
                        cap: claim.subnet_cap,
                    });
                }
            }
            let holds = Holds::default();
            let placed = Some(node.as_str());
            insert_sandbox_on!(
                tx,
                postgres,
                id,
                new,
                doc,
                placed,
                holds,
                audit.as_ref(),
                at
            );
            let taken = sqlx::query(
                "UPDATE pool_members SET state = $1, sandbox_id = $2, claiming_at = $3 \
                 WHERE id = $4 AND state = $5",
            )
            .bind(MemberState::Claiming.as_str())
            .bind(id.as_uuid())
            .bind(at)
            .bind(member)
            .bind(MemberState::Ready.as_str())
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() != 1 {
                return Err(StoreError::Contended);
            }
            sqlx::query(
                "UPDATE subnet_allocations SET sandbox_id = $1, member_id = NULL \
                 WHERE member_id = $2",
            )
            .bind(id.as_uuid())
            .bind(member)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE sandboxes SET subnet = $1, network_name = $2, container_id = $3 \
                 WHERE id = $4",
            )
            .bind(held.map(|(subnet,)| subnet))
            .bind(network)
            .bind(container)
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
            let member: MemberRow = sqlx::query_as(select_member!("WHERE m.id = $1"))
                .bind(member)
                .fetch_one(&mut *tx)
                .await?;
            let sandbox = sqlx::query_as::<_, SandboxRow>(select_sandbox!("WHERE id = $1"))
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(ClaimOutcome::Claimed(Box::new(ClaimedMember {
                member: member.into_member()?,
                sandbox: sandbox.into_sandbox()?,
            })))
        })
    }
}

/// The answer to an idempotent repeat: the earlier sandbox, or the key's mismatch.
fn repeat(row: SandboxRow, doc: &SpecDoc) -> Result<ClaimOutcome, StoreError> {
    match existing(row, doc)? {
        Created::New(sandbox) | Created::Existing(sandbox) => {
            Ok(ClaimOutcome::Existing(Box::new(sandbox)))
        }
    }
}
