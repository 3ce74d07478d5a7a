//! The sandbox service: every action on a sandbox, as a command the API (and in-process
//! callers) run with `sandboxes.run(&actor, command)`.
//!
//! - [`create`]: `CreateSandbox`, the whole create: policy under the caller's ceiling, secret
//!   environment, quota, image admission, the reserved row, provisioning (`provision`), the
//!   self-test at create, and the create's audit row.
//! - [`lifecycle`]: `GetSandbox`, `ListSandboxes`, `StopSandbox`, `DeleteSandbox`,
//!   `WaitSandbox`; `ending` records how a sandbox ended, `teardown` removes a deleted one.
//! - [`exec`]: `Exec` and the interactive exec; [`logs`]: `StreamLogs` over the log rings.
//! - [`selftest`]: `RunSelftest`, `GetSelftest`.
//! - [`policy`]: `UpdatePolicy`; [`ledger`]: `ListEgress`, `SummariseEgress`.
//!
//! Invariants:
//! - A request is validated (and the image found on the node, never pulled) before anything
//!   is written or created.
//! - A create that fails at any step rolls back what it made: the container, the network and
//!   the subnet, and the sandbox ends `failed` with reason `error`. Nothing is left in Docker.
//! - Every state change goes through the store's generation-fenced
//!   [`Store::record_transition`]. When two paths race to record the end (a `stop` and a
//!   `wait`), the loser reads the winner's result instead of failing.
//! - Deletes are idempotent: a missing sandbox, container or network is success.
//! - Every command that changes a sandbox files its audit row, naming the sandbox.

pub mod activity;
pub mod create;
mod credentials;
mod disk;
mod ending;
pub mod exec;
pub mod launch;
pub mod ledger;
pub mod lifecycle;
pub mod logs;
mod mounts;
pub mod policy;
pub mod pool;
pub mod presets;
mod provision;
mod secret_env;
pub mod selftest;
mod teardown;

use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;

pub use activity::Activity;
pub use create::{CreateSandbox, Creation};
pub use exec::{AttachExec, Exec, ExecExitCode, ExecRequest, OpenExec, ResizeExec};
pub use ledger::{ListEgress, SummariseEgress};
pub use lifecycle::{DeleteSandbox, GetSandbox, ListSandboxes, StopSandbox, WaitSandbox};
pub use logs::StreamLogs;
pub use policy::UpdatePolicy;
pub use pool::{ListPools, MissReason, PoolView, Pools};
pub use presets::{ListPresets, PresetView};
pub use selftest::{GetSelftest, RunSelftest, SelftestSettings};

use crate::accounts::quota::{Quota, QuotaExceeded};
use crate::audit::{Actor, AuditLog, Command};
use crate::config::RunConfig;
use crate::docker::{DockerClient, DockerError};
use crate::egress::{EgressError, EgressPlane, PolicyAuthority, PolicyError};
use crate::images::{ImageError, Images};
use crate::metrics::Metrics;
use crate::sandbox::user::UserRefusal;
use crate::sandbox::{FieldError, Maximums, SandboxId};
use crate::secrets::{SecretError, Secrets};
use crate::store::{Store, StoreError};
use crate::volumes::Volumes;
use logs::LogHub;

/// What the sandbox service needs from the configuration.
#[derive(Clone, Debug)]
pub struct SandboxSettings {
    /// IPv4 pools for sandbox /29s.
    pub pools: Vec<Ipv4Net>,
    /// Operator maximums and the default timeout.
    pub maximums: Maximums,
    /// Most /29s one user's sandboxes may hold at once.
    pub subnets_per_user: u64,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// This node's name.
    pub node: String,
    /// Size of each sandbox's log ring, in bytes.
    pub log_buffer_bytes: usize,
    /// The isolation self-test's settings.
    pub selftest: SelftestSettings,
    /// Per-user quota defaults.
    pub quota: Quota,
    /// How sandboxes run: home size, allowed uids, root images.
    pub run: RunConfig,
    /// The node's warm pools as `AIRLOCK_POOLS` has them (imported into the store at start
    /// when changed; the stored document is what applies).
    pub env_pools: Option<crate::pool::doc::CheckedDoc>,
    /// What a pool document is checked against.
    pub pool_bounds: crate::pool::PoolBounds,
}

