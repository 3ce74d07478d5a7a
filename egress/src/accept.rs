//! Accept: client connections, up to the hyper connection that reads their requests.
//!
//! Invariants:
//! - A global semaphore caps client connections; when it is exhausted the loop stops accepting
//!   (the kernel backlog holds the rest) instead of failing.
//! - Per source address, open connections and connections still sending a head are capped
//!   (`sources`); over a cap the connection gets its `429` JSON at once and a ledger row, so one
//!   sandbox never makes another wait.
//! - Every byte a client sends passes the [`RequestGate`] before hyper sees it, so every
//!   refusal is JSON and hyper's own bare error answers never go out.
//! - On shutdown the loop stops accepting, open connections finish their in-flight request, and
//!   once the proxy's hard stop fires every remaining connection is cut.
//!
//! Each request hyper reads goes to the handler the caller passes in (the dispatcher), so this
//! step knows nothing of the steps after it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::gate::{serialize, GateLimits, Rejected, Render, RequestGate, LINGER, LINGER_BYTES};
use crate::proxy::{ClientConn, Proxy};
use crate::record::Exchange;
use crate::sources::Over;

/// The longest a request head may take to arrive (shorter when the idle timeout is).
const MAX_HEAD_WAIT: Duration = Duration::from_secs(30);
/// How much later than the gate hyper gives up on a head itself.
const HEAD_WAIT_BACKSTOP: Duration = Duration::from_secs(5);

/// Accepts connections on `listener` until `shutdown` resolves; each request on them goes to
/// `handler`. A connection stops taking requests once `graceful` is cancelled.
pub(crate) async fn accept_loop<H, F>(
    listener: &TcpListener,
    proxy: &Arc<Proxy>,
    graceful: &CancellationToken,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Arc<Proxy>, Arc<ClientConn>, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(proxy.config().max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => return,
            slot = global_slot(proxy, &slots) => slot,
        };
        let Some(slot) = slot else { return };
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (proxy, graceful) = (proxy.clone(), graceful.clone());
                let handler = handler.clone();
                let span = tracing::info_span!("conn", client.addr = %peer);
                tokio::spawn(
                    async move {
                        let _slot = slot;
                        serve_connection(proxy, stream, peer, graceful, handler).await;
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

/// A place under the global connection cap; at the cap, waits for one (back-pressure).
async fn global_slot(proxy: &Proxy, slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    proxy.metrics().connection_rejected_overload();
    tracing::warn!("Connection cap reached; applying back-pressure");
    slots.clone().acquire_owned().await.ok()
}

/// One client connection: its source's cap, then the gate and hyper until it ends.
async fn serve_connection<H, F>(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    peer: SocketAddr,
    graceful: CancellationToken,
    handler: H,
) where
    H: Fn(Arc<Proxy>, Arc<ClientConn>, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let _drain = proxy.drain_guard();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "Cannot set TCP_NODELAY");
    }
    let conn = match proxy.caps().admit(peer.ip()) {
        Ok(open) => Arc::new(ClientConn::new(peer, Some(open))),
        Err(over) => {
            let conn = Arc::new(ClientConn::new(peer, None));
            return refuse_at_once(&proxy, &conn, stream, over).await;
        }
    };
    let (stream, limits) = gate(&proxy, &conn, stream);
    let service = {
        let proxy = proxy.clone();
        service_fn(move |req| {
            let response = handler(proxy.clone(), conn.clone(), req);
            async move { Ok::<_, Infallible>(response.await) }
        })
    };
    let conn = hyper_builder(&limits)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = graceful.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = proxy.hard_stop().cancelled() => Ok(()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "Client connection ended with an error");
    }
}

/// The connection behind its gate, and the gate's limits.
fn gate(
    proxy: &Arc<Proxy>,
    conn: &Arc<ClientConn>,
    stream: TcpStream,
) -> (RequestGate<TcpStream>, GateLimits) {
    let limits = GateLimits {
        max_head: proxy.config().max_header_bytes,
        head_timeout: proxy.config().idle_timeout.min(MAX_HEAD_WAIT),
        write_idle: proxy.config().idle_timeout,
    };
    let render = render(proxy, conn);
    let gate = RequestGate::new(stream, limits, render, conn.clone(), proxy.caps().clone());
    (gate, limits)
}

/// hyper's server side of a client connection, behind the gate.
fn hyper_builder(limits: &GateLimits) -> http1::Builder {
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
    builder
}

/// How the gate answers a head it refused: the JSON refusal, recorded in the ledger.
fn render(proxy: &Arc<Proxy>, conn: &Arc<ClientConn>) -> Render {
    let (proxy, conn) = (proxy.clone(), conn.clone());
    Box::new(move |rejected: Rejected| {
        let exchange = Exchange::begin(proxy, &conn, &rejected.method, &rejected.target);
        serialize(&exchange.refuse(&rejected.error))
    })
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
    let linger = proxy.caps().linger(conn.peer.ip());
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
