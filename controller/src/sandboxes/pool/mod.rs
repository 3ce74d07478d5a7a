//! Warm pools: started members blocked in `airlock-init` that a create claims instead of
//! making a container ([`crate::pool`] holds the pure types, `store::pool*` the rows).
//!
//! - `warm`: resolving a configured pool (image digest, user, the members' spec) and making
//!   one member (its row, /29, network, unbound proxy registration, container, kept stdin
//!   attach, start); destroying one.
//! - `claim`: whether a create can be served warm (else a `pool_miss{reason}`), and finishing
//!   a claim the store took (bind at the proxy, limits, the frame on the kept attach).
//! - `lock`: one destroy of a member at a time in this process.
//! - `tend`: the background task: the node's pool document (imported from `AIRLOCK_POOLS`,
//!   applied whenever the stored one changes), refill (`ready + warming ≥ size`, two members
//!   at a time) and the members' reconcile (adopt, re-attach, replace, destroy).
//!
//! A member is made under the sandbox id it becomes ([`crate::pool::MemberId::sandbox_id`]):
//! its container and network carry that sandbox's names and labels plus `airlock.member` and
//! `airlock.pool`, so a claimed member is an ordinary sandbox for everything else.

mod claim;
mod lock;
mod tend;
mod warm;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::{SandboxError, Sandboxes};
use crate::audit::{Actor, Command};
use crate::docker::client::runtime::Stdin;
use crate::pool::{MemberId, PoolKey, PoolSpec};
use crate::sandbox::{Limits, SandboxSpec};

pub use claim::MissReason;

/// Claim durations kept per pool for `GET /v1/pools`' percentiles.
const KEPT_DURATIONS: usize = 1024;

/// The node's pools: the document they were set from, what each resolved to, the members'
/// kept stdin attaches and the claim statistics. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Pools {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    refill: Notify,
    destroying: lock::MemberLocks,
}

#[derive(Debug, Default)]
struct State {
    /// The stored document `specs` were applied from (`None`: none yet).
    document: Option<String>,
    /// The node's pools, in document order.
    specs: Vec<PoolSpec>,
    /// Per pool (same index as `specs`): what it resolved to, once it did.
    resolved: Vec<Option<Resolved>>,
    /// Per pool: its claims.
    stats: Vec<Stats>,
    /// The stdin attach of every ready member this process holds.
    attached: HashMap<MemberId, Stdin>,
}

/// A configured pool, resolved on the node.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// The members' key.
    pub(crate) key: PoolKey,
    /// [`PoolKey::hash`] of `key`.
    pub(crate) hash: String,
    /// The spec every member is made from (the pool's image, user and shape).
    pub(crate) spec: SandboxSpec,
    /// How long a member may wait.
    pub(crate) max_idle: Duration,
    /// The members the pool keeps ready.
    pub(crate) size: u64,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    claims: u64,
    empty: u64,
    durations: VecDeque<Duration>,
}

/// `GET /v1/pools`: every configured pool of the node, admins only.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListPools;

/// One pool as `GET /v1/pools` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolView {
    /// The image reference as configured.
    pub image: String,
    /// The key's hash (the `airlock.pool` label); `None` until the image resolved.
    pub key: Option<String>,
    /// The image id the members run.
    pub image_digest: Option<String>,
    /// The members' user, `uid:gid`.
    pub user: Option<String>,
    /// Ready members wanted.
    pub size: u64,
    /// Ready members now.
    pub ready: u64,
    /// Members being made.
    pub warming: u64,
    /// The members' limits.
    pub shape: Limits,
    /// Seconds a member may wait unclaimed.
    pub max_idle_s: u64,
    /// Creates this pool served warm since the process started.
    pub claims: u64,
    /// Creates of this pool's key that found no ready member (they went cold).
    pub misses: u64,
    /// `claims / (claims + misses)`; `None` before any.
    pub hit_rate: Option<f64>,
    /// Median claim time (API request → running), over the last claims.
    pub claim_p50: Option<Duration>,
    /// 99th percentile claim time.
    pub claim_p99: Option<Duration>,
}

// === impl Pools ===

impl Pools {
    /// Whether the node has no pool (none applied yet, or an empty document).
    pub fn is_empty(&self) -> bool {
        self.state().specs.is_empty()
    }

    /// Wakes the tending task, which applies a changed stored document and refills at once
    /// (`PUT /v1/pools` calls it after the store write).
    pub fn wake(&self) {
        self.inner.refill.notify_one();
    }

    /// Whether the pools were last applied from `document`.
    fn applied(&self, document: &str) -> bool {
        self.state().document.as_deref() == Some(document)
    }

    /// The pools, in document order.
    fn specs(&self) -> Vec<PoolSpec> {
        self.state().specs.clone()
    }