/// The domain services a sandbox command calls besides the store and Docker.
#[derive(Clone, Debug)]
pub struct Peers {
    /// Resolves a create's volume mounts and samples them at the end.
    pub volumes: Volumes,
    /// Resolves a create's host folder mounts.
    pub folders: crate::folders::Folders,
    /// Opens the secrets a create names.
    pub secrets: Secrets,
    /// Admits a create's image.
    pub images: Images,
    /// Resolves a policy under the caller's ceiling.
    pub policy: PolicyAuthority,
    /// Files the audit rows.
    pub audit: AuditLog,
    /// The process's counters.
    pub metrics: Metrics,
}

/// The sandbox service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sandboxes {
    store: Store,
    docker: DockerClient,
    settings: Arc<SandboxSettings>,
    peers: Peers,
    logs: LogHub,
    activity: Activity,
    /// The network plane; `None` with `AIRLOCK_EGRESS=false` (sandboxes then have no egress).
    egress: Option<EgressPlane>,
    /// The node's runtime volume (`airlock-init`), filled at start or on first use.
    runtime: Arc<launch::Runtime>,
    /// The node's warm pools.
    pools: Pools,
}

/// Why a sandbox command failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request has invalid fields.
    #[error("invalid request ({} field error(s))", .0.len())]
    Invalid(Vec<FieldError>),
    /// The image may not be used, or is not there.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The image's user may not run (root).
    #[error(transparent)]
    ImageUser(#[from] UserRefusal),
    /// The image declares `VOLUME` paths, which Docker would back with anonymous, unbounded,
    /// writable volumes.
    #[error(
        "image {image} declares VOLUME {}: anonymous volumes are unbounded, so such images \
         are refused; rebuild it without VOLUME (mount a named volume with `mounts` instead)",
        paths.join(", ")
    )]
    ImageDeclaresVolume {
        /// The image.
        image: String,
        /// Its `VOLUME` paths.
        paths: Vec<String>,
    },
    /// `limits.disk_mb` was asked for, and the node's storage driver cannot enforce it.
    #[error(
        "this node cannot enforce a disk limit ({reason}); leave limits.disk_mb out and keep \
         read_only_rootfs true"
    )]
    DiskLimitUnsupported {
        /// What the daemon said.
        reason: String,
    },
    /// No such sandbox, or the caller may not see it.
    #[error("no such sandbox")]
    NotFound,
    /// Sandboxes belong to an account, and the actor has none.
    #[error("sandboxes belong to an account")]
    NoAccount,
    /// The idempotency key was used before for a different request.
    #[error("idempotency key already used for sandbox {existing}")]
    IdempotencyMismatch {
        /// The sandbox the key belongs to.
        existing: SandboxId,
    },
    /// The request conflicts with the sandbox's current state or generation, or with a
    /// unique constraint.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The sandbox has no container (and so no log) yet.
    #[error("the sandbox has no container yet")]
    NotStarted,
    /// Every sandbox subnet is allocated.
    #[error("no free sandbox subnet")]
    SubnetsExhausted,
    /// The owner's sandboxes already hold as many /29s as one user may.
    #[error(
        "your sandboxes already hold {cap} networks, the most one user may \
         (AIRLOCK_MAX_SUBNETS_PER_USER): delete ended sandboxes first"
    )]
    SubnetCapReached {
        /// The cap.
        cap: u64,
    },
    /// The create would pass the owner's quota.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// A secret could not be opened (or secrets are off).
    #[error(transparent)]
    Secrets(#[from] SecretError),
    /// The policy is refused under the caller's ceiling.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The egress plane failed (the proxy is down or refused the entry).
    #[error("egress: {0}")]
    Egress(#[from] EgressError),
    /// A policy was given but the egress plane is off.
    #[error("the egress plane is off (AIRLOCK_EGRESS=false); sandboxes get no egress")]
    EgressOff,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The owner has no volume of that name (another user's is missing the same way).
    #[error("no volume called `{0}`")]
    VolumeNotFound(String),
    /// Another live sandbox holds the volume read-write.
    #[error("volume {volume} is mounted read-write by sandbox {holder}")]
    VolumeHeld {
        /// The volume.
        volume: crate::volume::VolumeId,
        /// The holder.
        holder: SandboxId,
    },
    /// A files write into the volume is in progress: no read-write mount until it ends.
    #[error("a files write into volume {0} is in progress; retry when it ends")]
    VolumeWriting(crate::volume::VolumeId),
    /// The volume was sampled over its size: no new read-write mounts (soft quota).
    #[error("volume {0} is over its size; mount it read-only, or free space first")]
    VolumeOverQuota(crate::volume::VolumeId),
    /// A host folder mount was refused.
    #[error(transparent)]
    Folder(#[from] crate::folders::FolderError),
    /// The command is for admins only.
    #[error("only an admin may do this")]
    AdminOnly,
    /// The `airlock-init` binary cannot be read (`AIRLOCK_INIT_BINARY`).
    #[error(transparent)]
    InitBinary(#[from] launch::InitBinaryError),
    /// The controller broke one of its own invariants (a value it built does not encode): a
    /// bug, never the caller's doing (500 `internal`).
    #[error("internal: {0}")]
    Internal(&'static str),
}

// === impl Sandboxes ===

impl Sandboxes {
    /// The service over `store` and `docker`, calling `peers`.
    pub fn new(
        store: Store,
        docker: DockerClient,
        settings: SandboxSettings,
        peers: Peers,
    ) -> Self {
        let runtime = Arc::new(launch::Runtime::new(settings.run.init_binary.clone()));
        Self {
            pools: Pools::default(),
            store,
            docker,
            logs: LogHub::new(settings.log_buffer_bytes),
            settings: Arc::new(settings),
            peers,
            activity: Activity::default(),
            egress: None,
            runtime,
        }
    }

    /// Puts every sandbox this service creates behind `plane`'s egress proxy.
    pub fn with_egress(mut self, plane: EgressPlane) -> Self {
        self.egress = Some(plane);
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

    /// The process's counters, for `/metrics` (shared with the reconciler).
    pub fn metrics(&self) -> &Metrics {
        &self.peers.metrics
    }

    /// The last exec activity per sandbox, for the idle timeout (shared with the reconciler).
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The sandboxes' log rings.
    pub fn logs(&self) -> &LogHub {
        &self.logs
    }

    /// The service's settings.
    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }
}

// === impl SandboxError ===

impl From<StoreError> for SandboxError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::IdempotencyMismatch { existing } => Self::IdempotencyMismatch { existing },
            StoreError::SubnetsExhausted => Self::SubnetsExhausted,
            StoreError::SubnetCapReached { cap } => Self::SubnetCapReached { cap },
            StoreError::QuotaExceeded(exceeded) => Self::QuotaExceeded(exceeded),
            StoreError::VolumeHeld { volume, holder } => Self::VolumeHeld { volume, holder },
            StoreError::VolumeOverQuota { volume } => Self::VolumeOverQuota(volume),
            StoreError::VolumeWriting { volume } => Self::VolumeWriting(volume),
            error @ (StoreError::Conflict { .. }
            | StoreError::StaleGeneration { .. }
            | StoreError::Transition(_)) => Self::Conflict(error.to_string()),
            other => Self::Store(other),
        }
    }
}
