//! The sandbox service: the lifecycle operations the API calls, over the store and the Docker
//! client.
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
//!
//! The network plane ([`crate::egress`]): each sandbox gets a fresh random proxy credential in
//! its environment (as `docker::spec` expects), pointing at the proxy's address on its
//! network. With the plane on, the proxy joins the sandbox network and accepts the sandbox's
//! entry before the container starts; a failure at any step rolls all of it back. With the
//! plane off (`AIRLOCK_EGRESS=false`) nothing listens there and the sandbox has no egress at
//! all, which is the fail-closed default.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::time::Instant;
use tracing::{instrument, warn};
use uuid::Uuid;

use crate::accounts::quota::{Quota, QuotaExceeded};
use crate::accounts::user::{Role, UserId};
use crate::config::{Config, DEFAULT_NODE};
use crate::docker::spec::{self, Placement, LABEL_SANDBOX_ID};
use crate::docker::{ContainerStatus, DockerClient, DockerError, Removal};
use crate::egress::ceilings::{AppliedCeiling, CeilingsError, PolicyRefusal};
use crate::egress::infrastructure::{self, InfraSources};
use crate::egress::{EgressError, EgressPlane, EgressPolicy, TenantPolicy};
use crate::images::allow::ImageRefusal;
use crate::images::catalog::ImageCatalog;
use crate::metrics::{Gauges, Metrics, PING_TIMEOUT};
use crate::sandbox::names;
use crate::sandbox::spec::{RESERVED_ENV, RESERVED_ENV_PREFIX};
use crate::sandbox::timeouts::Activity;
use crate::sandbox::{
    DesiredState, EndReason, FieldError, Maximums, Problem, SandboxEvent, SandboxId,
    SandboxRequest, SandboxState,
};
use crate::sandboxes::logs::LogHub;
use crate::sandboxes::selftest::SelftestSettings;
use crate::secrets::vault::{Vault, VaultError};
use crate::store::{Created, ListQuery, NewSandbox, Page, Sandbox, Scope, Store, StoreError};

pub mod egress;
pub mod exec;
mod images;
pub mod logs;
pub mod selftest;
// The egress policy authority: effective policies, ceilings.
mod policy;
pub use policy::{import_policy_file, CeilingsView, PolicyActor};

/// How often `wait` re-reads a sandbox that has no container yet.
const CREATING_POLL: Duration = Duration::from_millis(100);
/// Longest single Docker wait request; `wait` loops over these until its own deadline.
const WAIT_CHUNK: Duration = Duration::from_secs(60);
/// How long each readiness check may take.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit codes above this mean the process was ended by a signal (128 + the signal number).
const SIGNAL_EXIT: i64 = 128;
/// The end message of a sandbox whose create failed (the detail goes to the log).
const CREATE_FAILED: &str = "the sandbox could not be created; see the controller log";

/// The settings the service needs from [`Config`].
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// IPv4 pools for sandbox /29s.
    pub pools: Vec<Ipv4Net>,
    /// Operator maximums and the default timeout.
    pub maximums: Maximums,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// This node's name.
    pub node: String,
    /// Size of each sandbox's log ring, in bytes.
    pub log_buffer_bytes: usize,
    /// The isolation self-test's settings.
    pub selftest: SelftestSettings,
    /// Per-user quota defaults (issue 5).
    pub quota: Quota,
    /// The allowed images and their pre-pull status (issue 7).
    pub images: ImageCatalog,
    /// The ceilings file and the built-in default policy.
    pub policy: crate::config::PolicyConfig,
    /// The configured part of the deployment's own address space.
    pub infrastructure: InfraSources,
}

/// What a create asks for beyond the [`SandboxRequest`].
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// `ENV_NAME` → the name of one of the owner's secrets.
    pub secret_env: BTreeMap<String, String>,
    /// The egress policy as the caller wrote it; `None`: the default policy. Absent fields
    /// come from the applicable ceiling's default policy.
    pub policy: Option<TenantPolicy>,
    /// The role the caller acts with, which picks the ceiling; `None`: member.
    pub role: Option<Role>,
}

