//! Startup: builds the proxy's services from its `Config` (policy, registry mode, resolver,
//! ledger, metrics, infrastructure set), starts the admin API when configured, serves until
//! SIGTERM or SIGINT, and keeps the infrastructure set derived from the interfaces meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{load_admin_tls, serve_admin, AdminError, AdminState};
use crate::config::{load_policy_spec, Config, DnsServers, PolicyLoadError, ProxyMode};
use crate::infra::{InfraSet, SystemInterfaces, DERIVE_INTERVAL};
use crate::inspect::{upstream_roots, Inspection, InspectionError};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::proxy::Services;
use crate::registry::Registry;
use crate::resolve::{
    system_nameservers, DnsStatus, HickoryResolve, NoResolver, Resolve, ResolverSetupError,
};
use crate::server::serve;

/// Per-query DNS timeout.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The policy file is unusable.
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
    /// The policy's endpoints, the inspection CA or a credential file are unusable.
    #[error(transparent)]
    Inspection(#[from] InspectionError),
    /// DNS could not be set up.
    #[error(transparent)]
    Resolver(#[from] ResolverSetupError),
    /// The admin TLS material is unusable.
    #[error(transparent)]
    AdminTls(#[from] AdminError),
    /// The admin API would listen beyond loopback without mTLS.
    #[error("--admin-listen {0} is not loopback: --admin-tls-dir is required")]
    AdminTlsRequired(std::net::SocketAddr),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A server failed while running.
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

impl StartupError {
    /// The process exit code: 64 (`EX_USAGE`) for an unusable policy file, endpoint, CA or
    /// credential file; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Policy(_) | StartupError::Inspection(_) => 64,
            _ => 1,
        }
    }
}

/// Runs the proxy (and the admin API when configured) until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), StartupError> {
    tracing::info!(config = ?config, "Starting airlock-egress");
    let (spec, policy) = load_policy_spec(config.policy.as_deref())?;
    let inspection = Inspection::load(spec.endpoints.as_deref(), &policy, &config.inspection)?;
    let registry = Arc::new(match config.mode {
        ProxyMode::Standalone => Registry::standalone(Arc::new(policy), inspection.map(Arc::new)),
        ProxyMode::Controlled => Registry::controlled(),
    });
    let (resolver, dns) = build_resolver(&config.dns)?;
    let infra = Arc::new(infra_set(&config));
    let services = Services {
        resolver,
        registry,
        ledger: Arc::new(Ledger::with_limits(
            config.spool_capacity,
            config.spool_per_sandbox,
        )),
        metrics: Arc::new(Metrics::new()),
        infra: infra.clone(),
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    tokio::spawn(refresh_infra(infra, stop.clone()));
    let admin = start_admin(&config, &services, dns, &stop).await?;
    let listener = bind(config.listen).await?;
    let served = serve(
        listener,
        Arc::new(config),
        services,
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    if let Some(admin) = admin {
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "Admin API failed"),
            Err(error) => tracing::warn!(%error, "Admin API task failed"),
        }
    }
    served.map_err(StartupError::Serve)
}

/// The resolver, and where its servers came from. With no `--dns`, the nameservers of
/// `/etc/resolv.conf` without Docker's embedded one; if none remains the proxy still starts,
/// says so loudly once, and refuses every name (`dns_failed`).
fn build_resolver(dns: &DnsServers) -> Result<(Arc<dyn Resolve>, DnsStatus), StartupError> {
    let servers = match dns {
        DnsServers::Explicit(servers) => {
            let resolver = HickoryResolve::new(servers, DNS_TIMEOUT)?;
            return Ok((Arc::new(resolver), DnsStatus::Configured));
        }
        DnsServers::System => system_nameservers(),
    };
    match servers {
        Ok(servers) if !servers.is_empty() => {
            let resolver = HickoryResolve::new(&servers, DNS_TIMEOUT)?;
            Ok((Arc::new(resolver), DnsStatus::System))
        }
        Ok(_) | Err(ResolverSetupError::NoServers) => Ok(no_resolver(None)),
        Err(error) => Ok(no_resolver(Some(error))),
    }
}

fn no_resolver(error: Option<ResolverSetupError>) -> (Arc<dyn Resolve>, DnsStatus) {
    tracing::error!(
        error = error.map(tracing::field::display),
        "No DNS resolver: /etc/resolv.conf lists none besides Docker's embedded resolver, which \
         the proxy never uses. Every name will be refused (dns_failed) until AIRLOCK_EGRESS_DNS \
         or --dns names the operator's resolvers"
    );
    (Arc::new(NoResolver), DnsStatus::None)
}

/// The infrastructure set: the operator's CIDRs, the proxy's own addresses, and a first
/// derivation from the interfaces.
fn infra_set(config: &Config) -> InfraSet {
    let mut own = vec![config.listen];
    own.extend(config.admin_listen);
    let set = InfraSet::new(config.deny_cidrs.clone(), &own, Box::new(SystemInterfaces));
    if let Err(error) = set.refresh() {
        tracing::warn!(%error, "Cannot read the interfaces; infrastructure not derived yet");
    }
    set
}

/// Derives the infrastructure set from the interfaces again, every few seconds.
async fn refresh_infra(infra: Arc<InfraSet>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(DERIVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let infra = infra.clone();
        match tokio::task::spawn_blocking(move || infra.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "Cannot read the interfaces"),
            Err(error) => tracing::warn!(%error, "Interface refresh task failed"),
        }
    }
}

async fn start_admin(
    config: &Config,
    services: &Services,
    dns: DnsStatus,
    stop: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, StartupError> {
    let Some(addr) = config.admin_listen else {
        if config.mode == ProxyMode::Controlled {
            tracing::warn!("Controlled mode without an admin listener: every client is denied");
        }
        return Ok(None);
    };
    if config.admin_tls_dir.is_none() && !addr.ip().is_loopback() {
        return Err(StartupError::AdminTlsRequired(addr));
    }
    let tls = config
        .admin_tls_dir
        .as_deref()
        .map(load_admin_tls)
        .transpose()?;
    let listener = bind(addr).await?;
    let state = AdminState {
        registry: services.registry.clone(),
        ledger: services.ledger.clone(),
        metrics: services.metrics.clone(),
        infra: services.infra.clone(),
        dns,
        upstream_ca: upstream_roots(&config.inspection)?,
    };
    let shutdown = stop.clone().cancelled_owned();
    Ok(Some(tokio::spawn(serve_admin(
        listener, tls, state, shutdown,
    ))))
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

/// Cancels `stop` on SIGTERM or SIGINT.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; stop the proxy with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "Shutting down"),
    }
    stop.cancel();
}
