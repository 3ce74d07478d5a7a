//! Sandbox rows: create (idempotent per owner and key), owner-scoped reads, cursor pages,
//! generation-fenced state transitions (an end releases the sandbox's volume mounts in the
//! same transaction), desired state and deletion.

use tracing::instrument;
use uuid::Uuid;

use super::folders::Holds;
use super::reserve::{check_quota_on, insert_sandbox_on, INSERT_EVENT};
use super::rows::{SandboxRow, SpecDoc};
use super::{
    now, with_db, Backend, Created, ListQuery, NewAuditRecord, NewSandbox, Page, Sandbox, Scope,
    Store, StoreError,
};
use crate::accounts::quota::Quota;
use crate::sandbox::{DesiredState, EndReason, SandboxEvent, SandboxId, SandboxState};

/// How often a compare-and-swap that lost to a concurrent writer is retried.
const MAX_ATTEMPTS: usize = 8;

/// `SELECT <every sandbox column> FROM sandboxes ` followed by the given clauses.
macro_rules! select_sandbox {
    ($($rest:literal)*) => {
        concat!(
            "SELECT id, owner_id, spec, desired_state, observed_state, end_reason, exit_code, \
             end_message, generation, node, network_name, subnet, container_id, \
             idempotency_key, created_at, updated_at, ended_at FROM sandboxes ",
            $($rest),*
        )
    };
}
pub(crate) use select_sandbox;

const UPDATE_STATE: &str = "UPDATE sandboxes SET observed_state = $1, end_reason = $2, \
    exit_code = $3, end_message = $4, ended_at = $5, updated_at = $6 \
    WHERE id = $7 AND generation = $8 AND observed_state = $9";

fn scope_owner(scope: Scope) -> Option<Uuid> {
    match scope {
        Scope::Owner(owner) => Some(owner.as_uuid()),
        Scope::All => None,
    }
}

// === impl Store ===

impl Store {
    /// Creates a sandbox in `creating` (desired `running`, generation 1) and records the
    /// `created` event, in one transaction.
    ///
    /// With an idempotency key, a repeat by the same owner returns the first sandbox as
    /// [`Created::Existing`]; the same key with a different spec is
    /// [`StoreError::IdempotencyMismatch`]. Concurrent repeats resolve to one sandbox: the
    /// losers' inserts hit the `(owner_id, idempotency_key)` unique constraint and read the
    /// winner's row.
    #[instrument(skip_all, fields(user.id = %new.owner))]
    pub async fn create_sandbox(&self, new: NewSandbox) -> Result<Created, StoreError> {
        self.create_sandbox_quota(new, None, Holds::default(), None)
            .await
    }

    /// [`Store::create_sandbox`], checked against the owner's quota: `defaults` with the
    /// owner's stored overrides. The check (usage read under a per-owner lock) and the
    /// insert are one transaction, so parallel creates cannot overshoot; a create past a
    /// limit is [`StoreError::QuotaExceeded`] and writes nothing. An idempotent repeat is
    /// answered without a check.
    #[instrument(skip_all, fields(user.id = %new.owner))]
    pub async fn create_sandbox_within_quota(
        &self,
        new: NewSandbox,
        defaults: Quota,
    ) -> Result<Created, StoreError> {
        self.create_sandbox_quota(new, Some(defaults), Holds::default(), None)
            .await
    }

    /// The one create. `audit`, when given, is appended in the transaction that inserts a new
    /// sandbox, naming it as its object: a reserved sandbox always has its row, and a refused
    /// insert (quota, held volume) leaves none. A repeat of an idempotency key writes none.
    pub(super) async fn create_sandbox_quota(
        &self,
        new: NewSandbox,
        quota: Option<Quota>,
        holds: Holds<'_>,
        audit: Option<&NewAuditRecord>,
    ) -> Result<Created, StoreError> {
        let doc = SpecDoc::from_spec(&new.spec);
        if let Some(row) = self.find_by_key(&new).await? {
            return existing(row, &doc);
        }
        match self.insert_sandbox(&new, &doc, quota, holds, audit).await {
            Ok(sandbox) => Ok(Created::New(sandbox)),
            Err(StoreError::Conflict { .. }) if new.idempotency_key.is_some() => {
                let row = self.find_by_key(&new).await?.ok_or(StoreError::NotFound)?;
                existing(row, &doc)
            }
            Err(error) => Err(error),
        }
    }

