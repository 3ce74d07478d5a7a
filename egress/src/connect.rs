//! CONNECT tunnels.
//!
//! The tunnel is judged and its upstream socket opened *before* the `200` is sent, so a denied or
//! unreachable destination is refused with a JSON error and no tunnel ever opens. After the
//! upgrade the client socket is taken back from hyper and bytes are moved in both directions
//! with half-close: EOF on one side shuts down the write half of the other, and the tunnel ends
//! when both directions are done. Bytes move with zero-copy `splice(2)` through a pipe, and
//! through a user-space buffer where the kernel cannot splice.
//!
//! The budget counts the CONNECT head and the `200` as well as the tunnel's bytes. After the
//! dial the sandbox's generation is checked again: a policy replaced while the tunnel was being
//! admitted refuses it before the `200`. Once open, every select that races cancellation polls
//! it first (`biased`), and each chunk is checked before it is written, so no byte moves under
//! a revoked generation.
//!
//! A tunnel also ends when its sandbox's budget is spent, when it is idle for the idle timeout,
//! when its policy generation is replaced or removed (`revoked`), or when shutdown's grace period
//! expires. Pipes and copy buffers exist only while data is flowing, so an idle tunnel holds two
//! sockets and a small task, not pipes or buffers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustix::io::Errno;
use rustix::pipe::{self, PipeFlags, SpliceFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::body::{request_head_len, response_head_len, HeadCharge};
use crate::budget::Budget;
use crate::error::EgressError;
use crate::exchange::{ClientConn, Counters};
use crate::gate::RequestGate;
use crate::metrics::Metrics;
use crate::server::{admit, full, open_upstream, still_current, Admitted, Proxy, ProxyBody};

/// Largest chunk moved per read (the default pipe capacity).
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
    /// The sandbox's generation: once cancelled, no further chunk is written.
    revoked: &'a CancellationToken,
}

/// Handles one CONNECT request: admit, answer 200, then splice in the background.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ClientConn>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let mut admitted = match admit(&proxy, &conn, &req).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let opened = open(&proxy, &mut admitted, request_head_len(&req)).await;
    let upstream = match opened {
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

/// Charges the CONNECT head, dials, checks the generation again and charges the `200`.
async fn open(proxy: &Proxy, admitted: &mut Admitted, head: u64) -> Result<TcpStream, EgressError> {
    let charge = HeadCharge::new(admitted.exchange.counters(), admitted.permit.budget());
    charge.up(head)?;
    let upstream = open_upstream(proxy, &mut admitted.exchange, &admitted.addrs).await?;
    still_current(&admitted.ctx)?;
    charge.down(response_head_len(StatusCode::OK, &http::HeaderMap::new()))?;
    Ok(upstream)
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
    let Ok(parts) = upgraded.downcast::<TokioIo<RequestGate<TcpStream>>>() else {
        tracing::error!("Upgraded connection is not a TCP stream");
        exchange.finish(Some("internal"));
        return;
    };
    // Bytes the client sent after its CONNECT head: first what hyper had buffered, then what
    // the gate still held.
    let (client, held) = parts.io.into_inner().into_parts();
    let prefix = if held.is_empty() {
        parts.read_buf
    } else {
        [parts.read_buf, held].concat().into()
    };
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
        revoked: &ctx.revoked,
    };
    let down = Meter {
        direction: Direction::Down,
        ..up
    };
    // Cancellation first: when the generation is revoked while data is ready, the revocation
    // wins and the splice is not polled again.
    let ended = tokio::select! {
        biased;
        () = ctx.revoked.cancelled() => Some("policy_changed"),
        () = proxy.hard_stop().cancelled() => Some("shutdown"),
        () = activity.idle(proxy.config().idle_timeout) => Some("idle_timeout"),
        ended = splice(client, prefix, upstream, &up, &down) => ended,
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
/// Bytes move with zero-copy `splice(2)` through a pipe (socket -> pipe -> socket) and fall back
/// to a user-space copy where the kernel refuses to splice. `Err(Some(reason))` stops the whole
/// tunnel with a ledger reason, `Err(None)` stops it as an ordinary close (reset by either side).
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
    let mut zero_copy = true;
    loop {
        reader.readable().await.map_err(closed)?;
        let burst = if zero_copy {
            splice_burst(&reader, &writer, meter).await?
        } else {
            Burst::Unsupported
        };
        let burst = match burst {
            Burst::Unsupported => {
                zero_copy = false;
                copy_burst(&reader, &mut writer, meter).await?
            }
            Burst::NoPipe => copy_burst(&reader, &mut writer, meter).await?,
            burst => burst,
        };
        if let Burst::Eof = burst {
            // Half-close: tell the other side we are done sending; keep reading theirs.
            let _ = writer.shutdown().await;
            return Ok(());
        }
    }
}

/// How one burst of readable data ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    /// The reader has no more data for now.
    Drained,
    /// The reader reached end of stream.
    Eof,
    /// Zero-copy is not possible here; use the copy loop from now on.
    Unsupported,
    /// No pipe could be made for this burst (descriptor limits); copy this burst only.
    NoPipe,
}

