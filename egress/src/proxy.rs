//! The context every step of the pipeline works in: [`Proxy`], one per running proxy (its
//! configuration, services, caps, upstream pool and shutdown signals), and [`ClientConn`], one
//! per client connection. Nothing here runs a step; the steps read what they need from it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airlock_egress_policy::OperatorExceptions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dial::DialOptions;
use crate::infra::InfraSet;
use crate::inspect::GatewayUpstream;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::pool::UpstreamPool;
use crate::registry::Registry;
use crate::resolve::Resolve;
use crate::sources::{Slot, SourceCaps};

/// The services the proxy runs on; tests inject their own resolver.
#[derive(Debug, Clone)]
pub struct Services {
    /// Name resolution.
    pub resolver: Arc<dyn Resolve>,
    /// Client identity and per-sandbox policy.
    pub registry: Arc<Registry>,
    /// The canonical event spool.
    pub ledger: Arc<Ledger>,
    /// Prometheus counters.
    pub metrics: Arc<Metrics>,
    /// The deployment's own addresses, denied before every other rule.
    pub infra: Arc<InfraSet>,
}

/// Shared state of a running proxy.
#[derive(Debug)]
pub(crate) struct Proxy {
    config: Arc<Config>,
    services: Services,
    ops: OperatorExceptions,
    dial: DialOptions,
    /// Per-source connection and pending-head caps.
    caps: Arc<SourceCaps>,
    /// Idle upstream connections for forwarded requests.
    pool: UpstreamPool,
    /// Cancelled when the grace period is over: tunnels and connections stop.
    hard_stop: CancellationToken,
    /// Held by every connection task; the drain waits for all clones to drop.
    drain: mpsc::Sender<()>,
}

/// One client connection, shared by the exchanges on it.
#[derive(Debug)]
pub(crate) struct ClientConn {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Set when the client stopped reading a response for the idle timeout and was cut off.
    stalled: AtomicBool,
    /// The connection's place under its source's cap; held as long as anything on the
    /// connection is (a tunnel outlives the HTTP connection that opened it).
    _open: Option<Slot>,
    /// The gateway's upstream connections, kept for this client's next gateway request.
    pub(crate) gateway: GatewayUpstream,
}

// === impl Proxy ===

impl Proxy {
    /// The context of a proxy listening on `local`, and the receiver that completes once every
    /// connection task has ended (the drain).
    pub(crate) fn new(
        config: Arc<Config>,
        services: Services,
        local: SocketAddr,
    ) -> (Arc<Self>, mpsc::Receiver<()>) {
        let mut own_addrs = vec![local, config.listen];
        own_addrs.extend(config.admin_listen);
        let (drain, drained) = mpsc::channel::<()>(1);
        let proxy = Self {
            ops: OperatorExceptions::new(config.allow_cidrs.clone()),
            dial: DialOptions {
                connect_timeout: config.connect_timeout,
                own_addrs,
            },
            caps: Arc::new(SourceCaps::new(
                config.max_connections_per_source,
                config.max_pending_heads_per_source,
            )),
            services,
            pool: UpstreamPool::new(config.idle_timeout),
            hard_stop: CancellationToken::new(),
            drain,
            config,
        };
        (Arc::new(proxy), drained)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }
    pub(crate) fn services(&self) -> &Services {
        &self.services
    }
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.services.ledger
    }
    pub(crate) fn ledger_arc(&self) -> &Arc<Ledger> {
        &self.services.ledger
    }
    pub(crate) fn registry(&self) -> &Registry {
        &self.services.registry
    }
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.services.metrics
    }
    pub(crate) fn operator_exceptions(&self) -> &OperatorExceptions {
        &self.ops
    }
    pub(crate) fn dial_options(&self) -> &DialOptions {
        &self.dial
    }
    pub(crate) fn caps(&self) -> &Arc<SourceCaps> {
        &self.caps
    }
    pub(crate) fn pool(&self) -> &UpstreamPool {
        &self.pool
    }
    pub(crate) fn hard_stop(&self) -> &CancellationToken {
        &self.hard_stop
    }
    /// A clone the caller holds for as long as its task runs; the drain waits for it.
    pub(crate) fn drain_guard(&self) -> mpsc::Sender<()> {
        self.drain.clone()
    }
}

// === impl ClientConn ===

impl ClientConn {
    pub(crate) fn new(peer: SocketAddr, open: Option<Slot>) -> Self {
        Self {
            peer,
            stalled: AtomicBool::new(false),
            _open: open,
            gateway: GatewayUpstream::default(),
        }
    }

    /// The client stopped reading for the idle timeout: its exchanges end as `idle_timeout`.
    pub(crate) fn mark_stalled(&self) {
        self.stalled.store(true, Ordering::Relaxed);
    }

    /// Whether the client was cut off for not reading.
    pub(crate) fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }
}
