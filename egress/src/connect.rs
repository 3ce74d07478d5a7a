//! CONNECT tunnels.
//!
//! The tunnel is judged and its upstream socket opened *before* the `200` is sent, so a denied or
//! unreachable destination is refused with a JSON error and no tunnel ever opens. After the
//! upgrade the client socket is taken back from hyper and bytes are copied in both directions
//! with half-close: EOF on one side shuts down the write half of the other, and the tunnel ends
//! when both directions are done.
//!
//! A tunnel also ends when its sandbox's budget is spent, when it is idle for the idle timeout,
//! when its policy generation is replaced or removed (`revoked`), or when shutdown's grace period
//! expires. Copy buffers exist only while data is flowing, so an idle tunnel holds two sockets
//! and a small task, not buffers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::budget::Budget;
use crate::exchange::Counters;
use crate::metrics::Metrics;
use crate::server::{admit, full, open_upstream, Admitted, Proxy, ProxyBody};
use crate::sniff::TargetSniffer;

/// Largest chunk copied per read.
const CHUNK: usize = 64 * 1024;

/// Why a tunnel stopped early; `None` means both sides closed normally.
type Ended = Option<&'static str>;

/// Last-activity clock shared by both directions, for the idle timeout.
#[derive(Debug)]
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

/// One copy direction's accounting.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// What a copy direction charges its bytes to.
#[derive(Debug)]
struct Meter<'a> {
    direction: Direction,
    counters: &'a Counters,
    budget: &'a Budget,
    metrics: &'a Metrics,
    activity: &'a Activity,
}

/// Handles one CONNECT request: admit, answer 200, then splice in the background.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let mut admitted = match admit(&proxy, peer, &req).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let upstream = match open_upstream(&proxy, &mut admitted.exchange, &admitted.addrs).await {
        Ok(upstream) => upstream,
        Err(error) => return full(admitted.exchange.refuse(&error)),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let drain = proxy.drain_guard();
    tokio::spawn(
        async move {
            let _drain = drain;
            run(proxy, admitted, upstream, on_upgrade).await;
        }
        .in_current_span(),
    );
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::OK;
    response
}

async fn run(proxy: Arc<Proxy>, admitted: Admitted, upstream: TcpStream, on_upgrade: OnUpgrade) {
    let Admitted {
        exchange,
        ctx,
        permit,
        ..
    } = admitted;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "Client left before the tunnel opened");
            exchange.finish(Some("client_gone"));
            return;
        }
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<TargetSniffer<TcpStream>>>() else {
        tracing::error!("Upgraded connection is not a TCP stream");
        exchange.finish(Some("internal"));
        return;
    };
    let client = parts.io.into_inner().into_inner();
    let metrics = proxy.metrics();
    metrics.tunnel_opened();
    let activity = Activity::new();
    let counters = exchange.counters().clone();
    let up = Meter {
        direction: Direction::Up,
        counters: &counters,
        budget: permit.budget(),
        metrics,
        activity: &activity,
    };
    let down = Meter {
        direction: Direction::Down,
        ..up
    };
    let ended = tokio::select! {
        ended = splice(client, parts.read_buf, upstream, &up, &down) => ended,
        () = ctx.revoked.cancelled() => Some("policy_changed"),
        () = activity.idle(proxy.config().idle_timeout) => Some("idle_timeout"),
        () = proxy.hard_stop().cancelled() => Some("shutdown"),
    };
    metrics.tunnel_closed();
    drop(permit);
    exchange.finish(ended);
}

/// Copies both directions until both are done or one fails.
async fn splice(
    client: TcpStream,
    prefix: Bytes,
    upstream: TcpStream,
    up: &Meter<'_>,
    down: &Meter<'_>,
) -> Ended {
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let result = tokio::try_join!(
        pump(client_read, upstream_write, prefix, up),
        pump(upstream_read, client_write, Bytes::new(), down),
    );
    result.err().flatten()
}

/// Copies one direction; on EOF shuts down the peer's write half (half-close).
///
/// `Err(Some(reason))` stops the whole tunnel with a ledger reason, `Err(None)` stops it as an
/// ordinary close (reset by either side).
async fn pump(
    reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    prefix: Bytes,
    meter: &Meter<'_>,
) -> Result<(), Ended> {
    if !prefix.is_empty() {
        meter.charge(prefix.len())?;
        writer.write_all(&prefix).await.map_err(closed)?;
    }
    loop {
        reader.readable().await.map_err(closed)?;
        // The buffer lives only while the socket has data, so idle tunnels hold none.
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            buf.clear();
            match reader.try_read_buf(&mut buf) {
                Ok(0) => {
                    // Half-close: tell the other side we are done sending; keep reading theirs.
                    let _ = writer.shutdown().await;
                    return Ok(());
                }
                Ok(n) => {
                    meter.charge(n)?;
                    writer.write_all(&buf[..n]).await.map_err(closed)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(closed(error)),
            }
        }
    }
}

/// An I/O error ends the tunnel like an ordinary close (a reset is how many peers close).
fn closed(error: std::io::Error) -> Ended {
    tracing::debug!(%error, "Tunnel side closed with an error");
    None
}

// === impl Meter ===

impl Meter<'_> {
    /// Counts `n` bytes; refuses once the sandbox's byte budget is spent.
    fn charge(&self, n: usize) -> Result<(), Ended> {
        let n = n as u64;
        self.activity.touch();
        self.budget.add_bytes(n).map_err(|e| Some(e.code()))?;
        match self.direction {
            Direction::Up => {
                self.counters.up.fetch_add(n, Ordering::Relaxed);
                self.metrics.add_bytes(n, 0);
            }
            Direction::Down => {
                self.counters.down.fetch_add(n, Ordering::Relaxed);
                self.metrics.add_bytes(0, n);
            }
        }
        Ok(())
    }
}

// === impl Activity ===

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            sleep_until(deadline).await;
        }
    }
}
