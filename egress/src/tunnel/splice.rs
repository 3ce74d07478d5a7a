//! The bytes of an open tunnel: both directions copied at once with half-close, each chunk
//! charged to the sandbox's budget (and refused once the budget is spent or the generation
//! revoked) before it is written. Bytes move with zero-copy `splice(2)` through a pipe, and
//! through a user-space buffer where the kernel cannot splice. Pipes and copy buffers exist only
//! while data is flowing, so an idle tunnel holds two sockets and a small task, not pipes or
//! buffers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rustix::io::Errno;
use rustix::pipe::{self, PipeFlags, SpliceFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::metrics::Metrics;
use crate::record::Counters;

/// Largest chunk moved per read (the default pipe capacity).
const CHUNK: usize = 64 * 1024;

/// Pipe capacity asked for while a tunnel direction has data (the usual `pipe-max-size`).
const PIPE_SIZE: usize = 1024 * 1024;

/// Flags for every splice: never block the runtime, move pages rather than copy when possible.
const SPLICE_FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Why a tunnel stopped early; `None` means both sides closed normally.
pub(super) type Ended = Option<&'static str>;

/// Last-activity clock shared by both directions, for the idle timeout.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

/// One copy direction's accounting.
#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    Up,
    Down,
}

/// What a copy direction charges its bytes to.
#[derive(Debug)]
pub(super) struct Meter<'a> {
    pub(super) direction: Direction,
    pub(super) counters: &'a Counters,
    pub(super) budget: &'a Budget,
    pub(super) metrics: &'a Metrics,
    pub(super) activity: &'a Activity,
    /// The sandbox's generation: once cancelled, no further chunk is written.
    pub(super) revoked: &'a CancellationToken,
}

/// Copies both directions until both are done or one fails.
pub(super) async fn splice(
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
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    pub(crate) async fn idle(&self, idle: Duration) {
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
mod tests;
