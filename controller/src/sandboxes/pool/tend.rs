//! The pools' background task. At start it imports `AIRLOCK_POOLS` into the store (when the
//! variable's document changed since the last import, `store::pool_config`) and reconciles the
//! node's members (before any refill), then loops: each tick (and whenever a claim or
//! `PUT /v1/pools` wakes it) it applies the node's stored pool document if it changed, checked
//! again against the operator's bounds (a document that no longer passes applies no pools),
//! resolves the pools and tops each up to `ready + warming ≥ size`, making at most
//! [`REFILL_CONCURRENCY`] members at a time; every [`RECONCILE_EVERY`] it reconciles the
//! members again.
//!
//! The members' reconcile, per stored member of this node:
//! - `warming`: left to its maker, unless this is the start pass (its maker died) or it is
//!   older than [`WARMING_DEADLINE`]: destroyed;
//! - `ready`: destroyed when its container no longer runs, it waited past `max_idle`, it was
//!   made with another runtime, or its key is no longer a pool's; otherwise its
//!   stdin attach is re-opened when this process does not hold it (after a restart), and a
//!   member whose attach cannot be re-opened is destroyed;
//! - `claiming` at the start pass, or for longer than [`CLAIM_DEADLINE`]: destroyed (its
//!   sandbox ends `failed` through the sandbox reconciler, which never adopts a `creating`
//!   sandbox's container);
//! - `destroying`: the destroy is finished.
//!
//! A container labelled as a member whose row is gone (and whose id is no sandbox's) is
//! removed. Docker is listed before the store is read, and a row is written before its
//! objects, so a member being made is never taken for such a leftover.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};

use crate::docker::client::listing::ListedState;
use crate::docker::spec::pool::LABEL_MEMBER;
use crate::pool::{doc, MemberId, MemberState};
use crate::sandboxes::Sandboxes;
use crate::store::PoolMember;

/// Members made at once, over all pools.
const REFILL_CONCURRENCY: usize = 2;
/// Time between refill checks (a claim wakes the refill at once).
const TICK: Duration = Duration::from_secs(2);
/// Time between member reconciles.
const RECONCILE_EVERY: Duration = Duration::from_secs(15);
/// Age after which a `warming` member counts as abandoned.
const WARMING_DEADLINE: Duration = Duration::from_secs(120);
/// Age after which a `claiming` member counts as abandoned.
const CLAIM_DEADLINE: Duration = Duration::from_secs(10);

// === impl Sandboxes ===

