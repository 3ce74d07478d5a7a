//! The domain services of one controller process, wired together: what `airlock serve`
//! builds once and the API (and in-process tests) hold. Also the process-wide readiness check
//! and the scrape-time gauges, which look at the store, the Docker node and the proxy at
//! once.

pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::time::Instant;

use crate::accounts::quota::{Quota, Resources};
use crate::accounts::{Accounts, Clock};
use crate::audit::AuditLog;
use crate::config::{Config, PolicyConfig, RunConfig, VolumesConfig, DEFAULT_NODE};
use crate::docker::{DockerClient, DockerError};
use crate::egress::infrastructure::{self, InfraSources};
use crate::egress::{EgressError, EgressPlane, PolicyAuthority};
use crate::files::{Files, FilesSettings};
use crate::folders::Folders;
use crate::images::catalog::ImageCatalog;
use crate::images::Images;
use crate::metrics::{Gauges, Metrics, PING_TIMEOUT};
use crate::pool_config::PoolConfig;
use crate::sandbox::RunAs;
use crate::sandbox::{Maximums, SandboxState};
use crate::sandboxes::{Peers, SandboxSettings, Sandboxes, SelftestSettings};
use crate::secrets::vault::Vault;
use crate::secrets::Secrets;
use crate::store::{ListQuery, Scope, Store, StoreError};
use crate::volume::QuotaMode;
use crate::volumes::{VolumeSettings, Volumes};
use snapshot::Snapshot;

/// Who owns what the files API writes into a volume (the agent image's `agent` user; a
/// sandbox writes its own files as its own user).
pub const VOLUME_FILES_OWNER: u32 = 1000;

/// How long each readiness check may take.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the services need from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
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
    /// The allowed images and their pre-pull status.
    pub images: ImageCatalog,
    /// The ceilings file and the built-in default policy.
    pub policy: PolicyConfig,
    /// The configured part of the deployment's own address space.
    pub infrastructure: InfraSources,
    /// Table bounds (secrets per user).
    pub tables: crate::config::TablesConfig,
    /// How sandboxes run: home size, allowed uids, root images.
    pub run: RunConfig,
    /// Volumes: sizes, quotas, the usage sampler.
    pub volumes: VolumesConfig,
    /// How volume sizes are enforced on the node.
    pub quota_mode: QuotaMode,
    /// Where uploads are staged before Docker sees them.
    pub staging_dir: std::path::PathBuf,
    /// The node's warm pools as `AIRLOCK_POOLS` has them.
    pub env_pools: Option<crate::pool::doc::CheckedDoc>,
    /// What a pool document is checked against.
    pub pool_bounds: crate::pool::PoolBounds,
}

/// The staging directory of uploads, under `AIRLOCK_DATA_DIR`.
pub const UPLOADS_DIR: &str = "uploads";

/// Every domain service of the process; cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    /// Sandboxes: create, read, stop, delete, exec, logs, self-test, policy, ledger.
    pub sandboxes: Sandboxes,
    /// Users, invites, sessions, tokens, quotas.
    pub accounts: Accounts,
    /// The users' secrets.
    pub secrets: Secrets,
    /// Allowed images and their status.
    pub images: Images,
    /// Ceilings and effective policies.
    pub policy: PolicyAuthority,
    /// Volumes (workspaces).
    pub volumes: Volumes,
    /// Host folders.
    pub folders: Folders,
    /// Files in and out of sandboxes and volumes.
    pub files: Files,
    /// The node's pool document.
    pub pool_config: PoolConfig,
    /// The audit trail.
    pub audit: AuditLog,
    health: Health,
}

/// How [`Services`] are put together: the store, the node, the settings, and the optional
/// parts (a vault for secrets, the egress plane, a clock for account expiries).
#[derive(Debug)]
pub struct Builder {
    store: Store,
    docker: DockerClient,
    settings: Settings,
    vault: Option<Vault>,
    egress: Option<EgressPlane>,
    clock: Clock,
}

/// What readiness and the gauges look at, and their last results (see [`snapshot`]).
#[derive(Clone, Debug)]
struct Health {
    store: Store,
    docker: DockerClient,
    egress: Option<EgressPlane>,
    ready: Snapshot<Result<(), Arc<NotReady>>>,
    gauges: Snapshot<Gauges>,
}

/// Why the process is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// A dependency did not answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(&'static str, Duration),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The egress proxy failed.
    #[error("egress: {0}")]
    Egress(#[from] EgressError),
}