/// Creates, watches, stops and deletes sandboxes.
#[derive(Clone, Debug)]
pub struct SandboxService {
    store: Store,
    docker: DockerClient,
    settings: ServiceSettings,
    logs: LogHub,
    activity: Activity,
    metrics: Metrics,
    /// Seals and opens secrets; `None` until [`SandboxService::with_vault`].
    vault: Option<Vault>,
    egress: Option<EgressPlane>,
}

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request has invalid fields.
    #[error("invalid request ({} field error(s))", .0.len())]
    Invalid(Vec<FieldError>),
    /// The image is not on the node (images are never pulled on the hot path).
    #[error("image `{0}` is not on the node")]
    ImageNotFound(String),
    /// The operator's image list refuses the image.
    #[error(transparent)]
    ImageRefused(#[from] ImageRefusal),
    /// The image is allowed but still loading after the wait.
    #[error("image `{image}` is still loading after {waited:?}")]
    ImageLoading {
        /// The image as requested.
        image: String,
        /// How long the create waited.
        waited: Duration,
    },
    /// No such sandbox, or the caller may not see it.
    #[error("no such sandbox")]
    NotFound,
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
    /// A dependency did not answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(&'static str, Duration),
    /// Every sandbox subnet is allocated.
    #[error("no free sandbox subnet")]
    SubnetsExhausted,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The create would pass the owner's quota.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// Secrets were asked for but no key is configured.
    #[error("secrets are not enabled on this controller")]
    SecretsUnavailable,
    /// A stored secret did not open.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// The egress plane failed (the proxy is down or refused the entry).
    #[error("egress: {0}")]
    Egress(#[from] EgressError),
    /// A policy was given but the egress plane is off.
    #[error("the egress plane is off (AIRLOCK_EGRESS=false); sandboxes get no egress")]
    EgressOff,
    /// The policy is beyond the applicable ceiling, or names what can never take effect.
    #[error("{}", .0.describe())]
    PolicyRefused(PolicyRefusal),
    /// A ceilings document that cannot be accepted.
    #[error(transparent)]
    Ceilings(CeilingsError),
}

// === impl ServiceSettings ===

impl ServiceSettings {
    /// The service's part of the configuration, on node [`DEFAULT_NODE`].
    pub fn from_config(config: &Config) -> Self {
        Self {
            pools: config.sandbox_subnets.clone(),
            maximums: config.maximums,
            stop_grace: config.stop_grace,
            node: DEFAULT_NODE.to_owned(),
            log_buffer_bytes: config.log_buffer_bytes,
            selftest: SelftestSettings::from_config(config),
            quota: config.quota,
            images: ImageCatalog::new(config.images.clone()),
            policy: config.policy.clone(),
            infrastructure: infrastructure::configured(config),
        }
    }
}

// === impl SandboxService ===

impl SandboxService {
    /// A service over `store` and `docker`.
    pub fn new(store: Store, docker: DockerClient, settings: ServiceSettings) -> Self {
        Self {
            store,
            docker,
            logs: LogHub::new(settings.log_buffer_bytes),
            settings,
            activity: Activity::default(),
            metrics: Metrics::default(),
            vault: None,
            egress: None,
        }
    }

    /// The service with secrets enabled: `vault` must have been checked against the store
    /// ([`Vault::open`]).
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The vault, when secrets are enabled.
    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    /// Puts every sandbox this service creates behind `plane`'s egress proxy.
    pub fn with_egress(mut self, plane: EgressPlane) -> Self {
        self.egress = Some(plane);
        self
    }

    /// The egress plane, when it is on.
    pub fn egress(&self) -> Option<&EgressPlane> {
        self.egress.as_ref()
    }

    /// The process's counters, for `/metrics` (share them with the reconciler).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The last exec activity per sandbox, for the idle timeout ([`crate::sandbox::timeouts`]).
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The sandboxes' log rings.
    pub fn logs(&self) -> &LogHub {
        &self.logs
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The Docker client.
    pub fn docker(&self) -> &DockerClient {
        &self.docker
    }

    /// Validates `request`, then creates and starts the sandbox for `owner`. A repeat with the
    /// same idempotency key returns the first sandbox as [`Created::Existing`].
    pub async fn create(
        &self,
        owner: UserId,
        request: SandboxRequest,
        idempotency_key: Option<String>,
    ) -> Result<Created, ServiceError> {
        self.create_with(owner, request, idempotency_key, CreateOptions::default())
            .await
    }

    /// [`SandboxService::create`] with [`CreateOptions`]: `secret_env` (`ENV_NAME` → the name
    /// of one of the owner's secrets) resolved into the container's environment (the values go
    /// only into the container create: they are not stored with the sandbox, logged or
    /// returned), and an egress policy (`None`: the default policy; a repeat with the same
    /// idempotency key returns the first sandbox, whatever policy it asks for).
    ///
    /// The owner's quota is checked before Docker is asked (a cheap early refusal), and again
    /// in the transaction that reserves the sandbox, which is the check that counts. A request
    /// without a timeout gets the default capped at the owner's lifetime quota.
    #[instrument(skip_all, fields(user.id = %owner))]
    pub async fn create_with(
        &self,
        owner: UserId,
        mut request: SandboxRequest,
        idempotency_key: Option<String>,
        options: CreateOptions,
    ) -> Result<Created, ServiceError> {
        let CreateOptions {
            secret_env,
            policy: requested,
            role,
        } = options;
        let actor = PolicyActor {
            user: owner,
            role: role.unwrap_or(Role::Member),
        };
        let policy = self.effective_policy(actor, requested.as_ref()).await?;
        if requested.is_some() && self.egress.is_none() {
            return Err(ServiceError::EgressOff);
        }
        let quota = self
            .settings
            .quota
            .with(&self.store.quota_override(owner).await?);
        if request.timeout.is_none() {
            let default = self.settings.maximums.default_timeout;
            request.timeout = Some(default.min(quota.max_lifetime));
        }
        let env_names: Vec<String> = request.env.iter().map(|(name, _)| name.clone()).collect();
        let spec = request
            .validate(&self.settings.maximums)
            .map_err(ServiceError::Invalid)?;
        let secret_vars = self.resolve_secrets(owner, &env_names, &secret_env).await?;
        let usage = self.store.quota_usage(owner).await?;
        crate::accounts::quota::check(&quota, &usage, &spec)
            .map_err(ServiceError::QuotaExceeded)?;
        self.check_image(spec.image().as_str()).await?;
        let new = NewSandbox {
            owner,
            spec,
            idempotency_key,
            node: Some(self.settings.node.clone()),
        };
        let created = self
            .store
            .create_sandbox_within_quota(new, self.settings.quota)
            .await?;
        match created {
            Created::Existing(sandbox) => Ok(Created::Existing(sandbox)),
            Created::New(sandbox) => {
                self.metrics.sandbox_created();
                self.provision(sandbox, secret_vars, &policy)
                    .await
                    .map(Created::New)
            }
        }
    }

    /// Checks `secret_env`'s names and opens each named secret of `owner`, as
    /// `NAME=value` container env entries.
    async fn resolve_secrets(
        &self,
        owner: UserId,
        env_names: &[String],
        secret_env: &BTreeMap<String, String>,
    ) -> Result<SecretEnv, ServiceError> {
        if secret_env.is_empty() {
            return Ok(SecretEnv::default());
        }
        let vault = self
            .vault
            .as_ref()
            .ok_or(ServiceError::SecretsUnavailable)?;
        let mut errors = Vec::new();
        let mut vars = Vec::with_capacity(secret_env.len());
        for (env, secret) in secret_env {
            let field = format!("secret_env.{env}");
            let problem = if !crate::sandbox::spec::is_env_name(env) {
                Some(Problem::Malformed {
                    expected: "a name of letters, digits and `_`, not starting with a digit",
                })
            } else if RESERVED_ENV.contains(&env.as_str()) || env.starts_with(RESERVED_ENV_PREFIX) {
                Some(Problem::Reserved)
            } else if env_names.contains(env) {
                Some(Problem::Duplicate)
            } else {
                None
            };
            if let Some(problem) = problem {
                errors.push(FieldError { field, problem });
                continue;
            }
            match self.store.sealed_secret(owner, secret).await? {
                Some(sealed) => {
                    let value = vault.open_secret(owner, secret, &sealed)?;
                    let value = String::from_utf8_lossy(&value);
                    vars.push(format!("{env}={value}"));
                }
                None => errors.push(FieldError {
                    field,
                    problem: Problem::Malformed {
                        expected: "the name of one of your secrets",
                    },
                }),
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::Invalid(errors));
        }
        Ok(SecretEnv(vars))
    }

    /// The sandbox, if `scope` may see it.
    pub async fn get(&self, scope: Scope, id: SandboxId) -> Result<Sandbox, ServiceError> {
        self.store
            .get_sandbox(scope, id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// One page of the sandboxes `scope` may see.
    pub async fn list(&self, scope: Scope, query: ListQuery) -> Result<Page, ServiceError> {
        Ok(self.store.list_sandboxes(scope, query).await?)
    }

    /// Stops the sandbox: SIGTERM, the grace period, then SIGKILL. Ends it with reason
    /// `stopped` (or how it really ended, when it had already ended by itself). Stopping an
    /// ended sandbox changes nothing.
    #[instrument(skip_all, fields(sandbox.id = %id))]
    pub async fn stop(&self, scope: Scope, id: SandboxId) -> Result<Sandbox, ServiceError> {
        let sandbox = self.get(scope, id).await?;
        if sandbox.state.is_terminal() {
            return Ok(sandbox);
        }
        self.store
            .set_desired_state(scope, id, DesiredState::Stopped)
            .await?;
        let event = SandboxEvent::StopRequested;
        let stopping = match self.transition(&sandbox, &event).await? {
            Some(stopping) => stopping,
            None => return self.get(scope, id).await,
        };
        let Some(container) = stopping.container_id.clone() else {
            return self.finish(&stopping, EndReason::Stopped).await;
        };
        let before = self.docker.inspect(&container).await?;
        if before.as_ref().is_some_and(|s| s.running) {
            self.docker
                .stop(&container, self.settings.stop_grace)
                .await?;
        }
        let after = self.docker.inspect(&container).await?;
        let was_started = sandbox.state != SandboxState::Creating;
        let reason = match (&before, after) {
            // It had ended by itself before the stop request: record how.
            (Some(before), Some(after)) if was_started && !before.running => end_reason(&after),
            (_, Some(after)) if after.oom_killed => EndReason::Oom,
            (_, Some(_)) => EndReason::Stopped,
            (_, None) => EndReason::Lost,
        };
        self.finish(&stopping, reason).await
    }

    /// Blocks until the sandbox ends or `limit` passes, and returns it as it then is (ended,
    /// or not yet when the limit passed).
    #[instrument(skip_all, fields(sandbox.id = %id))]
    pub async fn wait(
        &self,
        scope: Scope,
        id: SandboxId,
        limit: Duration,
    ) -> Result<Sandbox, ServiceError> {
        let deadline = Instant::now() + limit;
        loop {
            let sandbox = self.get(scope, id).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if sandbox.state.is_terminal() || remaining.is_zero() {
                return Ok(sandbox);
            }
            // While creating, a container that exists may not have started yet, and Docker's
            // wait would return at once for it: poll the store until the create settles.
            let container = match sandbox.container_id.as_deref() {
                Some(container) if sandbox.state != SandboxState::Creating => container,
                _ => {
                    tokio::time::sleep(remaining.min(CREATING_POLL)).await;
                    continue;
                }
            };
            let chunk = remaining.min(WAIT_CHUNK);
            match self.docker.wait(container, chunk).await {
                Ok(None) => {}
                Ok(Some(_code)) => self.observe_end(id, container).await?,
                // Removed meanwhile (a delete, or lost): the next read tells which.
                Err(error) if error.is_not_found() => self.observe_end(id, container).await?,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Removes the sandbox: its container, its network, anything else labelled for it, its
    /// subnet and its row. A sandbox that does not exist counts as deleted.
    #[instrument(skip_all, fields(sandbox.id = %id))]
    pub async fn delete(&self, scope: Scope, id: SandboxId) -> Result<(), ServiceError> {
        let Some(sandbox) = self.store.get_sandbox(scope, id).await? else {
            return Ok(());
        };
        self.store
            .set_desired_state(scope, id, DesiredState::Deleted)
            .await?;
        self.detach_egress(id).await;
        self.remove_objects(id).await?;
        self.store.release_subnet(id).await?;
        self.store.delete_sandbox(id, sandbox.generation).await?;
        self.metrics.sandbox_deleted();
        Ok(())
    }

    /// The scrape-time gauges: sandboxes by state and each dependency's ping latency. The
    /// state counts page through the store (at most [`ListQuery::MAX_LIMIT`] rows a query).
    pub async fn gauges(&self) -> Gauges {
        let store_ping = timed(self.store.ping()).await;
        let docker_ping = timed(self.docker.ping()).await;
        let states = match store_ping {
            Some(_) => self.state_counts().await.ok(),
            None => None,
        };
        Gauges {
            states,
            store_ping,
            docker_ping,
        }
    }

    async fn state_counts(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut counts: Vec<(SandboxState, u64)> =
            SandboxState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut after = None;
        loop {
            let query = ListQuery {
                state: None,
                after,
                limit: ListQuery::MAX_LIMIT,
            };
            let page = self.store.list_sandboxes(Scope::All, query).await?;
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

    /// Whether the store, the Docker daemon and (when the plane is on) the egress proxy
    /// answer, each within [`READY_TIMEOUT`].
    pub async fn ready(&self) -> Result<(), ServiceError> {
        let timeout = |what| ServiceError::Timeout(what, READY_TIMEOUT);
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

    /// Makes the network and the container and starts it; on failure, rolls back.
    async fn provision(
        &self,
        sandbox: Sandbox,
        secret_env: SecretEnv,
        policy: &(EgressPolicy, AppliedCeiling),
    ) -> Result<Sandbox, ServiceError> {
        match self.try_provision(&sandbox, secret_env, policy).await {
            Ok(running) => Ok(running),
            Err(error) => {
                self.roll_back(&sandbox).await;
                Err(error)
            }
        }
    }

    #[instrument(skip_all, fields(sandbox.id = %sandbox.id))]
    async fn try_provision(
        &self,
        sandbox: &Sandbox,
        secret_env: SecretEnv,
        (policy, ceiling): &(EgressPolicy, AppliedCeiling),
    ) -> Result<Sandbox, ServiceError> {
        let id = sandbox.id;
        let subnet = self.store.allocate_subnet(id, &self.settings.pools).await?;
        // 128 random bits, hex: URL-safe, as the proxy URL's userinfo needs.
        let token = Uuid::new_v4().simple().to_string();
        let placement = Placement {
            id,
            generation: sandbox.generation,
            node: &self.settings.node,
            subnet,
            proxy_token: &token,
        };
        self.docker
            .create_network(spec::network_body(&placement))
            .await?;
        if let Some(plane) = &self.egress {
            plane
                .attach(id, subnet, &token, policy, &ceiling.label)
                .await?;
        }
        let mut body = spec::container_body(&sandbox.spec, &placement);
        spec::add_secret_env(&mut body, secret_env.0);
        let container = self
            .docker
            .create_container(&names::container_name(id), body)
            .await?;
        self.store
            .set_container(id, sandbox.generation, &container)
            .await?;
        self.docker.start(&container).await?;
        let running = self
            .store
            .record_transition(id, sandbox.generation, &SandboxEvent::Started)
            .await?;
        Ok(running)
    }

    /// Undoes a failed create step by step; each failure is logged and the rest still runs.
    /// The cause itself is returned to the caller, which reports it.
    async fn roll_back(&self, sandbox: &Sandbox) {
        let id = sandbox.id;
        warn!(sandbox.id = %id, "Sandbox create failed; rolling back");
        self.detach_egress(id).await;
        if let Err(error) = self.remove_objects(id).await {
            warn!(%error, sandbox.id = %id, "Rollback could not remove Docker objects");
        }
        if let Err(error) = self.store.release_subnet(id).await {
            warn!(%error, sandbox.id = %id, "Rollback could not release the subnet");
        }
        let reason = EndReason::Error {
            message: Some(CREATE_FAILED.to_owned()),
        };
        let event = SandboxEvent::Ended(reason);
        if let Err(error) = self.transition(sandbox, &event).await {
            warn!(%error, sandbox.id = %id, "Rollback could not mark the sandbox failed");
        }
    }

    // --- Isolation self-test hooks (issue 6; the logic lives in `crate::sandboxes::selftest`). ---

    /// The service's settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Fails a sandbox right after its create, the way a failed create does: its Docker
    /// objects removed and its subnet released (each failure logged), then it ends `failed`
    /// with reason `error` and `message`.
    pub(crate) async fn fail_created(
        &self,
        sandbox: &Sandbox,
        message: &str,
    ) -> Result<Sandbox, ServiceError> {
        let id = sandbox.id;
        self.detach_egress(id).await;
        if let Err(error) = self.remove_objects(id).await {
            warn!(%error, sandbox.id = %id, "Failing a sandbox could not remove Docker objects");
        }
        if let Err(error) = self.store.release_subnet(id).await {
            warn!(%error, sandbox.id = %id, "Failing a sandbox could not release the subnet");
        }
        let reason = EndReason::Error {
            message: Some(message.to_owned()),
        };
        self.finish(sandbox, reason).await
    }

    /// Removes the sandbox's proxy entry; a failure is logged (the entry dies with the proxy
    /// process at the latest, and is never re-pushed for an ended sandbox).
    async fn detach_egress(&self, id: SandboxId) {
        if let Some(plane) = &self.egress {
            if let Err(error) = plane.detach(id).await {
                warn!(%error, sandbox.id = %id, "Could not remove the sandbox's egress entry");
            }
        }
    }

    /// Removes the container and network by name, then anything else labelled for `id`.
    async fn remove_objects(&self, id: SandboxId) -> Result<(), DockerError> {
        let value = id.to_string();
        let mut containers = self
            .docker
            .containers_labelled(LABEL_SANDBOX_ID, &value)
            .await?;
        containers.push(names::container_name(id));
        for container in &containers {
            self.docker
                .remove_container(container, Removal::Force)
                .await?;
        }
        let mut networks = self
            .docker
            .networks_labelled(LABEL_SANDBOX_ID, &value)
            .await?;
        networks.push(names::network_name(id));
        for network in &networks {
            self.docker.remove_network(network).await?;
        }
        Ok(())
    }

    /// Records how the container ended, after Docker said it is no longer running. Reads the
    /// sandbox afresh, so a stop requested while waiting counts as `stopped`.
    async fn observe_end(&self, id: SandboxId, container: &str) -> Result<(), ServiceError> {
        self.observe_end_signalled(id, container, false).await
    }

    /// [`Self::observe_end`] for the event watcher ([`crate::reconcile::events`]), which also knows
    /// whether Docker delivered a signal to the container that we did not send (`signalled`):
    /// an exit by signal is then `killed`.
    pub(crate) async fn observe_end_signalled(
        &self,
        id: SandboxId,
        container: &str,
        signalled: bool,
    ) -> Result<(), ServiceError> {
        let status = self.docker.inspect(container).await?;
        let Some(sandbox) = self.store.get_sandbox(Scope::All, id).await? else {
            return Ok(());
        };
        if sandbox.state.is_terminal() || sandbox.state == SandboxState::Creating {
            return Ok(());
        }
        let sandbox = &sandbox;
        let reason = match status {
            None => EndReason::Lost,
            Some(status) if status.running => return Ok(()),
            Some(_) if sandbox.desired == DesiredState::Stopped => EndReason::Stopped,
            Some(_) if sandbox.state == SandboxState::Stopping => EndReason::Stopped,
            Some(status) if signalled && status.exit_code.is_some_and(|c| c > SIGNAL_EXIT) => {
                EndReason::Killed
            }
            Some(status) => end_reason(&status),
        };
        self.finish(sandbox, reason).await.map(drop)
    }

    /// Records the end; when another path recorded it first, returns that result.
    async fn finish(&self, sandbox: &Sandbox, reason: EndReason) -> Result<Sandbox, ServiceError> {
        let event = SandboxEvent::Ended(reason);
        match self.transition(sandbox, &event).await? {
            Some(ended) => Ok(ended),
            None => self.get(Scope::All, sandbox.id).await,
        }
    }

    /// Applies `event`; `None` when the state machine refused it because the sandbox moved on
    /// (another path recorded the change first).
    async fn transition(
        &self,
        sandbox: &Sandbox,
        event: &SandboxEvent,
    ) -> Result<Option<Sandbox>, ServiceError> {
        let result = self
            .store
            .record_transition(sandbox.id, sandbox.generation, event)
            .await;
        match result {
            Ok(sandbox) => Ok(Some(sandbox)),
            Err(StoreError::Transition(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// Resolved secret env entries (`NAME=value`); `Debug` never shows the values.
#[derive(Default)]
struct SecretEnv(Vec<String>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretEnv({} entries, values hidden)", self.0.len())
    }
}

/// How a container that is no longer running ended.
fn end_reason(status: &ContainerStatus) -> EndReason {
    crate::sandbox::end::from_exit(status.exit_code, status.oom_killed)
}

// === impl ServiceError ===

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::IdempotencyMismatch { existing } => Self::IdempotencyMismatch { existing },
            StoreError::SubnetsExhausted => Self::SubnetsExhausted,
            StoreError::QuotaExceeded(exceeded) => Self::QuotaExceeded(exceeded),
            error @ (StoreError::Conflict { .. }
            | StoreError::StaleGeneration { .. }
            | StoreError::Transition(_)) => Self::Conflict(error.to_string()),
            other => Self::Store(other),
        }
    }
}

/// How long `ping` took, or `None` when it failed or passed [`PING_TIMEOUT`].
async fn timed<E>(ping: impl std::future::Future<Output = Result<(), E>>) -> Option<Duration> {
    let started = Instant::now();
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(())) => Some(started.elapsed()),
        Ok(Err(_)) | Err(_) => None,
    }
}
