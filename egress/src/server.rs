//! The accept loop and the per-request pipeline shared by CONNECT and forwarding:
//! parse → identify → judge (precheck, resolve, evaluate) → budget, then `open_upstream` dials
//! one of the checked addresses (forwarding may first reuse a pooled connection to one of them).
//!
//! Invariants:
//! - A global semaphore caps client connections; when it is exhausted the loop stops accepting
//!   (the kernel backlog holds the rest) instead of failing.
//! - Per source address, open connections and connections still sending a head are capped
//!   (`sources`); over a cap the connection gets its `429` JSON at once and a ledger row, so one
//!   sandbox never makes another wait.
//! - An identified sandbox's request takes its ledger slot before the decision, and its
//!   generation is checked again after the dial: nothing goes upstream that the ledger cannot
//!   record or that a newer policy revoked.
//! - Every accepted connection gets an HTTP answer for every request, and every refusal is JSON:
//!   the `gate` checks each request head before hyper parses it, so hyper's own bare error
//!   answers never go out.
//! - On shutdown the loop stops accepting, open connections finish their in-flight request, and
//!   after the grace period every remaining connection and tunnel is cut.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock_egress_policy::{Decision, OperatorExceptions, Target};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::budget::ConnectionPermit;
use crate::config::Config;
use crate::decide::{denial_error, judge, parse_request, ParsedRequest, RequestKind, Rules};
use crate::dial::{dial, DialError, DialOptions};
use crate::error::EgressError;
use crate::exchange::{ClientConn, Exchange};
use crate::gate::{serialize, GateLimits, Rejected, Render, RequestGate, LINGER, LINGER_BYTES};
use crate::infra::InfraSet;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::pool::UpstreamPool;
use crate::registry::{ClientCtx, Registry};
use crate::resolve::Resolve;
use crate::sources::{Over, SourceCaps};

/// The longest a request head may take to arrive (shorter when the idle timeout is).
const MAX_HEAD_WAIT: Duration = Duration::from_secs(30);
/// How much later than the gate hyper gives up on a head itself.
const HEAD_WAIT_BACKSTOP: Duration = Duration::from_secs(5);

/// Boxed error for response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every proxy response.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

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
pub struct Proxy {
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
    /// Held by every connection task; the accept loop waits for all clones to drop.
    drain: mpsc::Sender<()>,
}

/// An identified, allowed request: the addresses it may go to, and its connection slot.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) exchange: Exchange,
    pub(crate) parsed: ParsedRequest,
    pub(crate) ctx: ClientCtx,
    /// Every checked address, in answer order; only these may be dialled or reused.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) permit: ConnectionPermit,
}

// === impl Proxy ===

impl Proxy {
    pub(crate) fn config(&self) -> &Config {
        &self.config
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
    pub(crate) fn pool(&self) -> &UpstreamPool {
        &self.pool
    }
    pub(crate) fn hard_stop(&self) -> &CancellationToken {
        &self.hard_stop
    }
    pub(crate) fn drain_guard(&self) -> mpsc::Sender<()> {
        self.drain.clone()
    }
}

/// Runs the proxy on `listener` until `shutdown` resolves, then drains for the configured
/// grace period.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let mut own_addrs = vec![local, config.listen];
    own_addrs.extend(config.admin_listen);
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    let proxy = Arc::new(Proxy {
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
        drain: drain_tx,
        config,
    });
    let graceful = CancellationToken::new();
    tracing::info!(listen.addr = %local, "Egress proxy listening");
    accept_loop(&listener, &proxy, &graceful, shutdown).await;
    drop(listener);
    graceful.cancel();
    let grace = proxy.config.shutdown_grace;
    let hard_stop = proxy.hard_stop.clone();
    drop(proxy);
    if tokio::time::timeout(grace, drain_rx.recv()).await.is_err() {
        tracing::warn!(
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "Shutdown grace expired; cutting connections"
        );
    }
    hard_stop.cancel();
    tracing::info!("Egress proxy stopped");
    Ok(())
}

