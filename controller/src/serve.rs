//! `airlock serve`: opens the store (running migrations), connects to the DinD over mTLS,
//! makes sure the bootstrap admin user exists (generating the first-boot admin when nothing
//! can log in, see [`crate::ops::first_boot`]), starts the image pre-pull, and serves the API until SIGTERM or SIGINT.
//!
//! Before serving, one reconcile pass takes over whatever the last run left (see
//! [`crate::reconcile`]); the reconciler then runs beside the API until shutdown.
//!
//! Shutdown drains in-flight requests and leaves every sandbox running: they are the
//! reconciler's to pick up at the next start.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::api::{self, AppState, Auth};
use crate::config::Config;
use crate::config::DEFAULT_NODE;
use crate::docker::{DockerClient, DockerError};
use crate::egress::EgressPlane;
use crate::images::load::Node;
use crate::images::prepull;
use crate::reconcile::events::EventWatcher;
use crate::reconcile::{Pass, ReconcileSettings, Reconciler};
use crate::sandboxes::{SandboxService, ServiceSettings};
use crate::secrets::vault::{SecretKey, Vault, VaultError};
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
    Bootstrap(#[from] crate::accounts::AccountsError),
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
    let store = Store::connect(&config.database).await?;
    // An operator's edited ceilings file applies now; an unchanged one keeps an admin's edit.
    crate::sandboxes::import_policy_file(&store, &config.policy).await?;
    // A wrong or rotated secret key stops the boot here, before anything is served.
    let (key, key_source) =
        SecretKey::load_or_generate(config.secret_key.as_ref(), &config.data_dir)?;
    let vault = Vault::open(&store, &key, &key_source).await?;
    let docker = DockerClient::connect(&config.docker).await?;
    let admin = crate::accounts::bootstrap_admin(&store).await?;
    if let Some(bootstrap) = &config.bootstrap_admin {
        crate::accounts::ensure_bootstrap_admin(&store, bootstrap).await?;
    }
    // With nothing else to sign in with, first boot makes an admin (credentials in a 0600 file).
    crate::ops::first_boot::ensure_initial_admin(&config, &store).await?;
    let mut settings = ReconcileSettings::new(DEFAULT_NODE, config.stop_grace);
    settings.interval = config.reconcile_interval;
    let mut service = SandboxService::new(
        store.clone(),
        docker.clone(),
        ServiceSettings::from_config(&config),
    )
    .with_vault(vault);
    // The network plane (issue 6): bring the proxy up (a failure is retried by its task; until
    // then creates fail closed), then keep it synced and pull its ledger beside the API.
    let egress = EgressPlane::from_config(&config, docker.clone(), store.clone(), DEFAULT_NODE)?;
    if let Some(plane) = &egress {
        if let Err(error) = plane.ensure().await {
            warn!(%error, "Egress proxy not ready at start; retrying in the background");
        }
        service = service.with_egress(plane.clone());
    }
    let reconciler = Reconciler::new(store, docker, settings)
        .with_activity(service.activity().clone())
        .with_metrics(service.metrics().clone());
    let started = tokio::time::Instant::now();
    reconciler.pass_logged(Pass::Startup).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(duration_ms, "Startup reconcile done");
    let state = AppState::new(service, Auth::new(config.admin_token.clone(), admin));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    // The reconciler runs until the API has drained, then stops between passes.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The event watcher notices ends as they happen and reconciles after each reconnect.
    let (stop_events, events_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = EventWatcher::new(state.service.clone(), reconciler.clone(), DEFAULT_NODE);
    let events = tokio::spawn(watcher.run(async move { drop(events_stopped.await) }));
    let task = tokio::spawn(reconciler.run(async move { drop(stopped.await) }));
    // The API is ready before the pre-pull ends; creates wait for an image still loading.
    let node = Node {
        name: DEFAULT_NODE.to_owned(),
        client: state.service.docker().clone(),
    };
    let prepull = prepull::run(
        state.service.settings().images.clone(),
        state.service.store().clone(),
        node,
    );
    let prepull = tokio::spawn(prepull);
    let (stop_egress, egress_stopped) = tokio::sync::oneshot::channel::<()>();
    let egress =
        egress.map(|plane| tokio::spawn(plane.run(async move { drop(egress_stopped.await) })));
    let served = serve_on(listener, state, shutdown_signal()).await;
    drop(stop);
    drop(stop_events);
    drop(stop_egress);
    if let Some(task) = egress {
        if let Err(error) = task.await {
            warn!(%error, "Egress plane task ended abnormally");
        }
    }
    if let Err(error) = events.await {
        warn!(%error, "Event watcher task ended abnormally");
    }
    if let Err(error) = task.await {
        warn!(%error, "Reconciler task ended abnormally");
    }
    prepull.abort();
    served
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
    let logs = state.service.logs().clone();
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
