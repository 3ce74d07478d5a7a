//! The network plane: every sandbox behind the node's egress proxy (DESIGN.md topology).
//!
//! - [`node`]: the proxy on the node (image, egress bridge, hardened container with its admin
//!   TLS files, health, and re-pushing every live entry when its boot id changes).
//! - [`admin`]: the mTLS client of the proxy's admin API.
//! - [`ledger`]: the puller that moves the proxy's event spool into the store, then acks.
//! - [`policy`]: the policy a sandbox runs under, validated by the egress crate's own type.
//! - [`ceilings`]: the operator's ceilings, which bound every tenant policy.
//! - [`authority`]: the policy authority service: a request's effective policy under its
//!   ceiling, and the commands that read and replace the ceilings.
//! - [`providers`]: the provider catalogue a create's `credentials` bind ([`credentials`]:
//!   `GET /v1/providers`); `bindings`: the secret half of an inspected sandbox's push and the
//!   re-push when a bound secret changes.
//! - [`infrastructure`]: the deployment's own address space, pushed to the proxy (which
//!   refuses it whatever a policy says) before any entry after a proxy (re)start.
//!
//! The admin TLS material is a CA of its own under `<data dir>/egress-certs` (the
//! `airlock certs init` layout): the proxy gets `server/`, and only the controller holds the
//! `client/` key that the proxy requires.
//!
//! Invariants:
//! - A sandbox starts only after its entry (source address, credential hash, policy,
//!   generation) was accepted by the proxy; until then the proxy denies it (fail closed).
//! - The token itself is never stored: only its SHA-256 (which is all a re-push needs).
//! - Ledger events are acknowledged only after the transaction storing them committed.

pub mod admin;
pub mod authority;
mod bindings;
pub mod ceilings;
pub mod credentials;
pub mod infrastructure;
pub mod ledger;
mod members;
pub mod node;
pub mod policy;
pub mod providers;
// Private stand-in for policy-crate items not merged yet; see its header.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use airlock_certs::{InitOptions, San};
use airlock_egress_policy::PolicySpec;
use airlock_wire::PutSandbox;
use ipnet::IpNet;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Config;
use crate::docker::spec::egress::{ProxyPlacement, EGRESS_CONTAINER};
use crate::docker::{DockerClient, DockerError};
use crate::pool::MemberId;
use crate::sandbox::names::network_name;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::SandboxId;
use crate::secrets::Secrets;
use crate::store::{EgressEntry, Store, StoreError};
use admin::AdminClient;
pub use authority::{
    import_policy_file, CeilingsView, GetCeilings, GetInfrastructure, PolicyAuthority, PolicyError,
    PutCeilings,
};
pub use bindings::WeakEgressPlane;
use infrastructure::InfraSources;
pub use policy::{hex_sha256, EgressPolicy, TenantPolicy};

/// Folder under the data dir holding the admin TLS material.
pub const EGRESS_CERTS_SUBDIR: &str = "egress-certs";
/// How often the infrastructure list is gathered again (interfaces and DinD networks) and
/// pushed when it changed; a proxy restart pushes it at once.
pub const INFRA_REFRESH: Duration = Duration::from_secs(10);

/// The node's egress plane; cheap to clone.
#[derive(Clone, Debug)]
pub struct EgressPlane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    docker: DockerClient,
    store: Store,
    placement: ProxyPlacement,
    bundle: Option<PathBuf>,
    server_certs: PathBuf,
    /// The operator's extra upstream CAs (`AIRLOCK_EGRESS_UPSTREAM_CA`), uploaded with them.
    upstream_ca: Option<PathBuf>,
    admin: AdminClient,
    node: String,
    /// The proxy boot id whose registry holds every live entry; the lock also serialises
    /// node bootstraps.
    synced_boot: Mutex<Option<String>>,
    /// The proxy boot id and spool-overflow count the last pull saw, to report new losses once.
    overflow_seen: std::sync::Mutex<(String, u64)>,
    /// The configured part of the infrastructure list.
    infra_sources: InfraSources,
    /// The infrastructure list as last computed, and where it was pushed.
    infra: std::sync::Mutex<InfraState>,
    /// Most individual ledger rows per sandbox (`AIRLOCK_LEDGER_MAX_ROWS_PER_SANDBOX`).
    ledger_cap: u64,
    /// Opens inspected sandboxes' CA keys and bound secrets for a push; set once when the
    /// services are wired ([`EgressPlane::open_secrets_with`]).
    secrets: OnceLock<Secrets>,
}