/// Moves everything the reader has now through a pipe into the writer.
///
/// The pipe exists only while the socket has data, so idle tunnels hold no pipe (and no extra
/// descriptors), as with the copy buffers.
async fn splice_burst(
    reader: &OwnedReadHalf,
    writer: &OwnedWriteHalf,
    meter: &Meter<'_>,
) -> Result<Burst, Ended> {
    let Ok((pipe_read, pipe_write)) = pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
    else {
        // Out of descriptors or pipes: this burst uses a buffer instead.
        return Ok(Burst::NoPipe);
    };
    // A bigger pipe moves more per system call; where the kernel refuses (per-user pipe limits)
    // the default capacity still works.
    let chunk = pipe::fcntl_setpipe_size(&pipe_write, PIPE_SIZE).unwrap_or(CHUNK);
    let reader: &TcpStream = reader.as_ref();
    let writer: &TcpStream = writer.as_ref();
    let mut first = true;
    loop {
        let spliced = reader.try_io(Interest::READABLE, || {
            pipe::splice(reader, None, &pipe_write, None, chunk, SPLICE_FLAGS).map_err(Into::into)
        });
        let n = match spliced {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) if first && unsupported(&e) => return Ok(Burst::Unsupported),
            Err(error) => return Err(closed(error)),
        };
        first = false;
        meter.charge(n)?;
        let mut left = n;
        while left > 0 {
            let sent = writer
                .async_io(Interest::WRITABLE, || {
                    pipe::splice(&pipe_read, None, writer, None, left, SPLICE_FLAGS)
                        .map_err(Into::into)
                })
                .await
                .map_err(closed)?;
            if sent == 0 {
                // The pipe held `left` bytes, so 0 means the writer cannot take any more.
                return Err(None);
            }
            left -= sent;
        }
    }
}

/// Pipe capacity asked for while a tunnel direction has data (the usual `pipe-max-size`).
const PIPE_SIZE: usize = 1024 * 1024;

/// Flags for every splice: never block the runtime, move pages rather than copy when possible.
const SPLICE_FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Whether a failed first splice means the kernel or socket cannot splice at all.
fn unsupported(error: &std::io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
    )
}

