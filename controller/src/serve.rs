//! `airlock serve`: opens the store (running migrations), connects to the DinD over mTLS,
//! makes sure the bootstrap admin user exists (generating the first-boot admin when nothing
//! can log in, see [`crate::ops::first_boot`]), starts the image pre-pull, and serves the API
//! until SIGTERM or SIGINT.
//!
//! Before serving, one reconcile pass takes over whatever the last run left (see
//! [`crate::reconcile`]); the reconciler then runs beside the API until shutdown.
//!
//! Shutdown drains in-flight requests and leaves every sandbox running: they are the
//! reconciler's to pick up at the next start.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::accounts::user::UserId;
use crate::accounts::{AccountError, Accounts, EnsureBootstrapAdmin};
use crate::api::edge::Edge;
use crate::api::listener::Listener;
use crate::api::{self, AppState, Auth};
use crate::audit::{Actor, AuditLog};
use crate::config::{Config, HttpConfig, DEFAULT_NODE};
use crate::docker::client::volumes::QuotaProbe;
use crate::docker::{DockerClient, DockerError};
use crate::egress::EgressPlane;
use crate::images::load::Node;
use crate::images::prepull;
use crate::reconcile::events::EventWatcher;
use crate::reconcile::retention::Retention;
use crate::reconcile::{Pass, ReconcileSettings, Reconciler};
use crate::secrets::vault::{SecretKey, Vault, VaultError};
use crate::services::{Services, Settings};
use crate::store::{Store, StoreError};
use crate::volume::QuotaMode;