async fn accept_loop(
    listener: &TcpListener,
    proxy: &Arc<Proxy>,
    graceful: &CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(proxy.config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                proxy.metrics().connection_rejected_overload();
                tracing::warn!("Connection cap reached; applying back-pressure");
                tokio::select! {
                    () = &mut shutdown => return,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let proxy = proxy.clone();
                let graceful = graceful.clone();
                let span = tracing::info_span!("conn", client.addr = %peer);
                tokio::spawn(
                    async move {
                        let _slot = slot;
                        serve_connection(proxy, stream, peer, graceful).await;
                    }
                    .instrument(span),
                );
            }
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "Accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    peer: SocketAddr,
    graceful: CancellationToken,
) {
    let _drain = proxy.drain_guard();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "Cannot set TCP_NODELAY");
    }
    let open = match proxy.caps.admit(peer.ip()) {
        Ok(open) => open,
        Err(over) => {
            let conn = Arc::new(ClientConn::new(peer, None));
            return refuse_at_once(&proxy, &conn, stream, over).await;
        }
    };
    let conn = Arc::new(ClientConn::new(peer, Some(open)));
    let hard_stop = proxy.hard_stop.clone();
    let limits = GateLimits {
        max_head: proxy.config.max_header_bytes,
        head_timeout: proxy.config.idle_timeout.min(MAX_HEAD_WAIT),
        write_idle: proxy.config.idle_timeout,
    };
    let render: Render = {
        let (proxy, conn) = (proxy.clone(), conn.clone());
        Box::new(move |rejected: Rejected| {
            let exchange = Exchange::begin(proxy, &conn, &rejected.method, &rejected.target);
            serialize(&exchange.refuse(&rejected.error))
        })
    };
    let stream = RequestGate::new(stream, limits, render, conn.clone(), proxy.caps.clone());
    let svc_proxy = proxy.clone();
    let service = service_fn(move |req| handle(svc_proxy.clone(), conn.clone(), req));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The gate times heads out (with a JSON 408); hyper's own limit is only a backstop.
        .header_read_timeout(limits.head_timeout + HEAD_WAIT_BACKSTOP)
        // A client that half-closes after its request still gets the response; the gate also
        // relies on this to end a connection after a refused head without cutting earlier
        // responses short.
        .half_close(true)
        .max_buf_size(limits.max_head.max(64 * 1024));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = graceful.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = hard_stop.cancelled() => Ok(()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "Client connection ended with an error");
    }
}

/// Answers a connection over a per-source cap: the `429` JSON (and its ledger row) at once,
/// then a short linger so the client reads it rather than a reset. Nothing waits for room.
async fn refuse_at_once(
    proxy: &Arc<Proxy>,
    conn: &Arc<ClientConn>,
    mut stream: TcpStream,
    over: Over,
) {
    proxy.metrics().connection_rejected(over.code());
    let exchange = Exchange::begin(proxy.clone(), conn, "-", "-");
    let reply = serialize(&exchange.refuse(&over.error()));
    let linger = proxy.caps.linger(conn.peer.ip());
    let written = tokio::time::timeout(LINGER, stream.write_all(&reply)).await;
    if !matches!(written, Ok(Ok(()))) || linger.is_none() {
        return;
    }
    let _ = stream.shutdown().await;
    drain_briefly(&mut stream).await;
}

/// Reads and discards what the client still sends, for a moment, so closing with unread input
/// does not reset the connection before the client has read its answer.
async fn drain_briefly(stream: &mut TcpStream) {
    let mut scratch = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ClientConn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let response = if req.method() == Method::CONNECT {
        crate::connect::handle(proxy, conn, req).await
    } else {
        crate::forward::handle(proxy, conn, req).await
    };
    Ok(response)
}

/// Turns a fixed body into the proxy body type.
pub(crate) fn full(response: Response<Bytes>) -> Response<ProxyBody> {
    response.map(|b| Full::new(b).map_err(|never| match never {}).boxed())
}

/// Runs the shared pipeline up to the dial, or returns the refusal response.
pub(crate) async fn admit<B>(
    proxy: &Arc<Proxy>,
    conn: &Arc<ClientConn>,
    req: &Request<B>,
) -> Result<Admitted, Response<ProxyBody>> {
    let raw_target = req.uri().to_string();
    let mut exchange = Exchange::begin(proxy.clone(), conn, req.method().as_str(), &raw_target);
    match admit_inner(proxy, conn.peer, req, &raw_target, &mut exchange).await {
        Ok((parsed, ctx, addrs, permit)) => Ok(Admitted {
            exchange,
            parsed,
            ctx,
            addrs,
            permit,
        }),
        Err(error) => Err(full(exchange.refuse(&error))),
    }
}