// === impl Settings ===

impl Settings {
    /// The services' part of the configuration, on node [`DEFAULT_NODE`].
    pub fn from_config(config: &Config) -> Self {
        Self {
            pools: config.sandbox_subnets.clone(),
            maximums: config.maximums,
            subnets_per_user: config.subnets_per_user,
            stop_grace: config.stop_grace,
            node: DEFAULT_NODE.to_owned(),
            log_buffer_bytes: config.log_buffer_bytes,
            selftest: SelftestSettings::from_config(config),
            quota: config.quota,
            images: ImageCatalog::new(config.images.clone()),
            policy: config.policy.clone(),
            infrastructure: infrastructure::configured(config),
            tables: config.tables,
            run: config.run.clone(),
            volumes: config.volumes.clone(),
            quota_mode: QuotaMode::Soft,
            staging_dir: config.data_dir.join(UPLOADS_DIR),
            env_pools: config.pools.clone(),
            pool_bounds: config.pool_bounds(),
        }
    }

    fn sandboxes(&self) -> SandboxSettings {
        SandboxSettings {
            pools: self.pools.clone(),
            maximums: self.maximums,
            subnets_per_user: self.subnets_per_user,
            stop_grace: self.stop_grace,
            node: self.node.clone(),
            log_buffer_bytes: self.log_buffer_bytes,
            selftest: self.selftest.clone(),
            quota: self.quota,
            run: self.run.clone(),
            env_pools: self.env_pools.clone(),
            pool_bounds: self.pool_bounds.clone(),
        }
    }
}

// === impl Services ===

impl Services {
    /// The services over `store` and `docker`, without secrets or egress.
    pub fn new(store: Store, docker: DockerClient, settings: Settings) -> Self {
        Self::builder(store, docker, settings).build()
    }

    /// A builder for services with optional parts.
    pub fn builder(store: Store, docker: DockerClient, settings: Settings) -> Builder {
        Builder {
            store,
            docker,
            settings,
            vault: None,
            egress: None,
            clock: Clock::system(),
        }
    }

    /// The process's counters, for `/metrics` (shared with the reconciler).
    pub fn metrics(&self) -> &Metrics {
        self.sandboxes.metrics()
    }

    /// Whether the store, the Docker daemon and (when the plane is on) the egress proxy
    /// answer, each within [`READY_TIMEOUT`]; from a snapshot at most
    /// [`snapshot::SNAPSHOT_MAX_AGE`] old.
    pub async fn ready(&self) -> Result<(), Arc<NotReady>> {
        let health = &self.health;
        health
            .ready
            .get(|| async { health.check_ready().await.map_err(Arc::new) })
            .await
    }

    /// The scrape-time gauges: sandboxes by state and each dependency's ping latency. The
    /// state counts page through the store (at most [`ListQuery::MAX_LIMIT`] rows a query).
    /// From a snapshot at most [`snapshot::SNAPSHOT_MAX_AGE`] old.
    pub async fn gauges(&self) -> Gauges {
        let health = &self.health;
        health.gauges.get(|| health.measure()).await
    }
}

// === impl Health ===

impl Health {
    async fn check_ready(&self) -> Result<(), NotReady> {
        let timeout = |what| NotReady::Timeout(what, READY_TIMEOUT);
        tokio::time::timeout(READY_TIMEOUT, self.store.ping())
            .await
            .map_err(|_elapsed| timeout("the store"))??;
        tokio::time::timeout(READY_TIMEOUT, self.docker.ping())
            .await
            .map_err(|_elapsed| timeout("the Docker node"))??;
        if let Some(plane) = &self.egress {
            tokio::time::timeout(READY_TIMEOUT, plane.admin().health())
                .await
                .map_err(|_elapsed| timeout("the egress proxy"))??;
        }
        Ok(())
    }

    async fn measure(&self) -> Gauges {
        let store_ping = timed(self.store.ping()).await;
        let docker_ping = timed(self.docker.ping()).await;
        let states = match store_ping {
            Some(_) => state_counts(&self.store).await.ok(),
            None => None,
        };
        Gauges {
            states,
            store_ping,
            docker_ping,
        }
    }
}

// === impl Builder ===