    pub(super) async fn find_by_key(
        &self,
        new: &NewSandbox,
    ) -> Result<Option<SandboxRow>, StoreError> {
        let Some(key) = new.idempotency_key.as_deref() else {
            return Ok(None);
        };
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, SandboxRow>(select_sandbox!(
                "WHERE owner_id = $1 AND idempotency_key = $2"
            ))
            .bind(new.owner.as_uuid())
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    async fn insert_sandbox(
        &self,
        new: &NewSandbox,
        doc: &SpecDoc,
        quota: Option<Quota>,
        holds: Holds<'_>,
        audit: Option<&NewAuditRecord>,
    ) -> Result<Sandbox, StoreError> {
        let id = SandboxId::new();
        let audit = audit.map(|record| NewAuditRecord {
            object: Some(id.to_string()),
            ..record.clone()
        });
        let at = now();
        let postgres = self.backend() == Backend::Postgres;
        let owner = new.owner.as_uuid();
        let row = with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            if let Some(defaults) = quota {
                check_quota_on!(tx, postgres, owner, &new.spec, defaults, at);
            }
            let node = new.node.as_deref();
            insert_sandbox_on!(tx, postgres, id, new, doc, node, holds, audit.as_ref(), at);
            let row = sqlx::query_as::<_, SandboxRow>(select_sandbox!("WHERE id = $1"))
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        row.into_sandbox()
    }

    /// The sandbox, if it exists and `scope` may see it. Another owner's sandbox is `None`,
    /// exactly like a missing one, and so is one whose delete has begun ([`Store::begin_delete`]).
    pub async fn get_sandbox(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<Option<Sandbox>, StoreError> {
        let row = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, SandboxRow>(select_sandbox!(
                "WHERE id = $1 AND ($2 IS NULL OR owner_id = $2) AND desired_state <> 'deleted'"
            ))
            .bind(id.as_uuid())
            .bind(scope_owner(scope))
            .fetch_optional(pool)
            .await?
        });
        row.map(SandboxRow::into_sandbox).transpose()
    }

    /// One page of the sandboxes `scope` may see, in id (≈ creation) order, optionally only
    /// those in one observed state; those whose delete has begun are left out.
    pub async fn list_sandboxes(&self, scope: Scope, query: ListQuery) -> Result<Page, StoreError> {
        self.page(scope, query, false).await
    }

    /// One page of every stored sandbox, those being deleted included (the reconciler
    /// finishes a delete that a restart interrupted).
    pub async fn list_every_sandbox(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.page(Scope::All, query, true).await
    }