async fn admit_inner<B>(
    proxy: &Arc<Proxy>,
    peer: SocketAddr,
    req: &Request<B>,
    raw_target: &str,
    exchange: &mut Exchange,
) -> Result<(ParsedRequest, ClientCtx, Vec<SocketAddr>, ConnectionPermit), EgressError> {
    let hosts: Vec<&[u8]> = match req.method() {
        &Method::CONNECT => Vec::new(),
        _ => req
            .headers()
            .get_all(http::header::HOST)
            .iter()
            .map(|v| v.as_bytes())
            .collect(),
    };
    let parsed = parse_request(req.method().as_str(), raw_target, &hosts)?;
    exchange.set_target(&parsed.target);
    let credential = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .map(|v| v.as_bytes());
    let ctx = proxy.services.registry.identify(peer.ip(), credential)?;
    exchange.set_identity(&ctx);
    exchange.reserve()?;
    let addrs = decide(proxy, &ctx, &parsed.target, exchange).await?;
    let permit = ctx
        .budget
        .open()
        .map_err(|e| EgressError::policy(e.code(), e.to_string()))?;
    ctx.budget
        .check_bytes(0)
        .map_err(|e| EgressError::policy(e.code(), e.to_string()))?;
    Ok((parsed, ctx, addrs, permit))
}

/// Dials one of the checked addresses and records which one answered.
pub(crate) async fn open_upstream(
    proxy: &Proxy,
    exchange: &mut Exchange,
    addrs: &[SocketAddr],
) -> Result<TcpStream, EgressError> {
    let upstream = dial(addrs, &proxy.dial).await.map_err(dial_error)?;
    exchange.set_addr(upstream.peer_addr().ok());
    Ok(upstream)
}

/// Judges the target under the client's policy; returns the addresses allowed for dialling.
async fn decide(
    proxy: &Arc<Proxy>,
    ctx: &ClientCtx,
    target: &Target,
    exchange: &mut Exchange,
) -> Result<Vec<SocketAddr>, EgressError> {
    let infra = proxy.services.infra.current();
    let rules = Rules {
        policy: &ctx.policy,
        ops: &proxy.ops,
        infra: &infra,
    };
    let judgement = judge(
        rules,
        proxy.services.resolver.as_ref(),
        Some(&proxy.services.metrics),
        target,
    )
    .await?;
    match judgement.decision {
        Decision::Allow(allowed) => {
            exchange.set_allowed(
                allowed.would_deny.as_ref().map(|r| r.code()),
                allowed.rule.clone(),
            );
            Ok(allowed.addrs)
        }
        Decision::Deny(denied) => {
            exchange.set_rule(denied.rule.clone());
            exchange.set_addr(denied.addr);
            Err(denial_error(&denied, target))
        }
    }
}

/// A dial failure as the client sees it. The address that failed is one the proxy resolved,
/// so only the log names it.
fn dial_error(error: DialError) -> EgressError {
    match error {
        DialError::SelfConnect => EgressError::policy("proxy_loop", error.to_string()),
        DialError::Timeout(_) => EgressError::upstream("connect_timeout", error.to_string(), true),
        DialError::Failed { addr, source } => {
            tracing::debug!(dst.addr = %addr, error = %source, "Upstream connect failed");
            EgressError::upstream("connect_failed", "cannot connect to the destination", false)
        }
    }
}

/// After the dial: a policy pushed while the request was being admitted revokes it before any
/// byte leaves.
pub(crate) fn still_current(ctx: &ClientCtx) -> Result<(), EgressError> {
    if ctx.revoked.is_cancelled() {
        return Err(EgressError::policy(
            "policy_changed",
            "the sandbox's policy changed while the request was admitted; send it again",
        ));
    }
    Ok(())
}

/// Whether a request is a forward request (anything but CONNECT).
pub(crate) fn path_of(parsed: &ParsedRequest) -> &str {
    match &parsed.kind {
        RequestKind::Forward { path_and_query } => path_and_query,
        RequestKind::Connect => "/",
    }
}
