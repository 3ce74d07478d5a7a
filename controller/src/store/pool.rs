//! Pool member rows: insert (`warming`), the member's own /29, state changes fenced by
//! [`MemberState::transition`] (the `WHERE state IN (…)` list of each update is the set of
//! states that accept its event), removal, and the reads the pool service and the reconciler
//! need. The claim itself is in `pool_claim`.

use std::collections::{BTreeMap, HashSet};

use ipnet::Ipv4Net;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{now, with_db, Store, StoreError};
use crate::pool::{member_network_name, MemberEvent, MemberId, MemberState, PoolKey};
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::{RootFs, RunAs, SandboxId};

/// How often a member's subnet allocation that lost a race picks the next free /29.
const MAX_ATTEMPTS: usize = 64;

/// `SELECT <every member column and its held subnet>` followed by the given clauses.
macro_rules! select_member {
    ($($rest:literal)*) => {
        concat!(
            "SELECT m.id, m.pool_key, m.image_digest, m.run_as, m.tty, m.rootfs, m.node, \
             m.runtime_sha, m.network_name, m.state, m.container_id, m.sandbox_id, \
             m.created_at, m.ready_at, m.claiming_at, m.claimed_at, a.subnet \
             FROM pool_members m LEFT JOIN subnet_allocations a ON a.member_id = m.id ",
            $($rest),*
        )
    };
}
pub(crate) use select_member;

/// A pool member as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolMember {
    /// Its id (the `airlock.member` label).
    pub id: MemberId,
    /// What it can serve.
    pub key: PoolKey,
    /// [`PoolKey::hash`] of `key` (the `airlock.pool` label).
    pub pool_key: String,
    /// The node it runs on.
    pub node: String,
    /// The `airlock-init` runtime it was made with (the runtime volume's sha).
    pub runtime_sha: String,
    /// Its Docker network (the sandbox's after the claim).
    pub network_name: String,
    /// Where it is in its life.
    pub state: MemberState,
    /// Its container, once created.
    pub container_id: Option<String>,
    /// The sandbox that claimed it.
    pub sandbox: Option<SandboxId>,
    /// The /29 it holds; `None` before allocation and after a claim (the sandbox holds it).
    pub subnet: Option<SandboxSubnet>,
    /// When the row was inserted.
    pub created_at: OffsetDateTime,
    /// When it became ready.
    pub ready_at: Option<OffsetDateTime>,
    /// When a claim took it.
    pub claiming_at: Option<OffsetDateTime>,
    /// When its frame was written.
    pub claimed_at: Option<OffsetDateTime>,
}

/// A member to insert (it starts `warming`).
#[derive(Clone, Debug)]
pub struct NewMember {
    /// Its id (its network's name derives from it).
    pub id: MemberId,
    /// Its key; `image_digest` must be an image id.
    pub key: PoolKey,
    /// The node.
    pub node: String,
    /// The runtime it is made with.
    pub runtime_sha: String,
}

/// One pool's members on one node that count towards its size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolCount {
    /// The node.
    pub node: String,
    /// [`PoolKey::hash`].
    pub pool_key: String,
    /// Ready members.
    pub ready: u64,
    /// Warming members.
    pub warming: u64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRow {
    id: Uuid,
    pool_key: String,
    image_digest: String,
    run_as: String,
    tty: bool,
    rootfs: String,
    node: String,
    runtime_sha: String,
    network_name: String,
    state: String,
    container_id: Option<String>,
    sandbox_id: Option<Uuid>,
    created_at: OffsetDateTime,
    ready_at: Option<OffsetDateTime>,
    claiming_at: Option<OffsetDateTime>,
    claimed_at: Option<OffsetDateTime>,
    subnet: Option<String>,
}

// === impl Store ===