impl Sandboxes {
    /// Tends the node's pools until `shutdown` completes.
    pub async fn tend_pools(self, shutdown: impl Future<Output = ()>) {
        self.import_env_pools().await;
        self.sync_pools().await;
        self.resolve_pools().await;
        self.reconcile_members(true).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
        reconcile.reset();
        let mut making = Making::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
                () = self.pools.inner.refill.notified() => {}
                Some(done) = making.set.join_next_with_id(), if !making.set.is_empty() => {
                    making.finished(done.map_or_else(|e| e.id(), |(id, ())| id));
                }
                _ = reconcile.tick() => self.reconcile_members(false).await,
            }
            if self.sync_pools().await {
                // Members of a pool that is gone or changed key go now, not a reconcile later.
                self.resolve_pools().await;
                self.reconcile_members(false).await;
            }
            self.refill(&mut making).await;
        }
        // Members being made finish or are undone by the next start's reconcile.
        making.set.abort_all();
        info!("Pool tending stopped");
    }

    /// Starts members where a pool is short, up to
    /// [`REFILL_CONCURRENCY`] at a time.
    async fn refill(&self, making: &mut Making) {
        if making.set.len() >= REFILL_CONCURRENCY {
            return;
        }
        self.resolve_pools().await;
        let counts = match self.store.pool_counts().await {
            Ok(counts) => counts,
            Err(error) => {
                warn!(%error, "Pool counts unavailable; refill skipped");
                return;
            }
        };
        let node = &self.settings.node;
        let resolved: Vec<_> = self
            .pools
            .state()
            .resolved
            .iter()
            .flatten()
            .cloned()
            .collect();
        for pool in resolved {
            let count = counts
                .iter()
                .find(|c| &c.node == node && c.pool_key == pool.hash);
            self.peers
                .metrics
                .pool_ready(&pool.hash, count.map_or(0, |c| c.ready));
            // A member being made counts before its row is inserted.
            let warming = count.map_or(0, |c| c.warming).max(making.of(&pool.hash));
            let have = count.map_or(0, |c| c.ready) + warming;
            let mut short = pool.size.saturating_sub(have);
            while short > 0 && making.set.len() < REFILL_CONCURRENCY {
                short -= 1;
                let sandboxes = self.clone();
                let hash = pool.hash.clone();
                let pool = pool.clone();
                making.spawn(hash, async move {
                    if let Err(error) = sandboxes.warm_member(&pool).await {
                        warn!(%error, pool = %pool.hash, "Refill could not make a member");
                    }
                });
            }
        }
    }

    /// Imports `AIRLOCK_POOLS`' document unless that very document was imported last (an
    /// admin's edit since then stays).
    async fn import_env_pools(&self) {
        let Some(env) = &self.settings.env_pools else {
            return;
        };
        let sha = crate::egress::hex_sha256(&env.document);
        match self
            .store
            .import_pool_env(&self.settings.node, &env.document, &sha)
            .await
        {
            Ok(imported) => info!(pools.imported = imported, "AIRLOCK_POOLS checked"),
            Err(error) => warn!(%error, "AIRLOCK_POOLS could not be imported"),
        }
    }

    /// Applies the node's stored pool document when it differs from the one applied (no
    /// row: no pools), checked again against the operator's bounds, which may have changed
    /// since it was written. Returns whether the pools changed.
    async fn sync_pools(&self) -> bool {
        let stored = match self.store.pool_config(&self.settings.node).await {
            Ok(stored) => stored,
            Err(error) => {
                warn!(%error, "The pool document cannot be read; the pools stay as they are");
                return false;
            }
        };
        let document = stored.map_or_else(|| "[]".to_owned(), |s| s.document);
        if self.pools.applied(&document) {
            return false;
        }
        let specs = match doc::check(&document, &self.settings.pool_bounds) {
            Ok(checked) => checked.specs,
            Err(problems) => {
                for problem in &problems {
                    error!(%problem, "The stored pool document fails the operator's bounds; \
                        it applies no pools until it is set again");
                }
                Vec::new()
            }
        };
        info!(pools = specs.len(), "Pool document applied");
        self.pools.apply(document, specs);
        true
    }

    /// Resolves every pool again (an image retagged since is picked up); a pool that does not
    /// resolve keeps what it resolved to last.
    async fn resolve_pools(&self) {
        for (i, spec) in self.pools.specs().iter().enumerate() {
            match self.resolve_pool(spec).await {
                Ok(resolved) => self.pools.resolved(i, spec, resolved),
                Err(error) => {
                    warn!(%error, pool.image = %spec.image.as_str(), "A pool cannot be filled");
                }
            }
        }
    }

    /// One reconcile of the node's members (see the module docs); `start`: the first, before
    /// any member is being made.
    async fn reconcile_members(&self, start: bool) {
        if let Err(error) = self.try_reconcile_members(start).await {
            warn!(%error, "Pool member reconcile failed");
        }
    }

    async fn try_reconcile_members(&self, start: bool) -> Result<(), super::SandboxError> {
        let node = &self.settings.node;
        if !start && self.pools.is_empty() && self.store.list_members(node).await?.is_empty() {
            return Ok(());
        }
        // Docker first, then the store: see the module docs.
        let containers = self.docker.node_containers(node).await?;
        let members = self.store.list_members(node).await?;
        let running: HashMap<MemberId, bool> = containers
            .iter()
            .filter_map(|c| {
                let id = c.labels.get(LABEL_MEMBER)?.parse().ok()?;
                Some((id, c.state == ListedState::Running))
            })
            .collect();
        let runtime = self.runtime.current();
        let now = OffsetDateTime::now_utc();
        let mut destroy = Vec::new();
        for member in &members {
            let doomed = match member.state {
                MemberState::Warming => start || older(member.created_at, now, WARMING_DEADLINE),
                MemberState::Ready => {
                    !self
                        .keep_ready(member, &running, runtime.as_deref(), now)
                        .await
                }
                MemberState::Claiming => {
                    start
                        || member
                            .claiming_at
                            .is_some_and(|at| older(at, now, CLAIM_DEADLINE))
                }
                MemberState::Destroying => true,
                MemberState::Claimed => false,
            };
            if doomed {
                destroy.push(member.id);
            }
        }
        // Labelled leftovers without a row (`destroy_member` spares one whose id a sandbox has).
        let stored: HashSet<MemberId> = members.iter().map(|m| m.id).collect();
        destroy.extend(running.keys().filter(|id| !stored.contains(id)).copied());
        if !destroy.is_empty() {
            info!(members = destroy.len(), "Destroying pool members");
        }
        for id in destroy {
            self.destroy_member(id).await;
        }
        Ok(())
    }

    /// Whether a ready member stays: its container runs, it is fresh, on this runtime and a
    /// pool's, and its stdin attach is held (re-opened here when it is not).
    async fn keep_ready(
        &self,
        member: &PoolMember,
        running: &HashMap<MemberId, bool>,
        runtime: Option<&str>,
        now: OffsetDateTime,
    ) -> bool {
        let Some(pool) = self.pools.by_hash(&member.pool_key) else {
            return false;
        };
        let fresh = member
            .ready_at
            .is_some_and(|at| !older(at, now, pool.max_idle));
        let current = runtime.is_none_or(|sha| sha == member.runtime_sha);
        if !(running.get(&member.id) == Some(&true) && fresh && current) {
            return false;
        }
        if self.pools.holds(member.id) {
            return true;
        }
        let Some(container) = member.container_id.as_deref() else {
            return false;
        };
        match self.docker.attach_stdin(container).await {
            Ok(stdin) => {
                self.pools.keep(member.id, stdin);
                true
            }
            Err(error) => {
                warn!(%error, member.id = %member.id, "A member's stdin could not be re-opened");
                false
            }
        }
    }
}

/// The members being made, and the pool of each.
#[derive(Default)]
struct Making {
    set: JoinSet<()>,
    pools: HashMap<tokio::task::Id, String>,
}

impl Making {
    fn spawn(&mut self, pool: String, make: impl Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(make).id();
        self.pools.insert(id, pool);
    }

    fn finished(&mut self, id: tokio::task::Id) {
        self.pools.remove(&id);
    }

    /// How many of pool `hash`'s members are being made.
    fn of(&self, hash: &str) -> u64 {
        let n = self.pools.values().filter(|p| *p == hash).count();
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

fn older(at: OffsetDateTime, now: OffsetDateTime, age: Duration) -> bool {
    now - at > age
}
