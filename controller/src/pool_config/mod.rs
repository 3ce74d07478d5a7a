//! A node's pool document, as admins set it: `PUT /v1/pools` and `GET /v1/pools/config`
//! (the API), `airlock pools set|show` (offline, against the store). Commands: [`SetPools`],
//! [`GetPoolConfig`].
//!
//! Invariants:
//! - only admins read or set it;
//! - a document is checked by [`crate::pool::doc::check`] against the operator's bounds
//!   (`AIRLOCK_MAX_*`, `AIRLOCK_ALLOWED_UIDS`, `AIRLOCK_MAX_VOLUME_MB`, `AIRLOCK_IMAGES`)
//!   before it is stored, every problem named by its field; nothing is stored otherwise;
//! - the store keeps the canonical form, one row per node (`store::pool_config`); the pool
//!   service's tending applies it (woken at once in the server; within a tick otherwise) and
//!   checks it again, since the bounds can change after it was written;
//! - every set, and every refused one, is audited with the pools and members before and
//!   after.

use time::OffsetDateTime;

use crate::accounts::user::UserId;
use crate::audit::{status, Actor, AuditLog, Command, Entry};
use crate::pool::doc::{self, CheckedDoc};
use crate::pool::{PoolBounds, PoolSpec};
use crate::sandbox::FieldError;
use crate::sandboxes::Pools;
use crate::store::{Store, StoreError, StoredPoolConfig};

/// The audit action of a set.
const SET: &str = "PUT /v1/pools";

/// The pool document service of one node; cheap to clone.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    store: Store,
    audit: AuditLog,
    node: String,
    bounds: PoolBounds,
    /// The running pools, woken after a set (the server's; the offline CLI has none).
    pools: Option<Pools>,
}

/// `PUT /v1/pools` / `airlock pools set`: replaces the node's pools with `document`, a JSON
/// array of `{image, user?, size, max_idle_s?, shape?, scratch_mb?}` (`[]`: no pools).
#[derive(Clone, Debug)]
pub struct SetPools {
    /// The document as sent.
    pub document: String,
}

/// `GET /v1/pools/config` / `airlock pools show`: the node's stored document.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetPoolConfig;

/// A node's document, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfigView {
    /// The node.
    pub node: String,
    /// The canonical document (`[]` when none was ever stored).
    pub document: String,
    /// Who wrote it: `env` (`AIRLOCK_POOLS`), `api`, or `none`.
    pub source: &'static str,
    /// The admin who wrote it.
    pub updated_by: Option<UserId>,
    /// When.
    pub updated_at: Option<OffsetDateTime>,
    /// The pools it holds, checked against the bounds in force now.
    pub pools: Vec<PoolSpec>,
    /// Why it applies no pools, when it fails those bounds now (they changed since).
    pub problems: Vec<FieldError>,
}

/// Why a pool document command failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolConfigError {
    /// Only admins read or set the pools.
    #[error("only an admin may do this")]
    AdminOnly,
    /// The document fails a check; nothing was stored.
    #[error("the pool document is invalid ({} problems)", .0.len())]
    Invalid(Vec<FieldError>),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

// === impl PoolConfig ===

impl PoolConfig {
    /// The service for `node`, checking documents against `bounds`.
    pub fn new(store: Store, audit: AuditLog, node: String, bounds: PoolBounds) -> Self {
        Self {
            store,
            audit,
            node,
            bounds,
            pools: None,
        }
    }

    /// Wakes `pools`' tending after every set, so a new document applies at once.
    #[must_use]
    pub fn waking(mut self, pools: Pools) -> Self {
        self.pools = Some(pools);
        self
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    fn view(&self, stored: Option<StoredPoolConfig>) -> PoolConfigView {
        let (document, source, updated_by, updated_at) = match stored {
            Some(s) => (
                s.document,
                s.source.as_str(),
                s.updated_by,
                Some(s.updated_at),
            ),
            None => ("[]".to_owned(), "none", None, None),
        };
        let (pools, problems) = match doc::check(&document, &self.bounds) {
            Ok(checked) => (checked.specs, Vec::new()),
            Err(problems) => (Vec::new(), problems),
        };
        PoolConfigView {
            node: self.node.clone(),
            document,
            source,
            updated_by,
            updated_at,
            pools,
            problems,
        }
    }
}

fn admin(actor: &Actor) -> Result<(), PoolConfigError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(PoolConfigError::AdminOnly)
    }
}

/// `pools=N members=M`, for audit details.
fn summary(specs: &[PoolSpec]) -> String {
    let members: u64 = specs.iter().map(|s| s.size).sum();
    format!("pools={} members={members}", specs.len())
}

// === impl SetPools ===

impl Command<PoolConfig> for SetPools {
    type Output = PoolConfigView;
    type Error = PoolConfigError;

    async fn execute(
        self,
        service: &PoolConfig,
        actor: &Actor,
    ) -> Result<PoolConfigView, PoolConfigError> {
        admin(actor)?;
        let node = &service.node;
        let CheckedDoc { document, specs } = match doc::check(&self.document, &service.bounds) {
            Ok(checked) => checked,
            Err(problems) => {
                let first = problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let detail = format!("refused: {} problems, the first {first}", problems.len());
                let entry = Entry::new(SET, status::BAD_REQUEST)
                    .object(node)
                    .detail(detail);
                service.audit.record(actor, entry).await;
                return Err(PoolConfigError::Invalid(problems));
            }
        };
        let before = service
            .store
            .replace_pool_config(node, &document, actor.user())
            .await?;
        let was = before
            .map(|b| service.view(Some(b)).pools)
            .unwrap_or_default();
        let detail = format!("{} (was {})", summary(&specs), summary(&was));
        let entry = Entry::new(SET, status::OK).object(node).detail(detail);
        service.audit.record(actor, entry).await;
        if let Some(pools) = &service.pools {
            pools.wake();
        }
        let stored = service.store.pool_config(node).await?;
        Ok(service.view(stored))
    }
}

// === impl GetPoolConfig ===

impl Command<PoolConfig> for GetPoolConfig {
    type Output = PoolConfigView;
    type Error = PoolConfigError;

    async fn execute(
        self,
        service: &PoolConfig,
        actor: &Actor,
    ) -> Result<PoolConfigView, PoolConfigError> {
        admin(actor)?;
        let stored = service.store.pool_config(&service.node).await?;
        Ok(service.view(stored))
    }
}