/// The infrastructure list as last computed.
#[derive(Debug)]
struct InfraState {
    list: Vec<IpNet>,
    /// The proxy boot id that holds `list`.
    pushed_to: Option<String>,
    gathered: Option<Instant>,
}

/// Why a network-plane step failed.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The plane is configured off or has no admin address.
    #[error("the egress plane is not configured: {0}")]
    NotConfigured(&'static str),
    /// The admin TLS material could not be made or read.
    #[error("egress admin TLS: {0}")]
    Tls(String),
    /// The proxy's admin API did not answer.
    #[error("egress proxy unreachable: {0}")]
    Unreachable(String),
    /// An inspected sandbox's CA or a bound secret could not be opened for its push.
    #[error("inspection material of sandbox {sandbox}: {reason}")]
    Inspection {
        /// The sandbox.
        sandbox: SandboxId,
        /// Why (names only, never a value).
        reason: String,
    },
    /// The proxy's admin API refused a call.
    #[error("egress proxy answered {status}: {message}")]
    Admin {
        /// The HTTP status (0: the request could not be built).
        status: u16,
        /// The answer's body.
        message: String,
    },
    /// The proxy image is not on the node and no bundle is configured.
    #[error("the egress image `{0}` is not on the node (set AIRLOCK_EGRESS_BUNDLE or load it)")]
    ImageMissing(String),
    /// The bundle could not be read.
    #[error("cannot read the egress bundle {path}: {source}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The proxy did not become healthy.
    #[error("the egress proxy did not become healthy: {0}")]
    Unhealthy(String),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

// === impl EgressPlane ===

impl EgressPlane {
    /// The plane for `config`, or `None` when `AIRLOCK_EGRESS=false`. Makes (or keeps) the
    /// admin TLS material under the data dir; no Docker call yet.
    pub fn from_config(
        config: &Config,
        docker: DockerClient,
        store: Store,
        node: &str,
    ) -> Result<Option<Self>, EgressError> {
        let egress = &config.egress;
        if !egress.enabled {
            return Ok(None);
        }
        let admin_ip = egress.admin_ip.ok_or(EgressError::NotConfigured(
            "AIRLOCK_DOCKER_HOST is not an IP address: set AIRLOCK_EGRESS_ADMIN_ADDR",
        ))?;
        let placement = ProxyPlacement {
            image: egress.image.clone(),
            subnet: egress.subnet,
            admin_ip,
            allow_cidrs: egress.allow_cidrs.clone(),
            dns: egress.dns.clone(),
            upstream_ca: egress.upstream_ca.is_some(),
        };
        let dir = config.data_dir.join(EGRESS_CERTS_SUBDIR);
        issue_certs(&dir, admin_ip)?;
        let admin = AdminClient::new(placement.admin_addr(), &dir.join("client"))?;
        let infra_sources = infrastructure::configured(config);
        let infra = InfraState {
            list: infrastructure::compute(&infra_sources),
            pushed_to: None,
            gathered: None,
        };
        Ok(Some(Self {
            inner: Arc::new(Inner {
                docker,
                store,
                placement,
                bundle: egress.bundle.clone(),
                server_certs: dir.join("server"),
                upstream_ca: egress.upstream_ca.clone(),
                admin,
                node: node.to_owned(),
                synced_boot: Mutex::new(None),
                overflow_seen: std::sync::Mutex::default(),
                infra_sources,
                infra: std::sync::Mutex::new(infra),
                ledger_cap: config.tables.ledger_max_rows,
                secrets: OnceLock::new(),
            }),
        }))
    }

    /// The admin client.
    pub fn admin(&self) -> &AdminClient {
        &self.inner.admin
    }

    /// How the proxy runs.
    pub fn placement(&self) -> &ProxyPlacement {
        &self.inner.placement
    }

    /// Attaches a new sandbox: joins the proxy to its network at the `.2` of its /29, stores
    /// and pushes its entry (with the label of the ceiling its policy was checked against).
    /// The caller starts the container only after this returned `Ok`, and on error rolls
    /// back with [`EgressPlane::detach`] and the network removal.
    pub async fn attach(
        &self,
        id: SandboxId,
        subnet: SandboxSubnet,
        token: &str,
        policy: &EgressPolicy,
        ceiling: &str,
    ) -> Result<(), EgressError> {
        self.inner
            .docker
            .connect_network(&network_name(id), EGRESS_CONTAINER, subnet.proxy())
            .await?;
        self.bind(id, None, subnet, token, policy, ceiling).await
    }

    /// Stores and pushes a sandbox's entry on a network the proxy already joined; with
    /// `member`, the push replaces that pool member's unbound registration in one step (a
    /// claim).
    pub async fn bind(
        &self,
        id: SandboxId,
        member: Option<MemberId>,
        subnet: SandboxSubnet,
        token: &str,
        policy: &EgressPolicy,
        ceiling: &str,
    ) -> Result<(), EgressError> {
        let entry = EgressEntry {
            sandbox_id: id,
            policy: Some(policy.json().to_owned()),
            policy_hash: policy.hash().to_owned(),
            generation: 1,
            credential_hash: hex_sha256(token),
            source_addr: IpAddr::V4(subnet.sandbox()),
            ceiling: Some(ceiling.to_owned()),
        };
        self.inner.store.save_egress_entry(&entry).await?;
        self.put(&entry, member).await
    }

    /// Removes the sandbox's proxy entry (idempotent). The proxy leaves the sandbox network
    /// when the network is removed ([`DockerClient::remove_network`]).
    pub async fn detach(&self, id: SandboxId) -> Result<(), EgressError> {
        self.inner.admin.delete_sandbox(&id.to_string()).await
    }

    /// Replaces the sandbox's policy: bumps its generation, pushes it (the proxy closes the
    /// tunnels of the old generation) and returns the new entry; `None` when the sandbox has
    /// no entry (it never ran behind the proxy).
    pub async fn update_policy(
        &self,
        id: SandboxId,
        policy: &EgressPolicy,
        ceiling: &str,
    ) -> Result<Option<EgressEntry>, EgressError> {
        let updated = self
            .inner
            .store
            .update_egress_policy(id, Some(policy.json()), policy.hash(), Some(ceiling))
            .await?;
        if let Some(entry) = &updated {
            self.push(entry).await?;
        }
        Ok(updated)
    }

    /// Pushes one stored entry. A stored policy that no longer reads as a policy object is
    /// refused here rather than pushed as the default policy.
    async fn push(&self, entry: &EgressEntry) -> Result<(), EgressError> {
        self.put(entry, None).await
    }

    /// [`EgressPlane::push`], binding `member` when given.
    async fn put(&self, entry: &EgressEntry, member: Option<MemberId>) -> Result<(), EgressError> {
        let policy = entry
            .policy
            .as_deref()
            .map(serde_json::from_str::<PolicySpec>)
            .transpose()
            .map_err(|e| StoreError::corrupt("sandbox_egress.policy", e))?;
        let inspection = match policy.as_ref().and_then(|p| p.endpoints.as_deref()) {
            Some(endpoints) if !endpoints.is_empty() => {
                Some(self.inspection(entry.sandbox_id, endpoints).await?)
            }
            _ => None,
        };
        let body = PutSandbox {
            sandbox_id: None,
            source_addrs: vec![entry.source_addr],
            credential_hash: entry.credential_hash.clone(),
            policy,
            generation: u64::try_from(entry.generation).unwrap_or(0),
            ceiling: entry.ceiling.clone(),
            inspection,
            member: member.map(|m| m.to_string()),
        };
        self.inner
            .admin
            .put_sandbox(&entry.sandbox_id.to_string(), &body)
            .await
    }

    /// Pushes every live sandbox's entry (after a proxy restart); returns how many.
    async fn push_all(&self) -> Result<usize, EgressError> {
        let entries = self.inner.store.live_egress_entries().await?;
        for entry in &entries {
            match self.push_current(entry).await {
                Ok(()) => {}
                // One sandbox's lost secret or refused entry must not keep every other
                // sandbox from its entry: it stays denied (fail closed) and the rest go on.
                Err(error @ (EgressError::Inspection { .. } | EgressError::Admin { .. })) => {
                    warn!(%error, sandbox.id = %entry.sandbox_id, "An egress entry was not re-pushed; that sandbox stays denied");
                }
                Err(error) => {
                    warn!(%error, sandbox.id = %entry.sandbox_id, "Re-push of an egress entry failed");
                    return Err(error);
                }
            }
        }
        Ok(entries.len())
    }

    /// Makes sure the proxy runs and holds every live entry: bootstraps the node when the
    /// proxy does not answer, and re-pushes everything when its boot id changed. Returns the
    /// boot id.
    pub async fn ensure(&self) -> Result<String, EgressError> {
        let mut synced = self.inner.synced_boot.lock().await;
        let health = match self.inner.admin.health().await {
            Ok(health) => health,
            Err(_first) => self.bootstrap_node().await?,
        };
        // The proxy refuses the deployment's addresses before it holds any entry.
        self.sync_infrastructure(&health.boot_id).await?;
        if synced.as_deref() != Some(health.boot_id.as_str()) {
            let pushed = self.push_all().await?;
            info!(
                egress.boot_id = %health.boot_id,
                egress.entries = pushed,
                "Egress proxy synced"
            );
            *synced = Some(health.boot_id.clone());
        }
        Ok(health.boot_id)
    }

    /// Removes the proxy's entries of sandboxes that are no longer live (ended, deleted, or
    /// lost while no controller ran), so a released /29 can be given to a new sandbox whose
    /// source address the proxy would otherwise refuse as taken. Returns how many went.
    pub async fn prune(&self) -> Result<usize, EgressError> {
        // List first: `attach` stores an entry before it pushes it, so every entry listed
        // here that is still live is in the store when it is read next.
        let listed = self.inner.admin.list_sandboxes().await?;
        let live: HashSet<String> = self
            .inner
            .store
            .live_egress_entries()
            .await?
            .into_iter()
            .map(|e| e.sandbox_id.to_string())
            .collect();
        let mut removed = 0;
        for stale in listed
            .sandboxes
            .iter()
            .filter(|s| !live.contains(&s.sandbox_id))
        {
            self.inner.admin.delete_sandbox(&stale.sandbox_id).await?;
            info!(sandbox.id = %stale.sandbox_id, "Stale egress entry removed");
            removed += 1;
        }
        Ok(removed)
    }

    /// The deployment's own address space as last computed (before the first gathering: its
    /// configured part).
    pub fn infrastructure(&self) -> Vec<IpNet> {
        self.infra_state().list.clone()
    }

    fn infra_state(&self) -> std::sync::MutexGuard<'_, InfraState> {
        self.inner
            .infra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gathers the infrastructure list when it is due ([`INFRA_REFRESH`], or a proxy that
    /// does not hold it yet) and pushes it when the proxy does not hold exactly it.
    async fn sync_infrastructure(&self, boot_id: &str) -> Result<(), EgressError> {
        let due = {
            let state = self.infra_state();
            state.pushed_to.as_deref() != Some(boot_id)
                || state
                    .gathered
                    .is_none_or(|at| at.elapsed() >= INFRA_REFRESH)
        };
        if !due {
            return Ok(());
        }
        let sources = infrastructure::gather(&self.inner.infra_sources, &self.inner.docker).await;
        let list = infrastructure::compute(&sources);
        let stale = {
            let state = self.infra_state();
            state.pushed_to.as_deref() != Some(boot_id) || state.list != list
        };
        if stale {
            let answer = self.inner.admin.put_infrastructure(&list).await?;
            info!(
                egress.infrastructure = list.len(),
                egress.infrastructure_effective = answer.effective.len(),
                "Infrastructure list pushed to the egress proxy"
            );
        }
        let mut state = self.infra_state();
        *state = InfraState {
            list,
            pushed_to: Some(boot_id.to_owned()),
            gathered: Some(Instant::now()),
        };
        Ok(())
    }

    /// The boot id the live entries were last pushed to, if any.
    pub async fn synced_boot_id(&self) -> Option<String> {
        self.inner.synced_boot.lock().await.clone()
    }
}

/// Makes (or keeps) the CA, the proxy's server certificate (SAN: the admin address) and the
/// controller's client certificate under `dir`.
fn issue_certs(dir: &std::path::Path, admin_ip: IpAddr) -> Result<(), EgressError> {
    airlock_certs::init(&InitOptions::new(dir).san(San::Ip(admin_ip)))
        .map(drop)
        .map_err(|e| EgressError::Tls(e.to_string()))
}