    /// Sets the pools to `specs`, checked from `document`. A pool with the same image and user
    /// as one before keeps what that one resolved to (its key, so its members stay) and its
    /// claim statistics, until the next resolve refreshes its size, shape and idle time.
    /// Members of a pool that is gone are replaced by the next reconcile.
    fn apply(&self, document: String, specs: Vec<PoolSpec>) {
        let mut state = self.state();
        let old = std::mem::take(&mut state.specs);
        let (resolved, stats) = specs
            .iter()
            .map(|spec| {
                let kin = old
                    .iter()
                    .position(|o| o.image == spec.image && o.user == spec.user);
                (
                    kin.and_then(|j| state.resolved[j].clone()),
                    kin.map(|j| state.stats[j].clone()).unwrap_or_default(),
                )
            })
            .unzip();
        state.resolved = resolved;
        state.stats = stats;
        state.specs = specs;
        state.document = Some(document);
    }

    /// Records what the pool `spec` (at `index`) resolved to, unless the pools changed since.
    fn resolved(&self, index: usize, spec: &PoolSpec, resolved: Resolved) {
        let mut state = self.state();
        if state.specs.get(index) == Some(spec) {
            state.resolved[index] = Some(resolved);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain maps: a panic elsewhere cannot leave them inconsistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The resolved pool whose key hashes to `hash`.
    pub(crate) fn by_hash(&self, hash: &str) -> Option<Resolved> {
        let state = self.state();
        state
            .resolved
            .iter()
            .flatten()
            .find(|r| r.hash == hash)
            .cloned()
    }

    fn index_of(&self, hash: &str) -> Option<usize> {
        self.state()
            .resolved
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.hash == hash))
    }

    /// Keeps `member`'s stdin attach for its claim.
    fn keep(&self, member: MemberId, stdin: Stdin) {
        self.state().attached.insert(member, stdin);
    }

    /// Takes `member`'s stdin attach (a claim writes its frame on it).
    fn take(&self, member: MemberId) -> Option<Stdin> {
        self.state().attached.remove(&member)
    }

    fn holds(&self, member: MemberId) -> bool {
        self.state().attached.contains_key(&member)
    }

    /// Records a warm claim of the pool `hash` that took `took`.
    fn claimed(&self, hash: &str, took: Duration) {
        let Some(i) = self.index_of(hash) else { return };
        let mut state = self.state();
        let stats = &mut state.stats[i];
        stats.claims += 1;
        if stats.durations.len() == KEPT_DURATIONS {
            stats.durations.pop_front();
        }
        stats.durations.push_back(took);
    }

    /// Records a create of pool `hash`'s key that found no ready member.
    fn missed(&self, hash: &str) {
        if let Some(i) = self.index_of(hash) {
            self.state().stats[i].empty += 1;
        }
    }
}

// === impl ListPools ===

impl Command<Sandboxes> for ListPools {
    type Output = Vec<PoolView>;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<Vec<PoolView>, SandboxError> {
        if !actor.is_admin() {
            return Err(SandboxError::AdminOnly);
        }
        let counts = sandboxes.store.pool_counts().await?;
        let node = &sandboxes.settings.node;
        let pools = &sandboxes.pools;
        let state = pools.state();
        let views = state
            .specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let resolved = state.resolved[i].as_ref();
                let count = resolved.and_then(|r| {
                    counts
                        .iter()
                        .find(|c| &c.node == node && c.pool_key == r.hash)
                });
                let stats = &state.stats[i];
                let asked = stats.claims + stats.empty;
                #[allow(clippy::cast_precision_loss)]
                let hit_rate = (asked > 0).then(|| stats.claims as f64 / asked as f64);
                PoolView {
                    image: spec.image.as_str().to_owned(),
                    key: resolved.map(|r| r.hash.clone()),
                    image_digest: resolved.map(|r| r.key.image_digest.clone()),
                    user: resolved.map(|r| r.key.user.to_string()),
                    size: spec.size,
                    ready: count.map_or(0, |c| c.ready),
                    warming: count.map_or(0, |c| c.warming),
                    shape: spec.shape,
                    max_idle_s: spec.max_idle.as_secs(),
                    claims: stats.claims,
                    misses: stats.empty,
                    hit_rate,
                    claim_p50: percentile(&stats.durations, 50),
                    claim_p99: percentile(&stats.durations, 99),
                }
            })
            .collect();
        Ok(views)
    }
}

/// The `p`th percentile (nearest rank) of `durations`.
fn percentile(durations: &VecDeque<Duration>, p: usize) -> Option<Duration> {
    if durations.is_empty() {
        return None;
    }
    let mut sorted: Vec<Duration> = durations.iter().copied().collect();
    sorted.sort_unstable();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let durations: VecDeque<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&durations, 50), Some(ms(50)));
        assert_eq!(percentile(&durations, 99), Some(ms(99)));
        assert_eq!(percentile(&VecDeque::from([ms(7)]), 99), Some(ms(7)));
        assert_eq!(percentile(&VecDeque::new(), 50), None);
    }
}