/// Why `airlock serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The Docker node could not be reached.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("server: {0}")]
    Serve(#[source] std::io::Error),
    /// The egress plane could not be set up (its TLS material).
    #[error("egress: {0}")]
    Egress(#[from] crate::egress::EgressError),
    /// The bootstrap admin could not be created.
    #[error("bootstrap admin: {0}")]
    Bootstrap(#[from] AccountError),
    /// The secret key is missing, malformed or does not match the stored secrets.
    #[error("secrets: {0}")]
    Vault(#[from] VaultError),
    /// The store lock could not be taken.
    #[error("store lock: {0}")]
    Lock(#[from] crate::ops::store_lock::LockError),
    /// The data dir or its files' modes could not be set.
    #[error("data dir: {0}")]
    Files(#[source] std::io::Error),
    /// The API's TLS certificate or key cannot be used.
    #[error("API TLS: {0}")]
    Tls(#[from] crate::api::listener::tls::TlsError),
    /// The first-boot admin could not be created.
    #[error("first boot: {0}")]
    FirstBoot(#[from] crate::ops::first_boot::FirstBootError),
}

// === impl ServeError ===

impl ServeError {
    /// Whether the operator's configuration is at fault (`airlock serve` exits 64 then).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Tls(_)
                | Self::Bootstrap(AccountError::BootstrapNotAdmin { .. })
                | Self::FirstBoot(crate::ops::first_boot::FirstBootError::Accounts(
                    AccountError::BootstrapNotAdmin { .. }
                ))
        )
    }
}

/// Builds a multi-threaded runtime and runs [`run`] on it.
pub fn run_blocking(config: Config) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(run(config))
}

/// Starts everything from `config` and serves until a shutdown signal.
pub async fn run(config: Config) -> Result<(), ServeError> {
    info!(config = ?config, "Starting airlock serve");
    // Held until the process ends: `airlock admin rotate-key` refuses while it is.
    crate::ops::file_modes::create_data_dir(&config.data_dir).map_err(ServeError::Files)?;
    let _serving = crate::ops::store_lock::serving(&config.data_dir)?;
    // Every sandbox starts through it: without it, creates fail (503 `init_unavailable`).
    if let Err(error) = crate::sandboxes::launch::Runtime::read(&config.run.init_binary).await {
        warn!(%error, "Sandboxes cannot start: the airlock-init binary is not readable");
    }
    let (store, vault) = open_store(&config).await?;
    // Accounts before the node: a bootstrap mistake is the operator's to fix, whatever Docker.
    let admin = ensure_admins(&config, &store).await?;
    let docker = DockerClient::connect(&config.docker).await?;
    let mut settings = Settings::from_config(&config);
    settings.quota_mode = volume_quota_mode(&docker).await;
    let mut services = Services::builder(store.clone(), docker.clone(), settings).vault(vault);
    let egress = start_egress(&config, &docker, &store).await?;
    if let Some(plane) = &egress {
        services = services.egress(plane.clone());
    }
    let services = services.build();
    // Filled now, so no create pays for it; the helper is made from the proxy's image.
    if egress.is_some() {
        let image = &config.egress.image;
        services.sandboxes.prepare_runtime(image).await;
    }
    let reconciler = startup_reconcile(&config, store.clone(), docker.clone(), &services).await;
    let listen = Listener::from_config(config.http.clone())?;
    if let Some(files) = &config.http.tls {
        info!(tls.cert = %files.cert.display(), "The API serves HTTPS only");
    }
    let edge = Edge::new(&config.http, listen.tls.is_some());
    let state = AppState::new(services, Auth::new(config.admin_token.clone(), admin))
        .with_edge(edge)
        .with_metrics_token(config.metrics_token.clone());
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let retention = Retention::new(store.clone(), config.tables.ledger_retention);
    let background = Background::spawn(&state, reconciler, egress, store, docker);
    let background = background.with("Retention", |stopped| retention.run(stopped));
    let served = serve_with(listener, state, listen, shutdown_signal()).await;
    background.stop().await;
    served
}

/// How the node enforces volume sizes, probed once at start (see
/// [`DockerClient::probe_volume_quota`]); soft when the probe itself fails.
async fn volume_quota_mode(docker: &DockerClient) -> QuotaMode {
    match docker.probe_volume_quota(DEFAULT_NODE).await {
        Ok(QuotaProbe::Hard) => {
            info!("Volume sizes are hard quotas (the node's volume root enforces them)");
            QuotaMode::Hard
        }
        Ok(QuotaProbe::Soft(reason)) => {
            info!(%reason, "Volume sizes are soft quotas (usage is sampled)");
            QuotaMode::Soft
        }
        Err(error) => {
            warn!(%error, "The volume quota probe failed; volume sizes are soft quotas");
            QuotaMode::Soft
        }
    }
}

/// Opens the store (migrations run), imports the ceilings file, and opens the vault: a wrong
/// or rotated secret key stops the boot here, before anything is served.
async fn open_store(config: &Config) -> Result<(Store, Vault), ServeError> {
    let store = Store::connect(&config.database).await?;
    // An operator's edited ceilings file applies now; an unchanged one keeps an admin's edit.
    crate::egress::import_policy_file(&store, &config.policy).await?;
    let (key, key_source) =
        SecretKey::load_or_generate(config.secret_key.as_ref(), &config.secret_key_file)?;
    let vault = Vault::open(&store, &key, &key_source).await?;
    // The data dir 0700, the database and the key 0600, whoever made them.
    match crate::ops::file_modes::harden(config) {
        Ok(fixes) => {
            for fix in fixes {
                warn!(fix = %fix, "Loose file mode tightened");
            }
        }
        // Not ours to change (a mounted volume): say so, and serve.
        Err(error) => warn!(%error, "Cannot check the data dir's file modes"),
    }
    Ok((store, vault))
}

/// The admin token's user, the configured admin, and (with nothing else to sign in with) the
/// first-boot admin, whose credentials go to a 0600 file. Returns the admin token's user.
async fn ensure_admins(config: &Config, store: &Store) -> Result<UserId, ServeError> {
    let accounts = Accounts::new(store.clone(), AuditLog::new(store.clone()), config.quota);
    let admin = accounts.bootstrap_admin().await?;
    if let Some(bootstrap) = &config.bootstrap_admin {
        let ensure = EnsureBootstrapAdmin {
            admin: bootstrap.clone(),
        };
        accounts.run(&Actor::boot(), ensure).await?;
    }
    crate::ops::first_boot::ensure_initial_admin(config, store).await?;
    Ok(admin)
}

/// The network plane: brings the proxy up. A failure is retried by the plane's task; until
/// then creates fail closed.
async fn start_egress(
    config: &Config,
    docker: &DockerClient,
    store: &Store,
) -> Result<Option<EgressPlane>, ServeError> {
    let egress = EgressPlane::from_config(config, docker.clone(), store.clone(), DEFAULT_NODE)?;
    if let Some(plane) = &egress {
        if let Err(error) = plane.ensure().await {
            warn!(%error, "Egress proxy not ready at start; retrying in the background");
        }
    }
    Ok(egress)
}

/// The reconciler, after its startup pass (before the API serves, so every in-flight row
/// is taken over).
async fn startup_reconcile(
    config: &Config,
    store: Store,
    docker: DockerClient,
    services: &Services,
) -> Reconciler {
    let mut settings = ReconcileSettings::new(DEFAULT_NODE, config.stop_grace);
    settings.interval = config.reconcile_interval;
    let reconciler = Reconciler::new(store, docker, settings)
        .with_activity(services.sandboxes.activity().clone())
        .with_metrics(services.metrics().clone());
    let started = tokio::time::Instant::now();
    reconciler.pass_logged(Pass::Startup).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(duration_ms, "Startup reconcile done");
    reconciler
}

/// The tasks beside the API: the reconciler, the event watcher, the image pre-pull and the
/// egress plane's sync and ledger pull.
struct Background {
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    prepull: JoinHandle<()>,
}

// === impl Background ===

impl Background {
    fn spawn(
        state: &AppState,
        reconciler: Reconciler,
        egress: Option<EgressPlane>,
        store: Store,
        docker: DockerClient,
    ) -> Self {
        let mut background = Self {
            stops: Vec::new(),
            tasks: Vec::new(),
            prepull: tokio::spawn(prepull::run(
                state.services.images.catalog().clone(),
                store,
                Node {
                    name: DEFAULT_NODE.to_owned(),
                    client: docker,
                },
            )),
        };
        // The event watcher notices ends as they happen and reconciles after each reconnect.
        let sandboxes = state.services.sandboxes.clone();
        let watcher = EventWatcher::new(sandboxes, reconciler.clone(), DEFAULT_NODE);
        background.add("Event watcher", |stopped| watcher.run(stopped));
        // The warm pools: refilled and reconciled beside the sandbox reconciler.
        let sandboxes = state.services.sandboxes.clone();
        background.add("Pools", |stopped| sandboxes.tend_pools(stopped));
        // The reconciler runs until the API has drained, then stops between passes.
        background.add("Reconciler", |stopped| reconciler.run(stopped));
        if let Some(plane) = egress {
            background.add("Egress plane", |stopped| plane.run(stopped));
        }
        let audit = state.services.audit.clone();
        background.add("Audit tally", |stopped| flush_audit_noise(audit, stopped));
        // Soft volume quotas: every volume's usage, sampled each interval.
        let volumes = state.services.volumes.clone();
        background.add("Volume sampler", |stopped| {
            crate::volumes::run_sampler(volumes, stopped)
        });
        background
    }

    /// The same tasks and `task` besides.
    fn with<F: Future<Output = ()> + Send + 'static>(
        mut self,
        name: &'static str,
        task: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    ) -> Self {
        self.add(name, task);
        self
    }

    fn add<F: Future<Output = ()> + Send + 'static>(
        &mut self,
        name: &'static str,
        task: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    ) {
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = Box::pin(async move { drop(stopped.await) });
        self.stops.push(stop);
        self.tasks.push((name, tokio::spawn(task(stopped))));
    }

    /// Asks every task to stop, waits for them, and abandons the pre-pull.
    async fn stop(self) {
        drop(self.stops);
        for (name, task) in self.tasks.into_iter().rev() {
            if let Err(error) = task.await {
                warn!(%error, task = name, "Background task ended abnormally");
            }
        }
        self.prepull.abort();
    }
}

/// Writes the aggregated failed-login and refused-token rows of every finished minute, and
/// the rest when asked to stop (after the API has drained).
async fn flush_audit_noise(
    audit: AuditLog,
    stopped: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            _ = tick.tick() => audit.flush_noise().await,
        }
    }
    audit.flush_all_noise().await;
}

/// Serves the API on `listener` with the default limits until `shutdown` completes, then
/// drains in-flight requests.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(
        listener,
        state,
        Listener::plain(HttpConfig::default()),
        shutdown,
    )
    .await
}

/// Serves the API on `listener` through `listen` (its limits and TLS) until `shutdown`
/// completes, then drains in-flight requests.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    listen: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        info!(listen.addr = %addr, "API listening");
    }
    // Log followers would hold the drain open until their sandboxes end: close them first.
    let logs = state.services.sandboxes.logs().clone();
    let shutdown = async move {
        shutdown.await;
        logs.close();
    };
    // The listener hands every request its peer address (the per-source caps and throttle).
    listen
        .serve(listener, api::app(state), shutdown)
        .await
        .map_err(ServeError::Serve)?;
    info!("API stopped; sandboxes keep running");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            warn!(%error, "Cannot watch SIGTERM; only SIGINT stops the server");
            drop(interrupt.await);
        }
    }
    info!("Shutdown signal received");
}