/// Copies everything the reader has now into the writer through a user-space buffer.
async fn copy_burst(
    reader: &OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    meter: &Meter<'_>,
) -> Result<Burst, Ended> {
    // The buffer lives only while the socket has data, so idle tunnels hold none.
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        buf.clear();
        match reader.try_read_buf(&mut buf) {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => {
                meter.charge(n)?;
                writer.write_all(&buf[..n]).await.map_err(closed)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(error) => return Err(closed(error)),
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
    /// Counts `n` bytes about to be written; refuses once the sandbox's byte budget is spent
    /// or its generation revoked.
    fn charge(&self, n: usize) -> Result<(), Ended> {
        if self.revoked.is_cancelled() {
            return Err(Some("policy_changed"));
        }
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    /// A connected loopback pair: (our end, the proxy's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, accepted) = tokio::join!(
            TcpSocket::new_v4().unwrap().connect(addr),
            listener.accept()
        );
        (ours.unwrap(), accepted.unwrap().0)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from(i % 251).unwrap() ^ seed)
            .collect::<Vec<u8>>()
    }

    /// Runs `splice` between a client pair and an upstream pair; returns the outer ends.
    async fn tunnel(
        budget: Budget,
        counters: Arc<Counters>,
        prefix: &'static [u8],
    ) -> (TcpStream, TcpStream, tokio::task::JoinHandle<Ended>) {
        let (client, proxy_client) = pair().await;
        let (upstream, proxy_upstream) = pair().await;
        let task = tokio::spawn(async move {
            let metrics = Metrics::new();
            let activity = Activity::new();
            let revoked = CancellationToken::new();
            let up = Meter {
                direction: Direction::Up,
                counters: &counters,
                budget: &budget,
                metrics: &metrics,
                activity: &activity,
                revoked: &revoked,
            };
            let down = Meter {
                direction: Direction::Down,
                ..up
            };
            splice(
                proxy_client,
                Bytes::from_static(prefix),
                proxy_upstream,
                &up,
                &down,
            )
            .await
        });
        (client, upstream, task)
    }

    #[tokio::test]
    async fn bulk_bytes_cross_intact_both_ways_with_half_close() {
        let counters = Arc::new(Counters::default());
        let (client, upstream, task) =
            tunnel(Budget::unlimited(), Arc::clone(&counters), b"pre").await;
        let up_data = pattern(8 << 20, 0x5a);
        let down_data = pattern(3 << 20, 0xa5);
        let (mut client_read, mut client_write) = client.into_split();
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let sent_up = up_data.clone();
        let sent_down = down_data.clone();
        let writers = tokio::spawn(async move {
            client_write.write_all(&sent_up).await.unwrap();
            client_write.shutdown().await.unwrap();
            upstream_write.write_all(&sent_down).await.unwrap();
            upstream_write.shutdown().await.unwrap();
        });
        let mut got_up = Vec::new();
        let mut got_down = Vec::new();
        let (a, b) = tokio::join!(
            upstream_read.read_to_end(&mut got_up),
            client_read.read_to_end(&mut got_down),
        );
        a.unwrap();
        b.unwrap();
        writers.await.unwrap();
        assert_eq!(task.await.unwrap(), None);
        assert_eq!(&got_up[..3], b"pre");
        assert!(got_up[3..] == up_data[..], "upstream got other bytes");
        assert!(got_down == down_data, "client got other bytes");
        assert_eq!(counters.up.load(Ordering::Relaxed), 3 + (8 << 20));
        assert_eq!(counters.down.load(Ordering::Relaxed), 3 << 20);
    }

    #[tokio::test]
    async fn spent_budget_ends_the_tunnel() {
        let counters = Arc::new(Counters::default());
        let (mut client, upstream, task) =
            tunnel(Budget::new(None, Some(1 << 20)), counters, b"").await;
        let data = pattern(4 << 20, 1);
        // Keep the upstream's receive side drained so the tunnel is never stuck on a write.
        let drain = tokio::spawn(async move {
            let mut upstream = upstream;
            let mut sink = Vec::new();
            let _ = upstream.read_to_end(&mut sink).await;
            sink.len()
        });
        let _ = client.write_all(&data).await;
        let ended = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ended,
            Some(Budget::new(None, Some(0)).add_bytes(1).unwrap_err().code())
        );
        drop(client);
        let forwarded = drain.await.unwrap();
        assert!(
            forwarded < 4 << 20,
            "forwarded {forwarded} bytes past the budget"
        );
    }
}
