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
use crate::api::{self, AppState, Auth};
use crate::audit::{Actor, AuditLog};
use crate::config::{Config, DEFAULT_NODE};
use crate::docker::{DockerClient, DockerError};
use crate::egress::EgressPlane;
use crate::images::load::Node;
use crate::images::prepull;
use crate::reconcile::events::EventWatcher;
use crate::reconcile::{Pass, ReconcileSettings, Reconciler};
use crate::secrets::vault::{SecretKey, Vault, VaultError};
use crate::services::{Services, Settings};
use crate::store::{Store, StoreError};

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
    /// The first-boot admin could not be created.
    #[error("first boot: {0}")]
    FirstBoot(#[from] crate::ops::first_boot::FirstBootError),
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
    let (store, vault) = open_store(&config).await?;
    let docker = DockerClient::connect(&config.docker).await?;
    let admin = ensure_admins(&config, &store).await?;
    let mut services = Services::builder(
        store.clone(),
        docker.clone(),
        Settings::from_config(&config),
    )
    .vault(vault);
    let egress = start_egress(&config, &docker, &store).await?;
    if let Some(plane) = &egress {
        services = services.egress(plane.clone());
    }
    let services = services.build();
    let reconciler = startup_reconcile(&config, store.clone(), docker.clone(), &services).await;
    let state = AppState::new(services, Auth::new(config.admin_token.clone(), admin));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let background = Background::spawn(&state, reconciler, egress, store, docker);
    let served = serve_on(listener, state, shutdown_signal()).await;
    background.stop().await;
    served
}

/// Opens the store (migrations run), imports the ceilings file, and opens the vault: a wrong
/// or rotated secret key stops the boot here, before anything is served.
async fn open_store(config: &Config) -> Result<(Store, Vault), ServeError> {
    let store = Store::connect(&config.database).await?;
    // An operator's edited ceilings file applies now; an unchanged one keeps an admin's edit.
    crate::egress::import_policy_file(&store, &config.policy).await?;
    let (key, key_source) =
        SecretKey::load_or_generate(config.secret_key.as_ref(), &config.data_dir)?;
    let vault = Vault::open(&store, &key, &key_source).await?;
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
        // The reconciler runs until the API has drained, then stops between passes.
        background.add("Reconciler", |stopped| reconciler.run(stopped));
        if let Some(plane) = egress {
            background.add("Egress plane", |stopped| plane.run(stopped));
        }
        // Soft volume quotas: every volume's usage, sampled each interval.
        let volumes = state.services.volumes.clone();
        background.add("Volume sampler", |stopped| {
            crate::volumes::run_sampler(volumes, stopped)
        });
        background
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

/// Serves the API on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
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
    // Peer addresses feed the per-source login throttle.
    let app = api::app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
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