    async fn page(
        &self,
        scope: Scope,
        query: ListQuery,
        deleting: bool,
    ) -> Result<Page, StoreError> {
        let limit = query.effective_limit();
        let rows = with_db!(self, |pool, _begin| {
            sqlx::query_as::<_, SandboxRow>(select_sandbox!(
                "WHERE ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR observed_state = $2) "
                "AND ($3 IS NULL OR id > $3) AND ($5 OR desired_state <> 'deleted') "
                "ORDER BY id LIMIT $4"
            ))
            .bind(scope_owner(scope))
            .bind(query.state.map(SandboxState::as_str))
            .bind(query.after.map(|id| id.as_uuid()))
            .bind(i64::from(limit) + 1)
            .bind(deleting)
            .fetch_all(pool)
            .await?
        });
        let mut items = rows
            .into_iter()
            .map(SandboxRow::into_sandbox)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = if more {
            items.last().map(|s| s.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Applies `event` through the state machine and records it, in one transaction, if the
    /// caller's `generation` is the sandbox's current one.
    ///
    /// A stale generation is [`StoreError::StaleGeneration`]; an event the state does not
    /// accept is [`StoreError::Transition`]. A repeated stop request while stopping changes
    /// nothing and records nothing.
    #[instrument(skip_all, fields(sandbox.id = %id, sandbox.generation = generation, event = event.name()))]
    pub async fn record_transition(
        &self,
        id: SandboxId,
        generation: i64,
        event: &SandboxEvent,
    ) -> Result<Sandbox, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(sandbox) = self.try_transition(id, generation, event).await? {
                return Ok(sandbox);
            }
        }
        Err(StoreError::Contended)
    }

    /// One compare-and-swap attempt of [`Store::record_transition`]; `None` when a concurrent
    /// writer changed the row between the read and the write.
    async fn try_transition(
        &self,
        id: SandboxId,
        generation: i64,
        event: &SandboxEvent,
    ) -> Result<Option<Sandbox>, StoreError> {
        let at = now();
        let reason = match event {
            SandboxEvent::Ended(reason) => Some(reason),
            _ => None,
        };
        let end_kind = reason.map(|r| r.kind().as_str());
        let exit_code = reason.and_then(EndReason::exit_code);
        with_db!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let row = sqlx::query_as::<_, SandboxRow>(select_sandbox!("WHERE id = $1"))
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let sandbox = row.into_sandbox()?;
            let next = check_transition(&sandbox, generation, event)?;
            if next == sandbox.state && reason.is_none() {
                return Ok(Some(sandbox));
            }
            let updated = sqlx::query(UPDATE_STATE)
                .bind(next.as_str())
                .bind(end_kind)
                .bind(exit_code)
                .bind(reason.and_then(EndReason::message))
                .bind(reason.map(|_| at))
                .bind(at)
                .bind(id.as_uuid())
                .bind(generation)
                .bind(sandbox.state.as_str())
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() != 1 {
                return Ok(None);
            }
            if reason.is_some() {
                sqlx::query(super::volumes::RELEASE_MOUNTS)
                    .bind(at)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(INSERT_EVENT)
                .bind(id.as_uuid())
                .bind(generation)
                .bind(event.name())
                .bind(Some(sandbox.state.as_str()))
                .bind(next.as_str())
                .bind(end_kind)
                .bind(exit_code)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(applied(sandbox, next, reason, at)))
        })
    }

    /// Marks the sandbox `lost` (its container vanished), fenced by generation.
    pub async fn mark_lost(&self, id: SandboxId, generation: i64) -> Result<Sandbox, StoreError> {
        self.record_transition(id, generation, &SandboxEvent::Ended(EndReason::Lost))
            .await
    }

    /// Sets what should exist; `None` when `scope` cannot see the sandbox.
    pub async fn set_desired_state(
        &self,
        scope: Scope,
        id: SandboxId,
        desired: DesiredState,
    ) -> Result<Option<Sandbox>, StoreError> {
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(
                "UPDATE sandboxes SET desired_state = $1, updated_at = $2 \
                 WHERE id = $3 AND ($4 IS NULL OR owner_id = $4)",
            )
            .bind(desired.as_str())
            .bind(now())
            .bind(id.as_uuid())
            .bind(scope_owner(scope))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            return Ok(None);
        }
        self.get_sandbox(scope, id).await
    }

    /// Begins a delete: the sandbox's desired state becomes `deleted` and its idempotency key
    /// is dropped (a later create with that key makes a new sandbox), which hides it from
    /// every read of clients at once while its teardown finishes. Returns it as it was; `None`
    /// when `scope` cannot see it, or its delete has begun already.
    pub async fn begin_delete(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<Option<Sandbox>, StoreError> {
        let Some(sandbox) = self.get_sandbox(scope, id).await? else {
            return Ok(None);
        };
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(
                "UPDATE sandboxes SET desired_state = 'deleted', idempotency_key = NULL, \
                 updated_at = $1 WHERE id = $2 AND desired_state <> 'deleted'",
            )
            .bind(now())
            .bind(id.as_uuid())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((changed == 1).then_some(sandbox))
    }

    /// Removes the row of a sandbox whose delete has begun, with its events and subnet
    /// allocation (whatever its generation: nothing revives a deleted sandbox). Returns
    /// whether a row was removed.
    pub async fn finish_delete(&self, id: SandboxId) -> Result<bool, StoreError> {
        let removed = with_db!(self, |pool, _begin| {
            sqlx::query("DELETE FROM sandboxes WHERE id = $1 AND desired_state = 'deleted'")
                .bind(id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed == 1)
    }

    /// Records the container Docker created for this incarnation, fenced by generation.
    pub async fn set_container(
        &self,
        id: SandboxId,
        generation: i64,
        container_id: &str,
    ) -> Result<(), StoreError> {
        let changed = with_db!(self, |pool, _begin| {
            sqlx::query(
                "UPDATE sandboxes SET container_id = $1, updated_at = $2 \
                 WHERE id = $3 AND generation = $4",
            )
            .bind(container_id)
            .bind(now())
            .bind(id.as_uuid())
            .bind(generation)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 1 {
            return Ok(());
        }
        Err(self.fence_error(id, generation).await)
    }

    /// Removes the sandbox row with its events and subnet allocation, fenced by generation.
    /// Returns whether a row was removed; a missing sandbox is not an error (deletes are
    /// idempotent).
    pub async fn delete_sandbox(&self, id: SandboxId, generation: i64) -> Result<bool, StoreError> {
        let removed = with_db!(self, |pool, _begin| {
            sqlx::query("DELETE FROM sandboxes WHERE id = $1 AND generation = $2")
                .bind(id.as_uuid())
                .bind(generation)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 1 {
            return Ok(true);
        }
        match self.fence_error(id, generation).await {
            StoreError::NotFound => Ok(false),
            error => Err(error),
        }
    }

    /// The events recorded for a sandbox, oldest first: `(event, from, to)`.
    pub async fn sandbox_events(
        &self,
        id: SandboxId,
    ) -> Result<Vec<(String, Option<SandboxState>, SandboxState)>, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = with_db!(self, |pool, _begin| {
            sqlx::query_as(
                "SELECT event, from_state, to_state FROM sandbox_events \
                 WHERE sandbox_id = $1 ORDER BY id",
            )
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(event, from, to)| {
                let from = from.map(|s| s.parse()).transpose();
                let from = from.map_err(|e| StoreError::corrupt("from_state", e))?;
                let to = to.parse().map_err(|e| StoreError::corrupt("to_state", e))?;
                Ok((event, from, to))
            })
            .collect()
    }

    /// Why a generation-fenced write touched no row.
    async fn fence_error(&self, id: SandboxId, generation: i64) -> StoreError {
        match self.get_sandbox(Scope::All, id).await {
            Ok(Some(sandbox)) => StoreError::StaleGeneration {
                id,
                given: generation,
                current: sandbox.generation,
            },
            Ok(None) => StoreError::NotFound,
            Err(error) => error,
        }
    }
}

pub(super) fn existing(row: SandboxRow, doc: &SpecDoc) -> Result<Created, StoreError> {
    if row.spec_doc() != doc {
        let existing = row.into_sandbox()?.id;
        return Err(StoreError::IdempotencyMismatch { existing });
    }
    Ok(Created::Existing(row.into_sandbox()?))
}

/// The sandbox after a recorded transition, without reading it back.
fn applied(
    mut sandbox: Sandbox,
    next: SandboxState,
    reason: Option<&EndReason>,
    at: time::OffsetDateTime,
) -> Sandbox {
    sandbox.state = next;
    if let Some(reason) = reason {
        sandbox.end_reason = Some(reason.clone());
        sandbox.ended_at = Some(at);
    }
    sandbox.updated_at = at;
    sandbox
}

fn check_transition(
    sandbox: &Sandbox,
    generation: i64,
    event: &SandboxEvent,
) -> Result<SandboxState, StoreError> {
    if sandbox.generation != generation {
        return Err(StoreError::StaleGeneration {
            id: sandbox.id,
            given: generation,
            current: sandbox.generation,
        });
    }
    Ok(sandbox.state.transition(event)?)
}