impl Store {
    /// Inserts a `warming` member; a malformed image digest is [`StoreError::Corrupt`]
    /// before anything is written.
    pub async fn insert_member(&self, new: NewMember) -> Result<PoolMember, StoreError> {
        if !PoolKey::is_image_digest(&new.key.image_digest) {
            return Err(StoreError::corrupt("image_digest", "not an image id"));
        }
        with_db!(self, |pool, _begin| {
            sqlx::query(
                "INSERT INTO pool_members (id, pool_key, image_digest, run_as, tty, rootfs, \
                 node, runtime_sha, network_name, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(new.id.as_uuid())
            .bind(new.key.hash())
            .bind(new.key.image_digest.as_str())
            .bind(new.key.user.to_string())
            .bind(new.key.tty)
            .bind(rootfs_text(new.key.rootfs))
            .bind(new.node.as_str())
            .bind(new.runtime_sha.as_str())
            .bind(member_network_name(new.id))
            .bind(MemberState::Warming.as_str())
            .bind(now())
            .execute(pool)
            .await?;
        });
        self.get_member(new.id).await?.ok_or(StoreError::NotFound)
    }

    /// The member, if it exists.
    pub async fn get_member(&self, id: MemberId) -> Result<Option<PoolMember>, StoreError> {
        let row: Option<MemberRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(select_member!("WHERE m.id = $1"))
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(MemberRow::into_member).transpose()
    }

    /// The member's /29: the one it holds, or the first free one in `pools` (free of
    /// sandboxes' and members' allocations alike), taken in one transaction. Only a
    /// `warming` member gets one; a claim passes it to the sandbox.
    pub async fn allocate_member_subnet(
        &self,
        id: MemberId,
        pools: &[Ipv4Net],
    ) -> Result<SandboxSubnet, StoreError> {
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            for _ in 0..MAX_ATTEMPTS {
                let row: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT m.state, a.subnet FROM pool_members m \
                     LEFT JOIN subnet_allocations a ON a.member_id = m.id WHERE m.id = $1",
                )
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                let (state, held) = row.ok_or(StoreError::NotFound)?;
                if let Some(held) = held {
                    tx.commit().await?;
                    return parse_subnet(&held);
                }
                let state = parse_state(&state)?;
                if state != MemberState::Warming {
                    let event = "allocate_subnet";
                    return Err(crate::pool::MemberTransitionError { from: state, event }.into());
                }
                let taken: Vec<(String,)> = sqlx::query_as("SELECT subnet FROM subnet_allocations")
                    .fetch_all(&mut *tx)
                    .await?;
                let taken = taken
                    .iter()
                    .map(|(text,)| parse_subnet(text).map(|s| s.net()))
                    .collect::<Result<HashSet<_>, _>>()?;
                let subnet =
                    SandboxSubnet::first_free(pools, &taken).ok_or(StoreError::SubnetsExhausted)?;
                let inserted = sqlx::query(
                    "INSERT INTO subnet_allocations (subnet, member_id, allocated_at) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(subnet.to_string())
                .bind(id.as_uuid())
                .bind(now())
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    tx.commit().await?;
                    return Ok(subnet);
                }
            }
            Err(StoreError::Contended)
        })
    }

    /// `warming → ready`, recording the started container.
    pub async fn mark_member_ready(
        &self,
        id: MemberId,
        container_id: &str,
    ) -> Result<PoolMember, StoreError> {
        let sql = fenced(MemberEvent::Ready, ", container_id = $3, ready_at = $4");
        let at = now();
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(&sql)
                .bind(MemberState::Ready.as_str())
                .bind(id.as_uuid())
                .bind(container_id)
                .bind(at)
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.fenced_result(id, MemberEvent::Ready, changed).await
    }

    /// `claiming → claimed`, once the frame reached the member.
    pub async fn mark_member_claimed(&self, id: MemberId) -> Result<PoolMember, StoreError> {
        let sql = fenced(MemberEvent::Bound, ", claimed_at = $3");
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(&sql)
                .bind(MemberState::Claimed.as_str())
                .bind(id.as_uuid())
                .bind(now())
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.fenced_result(id, MemberEvent::Bound, changed).await
    }

    /// Any state but `claimed` → `destroying`: never handed out again. Repeating it is fine.
    pub async fn mark_member_destroying(&self, id: MemberId) -> Result<PoolMember, StoreError> {
        let sql = fenced(MemberEvent::Destroy, "");
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(&sql)
                .bind(MemberState::Destroying.as_str())
                .bind(id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.fenced_result(id, MemberEvent::Destroy, changed).await
    }

    /// Removes a `destroying` member's row (its /29, if it still holds one, goes with it),
    /// after its container and network are gone. A missing member is `false`; one in another
    /// state is [`StoreError::MemberTransition`].
    pub async fn remove_member(&self, id: MemberId) -> Result<bool, StoreError> {
        let removed = with_db!(self, |pool, _begin| {
            sqlx::query("DELETE FROM pool_members WHERE id = $1 AND state = $2")
                .bind(id.as_uuid())
                .bind(MemberState::Destroying.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 1 {
            return Ok(true);
        }
        match self.get_member(id).await? {
            None => Ok(false),
            Some(member) => Err(crate::pool::MemberTransitionError {
                from: member.state,
                event: "remove",
            }
            .into()),
        }
    }

    /// Members a claim took before `before` and that never completed: the reconciler
    /// destroys them (their sandboxes end `failed`). Oldest first.
    pub async fn stale_claiming(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<PoolMember>, StoreError> {
        let rows: Vec<MemberRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(select_member!(
                "WHERE m.state = $1 AND m.claiming_at < $2 ORDER BY m.claiming_at, m.id"
            ))
            .bind(MemberState::Claiming.as_str())
            .bind(before)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(MemberRow::into_member).collect()
    }

    /// Ready and warming members per node and pool: what refill tops up and `GET /v1/pools`
    /// shows. Pools with neither are absent.
    pub async fn pool_counts(&self) -> Result<Vec<PoolCount>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT node, pool_key, state, COUNT(*) FROM pool_members \
                 WHERE state IN ('warming', 'ready') GROUP BY node, pool_key, state",
            )
            .fetch_all(pool)
            .await?
        });
        let mut counts: BTreeMap<(String, String), PoolCount> = BTreeMap::new();
        for (node, pool_key, state, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            let entry = counts
                .entry((node.clone(), pool_key.clone()))
                .or_insert_with(|| PoolCount {
                    node,
                    pool_key,
                    ..PoolCount::default()
                });
            match parse_state(&state)? {
                MemberState::Ready => entry.ready = n,
                _ => entry.warming = n,
            }
        }
        Ok(counts.into_values().collect())
    }

    /// Every member on `node`, in id (≈ creation) order: the reconciler's view.
    pub async fn list_members(&self, node: &str) -> Result<Vec<PoolMember>, StoreError> {
        let rows: Vec<MemberRow> = with_db!(self, |pool, _begin| {
            sqlx::query_as(select_member!("WHERE m.node = $1 ORDER BY m.id"))
                .bind(node)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(MemberRow::into_member).collect()
    }

    /// The member after a fenced update that changed `changed` rows.
    async fn fenced_result(
        &self,
        id: MemberId,
        event: MemberEvent,
        changed: u64,
    ) -> Result<PoolMember, StoreError> {
        let member = self.get_member(id).await?.ok_or(StoreError::NotFound)?;
        if changed == 1 {
            return Ok(member);
        }
        Err(member
            .state
            .transition(event)
            .err()
            .map_or(StoreError::Contended, StoreError::from))
    }
}

/// `UPDATE pool_members SET state = $1<set> WHERE id = $2 AND state IN (<the states that
/// accept event>)`: the state machine decides the fence.
pub(crate) fn fenced(event: MemberEvent, set: &str) -> String {
    let states: Vec<String> = MemberState::accepting(event)
        .into_iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!(
        "UPDATE pool_members SET state = $1{set} WHERE id = $2 AND state IN ({})",
        states.join(", ")
    )
}

fn rootfs_text(rootfs: RootFs) -> &'static str {
    match rootfs {
        RootFs::ReadOnly => "ro",
        RootFs::Writable => "rw",
    }
}

fn parse_state(text: &str) -> Result<MemberState, StoreError> {
    text.parse().map_err(|e| StoreError::corrupt("state", e))
}

fn parse_subnet(text: &str) -> Result<SandboxSubnet, StoreError> {
    text.parse::<Ipv4Net>()
        .ok()
        .and_then(SandboxSubnet::new)
        .ok_or_else(|| StoreError::corrupt("subnet", format!("`{text}` is not a /29")))
}

// === impl MemberRow ===

impl MemberRow {
    pub(crate) fn into_member(self) -> Result<PoolMember, StoreError> {
        let user = parse_run_as(&self.run_as)?;
        let rootfs = match self.rootfs.as_str() {
            "ro" => RootFs::ReadOnly,
            "rw" => RootFs::Writable,
            other => return Err(StoreError::corrupt("rootfs", other)),
        };
        Ok(PoolMember {
            id: MemberId::from_uuid(self.id),
            key: PoolKey {
                image_digest: self.image_digest,
                user,
                tty: self.tty,
                rootfs,
            },
            pool_key: self.pool_key,
            node: self.node,
            runtime_sha: self.runtime_sha,
            network_name: self.network_name,
            state: parse_state(&self.state)?,
            container_id: self.container_id,
            sandbox: self.sandbox_id.map(SandboxId::from_uuid),
            subnet: self.subnet.as_deref().map(parse_subnet).transpose()?,
            created_at: self.created_at,
            ready_at: self.ready_at,
            claiming_at: self.claiming_at,
            claimed_at: self.claimed_at,
        })
    }
}

fn parse_run_as(text: &str) -> Result<RunAs, StoreError> {
    let bad = || StoreError::corrupt("run_as", format!("`{text}` is not uid:gid"));
    let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
    Ok(RunAs {
        uid: uid.parse().map_err(|_e| bad())?,
        gid: gid.parse().map_err(|_e| bad())?,
    })
}