impl Builder {
    /// Secrets enabled: `vault` must have been checked against the store ([`Vault::open`]).
    pub fn vault(mut self, vault: Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Every sandbox behind `plane`'s egress proxy.
    pub fn egress(mut self, plane: EgressPlane) -> Self {
        self.egress = Some(plane);
        self
    }

    /// Account expiries read `clock`.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The services.
    pub fn build(self) -> Services {
        let audit = AuditLog::new(self.store.clone());
        let settings = &self.settings;
        let resources = Resources {
            max_secrets: settings.tables.max_secrets,
            max_volumes: settings.volumes.quota.max_volumes,
            max_volume_bytes: settings.volumes.quota.max_volume_bytes,
        };
        let accounts = Accounts::new(self.store.clone(), audit.clone(), settings.quota)
            .with_clock(self.clock.clone())
            .with_resources(resources);
        let mut secrets = Secrets::new(self.store.clone(), audit.clone(), self.vault.clone())
            .with_max_secrets(settings.tables.max_secrets);
        if let Some(plane) = &self.egress {
            secrets = secrets.with_egress(plane);
            plane.open_secrets_with(secrets.clone());
        }
        let images = Images::new(
            self.store.clone(),
            self.docker.clone(),
            settings.images.clone(),
            &settings.node,
        );
        let policy = self.policy(&audit);
        let volumes = Volumes::new(
            self.store.clone(),
            self.docker.clone(),
            audit.clone(),
            VolumeSettings {
                config: settings.volumes.clone(),
                node: settings.node.clone(),
                quota_mode: settings.quota_mode,
            },
        );
        let folders = Folders::new(
            self.store.clone(),
            audit.clone(),
            settings.volumes.folders_root.clone(),
        );
        let files = Files::new(
            self.store.clone(),
            self.docker.clone(),
            audit.clone(),
            FilesSettings {
                helper_image: settings.volumes.helper_image.clone(),
                volume_owner: RunAs {
                    uid: VOLUME_FILES_OWNER,
                    gid: VOLUME_FILES_OWNER,
                },
                node: settings.node.clone(),
                staging_dir: settings.staging_dir.clone(),
                staging_memory_bytes: settings.volumes.upload_memory_bytes,
            },
        );
        let peers = Peers {
            volumes: volumes.clone(),
            folders: folders.clone(),
            secrets: secrets.clone(),
            images: images.clone(),
            policy: policy.clone(),
            audit: audit.clone(),
            metrics: Metrics::default(),
        };
        let sandboxes = self.sandboxes(peers);
        let pool_config = PoolConfig::new(
            self.store.clone(),
            audit.clone(),
            settings.node.clone(),
            settings.pool_bounds.clone(),
        )
        .waking(sandboxes.pools().clone());
        Services {
            sandboxes,
            pool_config,
            accounts,
            secrets,
            images,
            policy,
            volumes,
            folders,
            files,
            audit,
            health: Health {
                store: self.store,
                docker: self.docker,
                egress: self.egress,
                ready: Snapshot::default(),
                gauges: Snapshot::default(),
            },
        }
    }

    fn policy(&self, audit: &AuditLog) -> PolicyAuthority {
        let policy = PolicyAuthority::new(
            self.store.clone(),
            audit.clone(),
            self.settings.policy.clone(),
            self.settings.infrastructure.clone(),
        );
        match &self.egress {
            Some(plane) => policy.with_plane(plane.clone()),
            None => policy,
        }
    }

    fn sandboxes(&self, peers: Peers) -> Sandboxes {
        let settings = self.settings.sandboxes();
        let sandboxes = Sandboxes::new(self.store.clone(), self.docker.clone(), settings, peers);
        match &self.egress {
            Some(plane) => sandboxes.with_egress(plane.clone()),
            None => sandboxes,
        }
    }
}

async fn state_counts(store: &Store) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let mut counts: Vec<(SandboxState, u64)> = SandboxState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut after = None;
    loop {
        let query = ListQuery {
            state: None,
            after,
            limit: ListQuery::MAX_LIMIT,
        };
        let page = store.list_sandboxes(Scope::All, query).await?;
        for sandbox in &page.items {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == sandbox.state) {
                slot.1 += 1;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect())
}

/// How long `ping` took, or `None` when it failed or passed [`PING_TIMEOUT`].
async fn timed<E>(ping: impl std::future::Future<Output = Result<(), E>>) -> Option<Duration> {
    let started = Instant::now();
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(())) => Some(started.elapsed()),
        Ok(Err(_)) | Err(_) => None,
    }
}
