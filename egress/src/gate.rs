//! `RequestGate`: every byte a client sends passes through here before hyper sees it.
//!
//! Why: hyper answers a request head it cannot parse (a bad header line, a target `http::Uri`
//! rejects, an oversized head) with its own empty `400`/`431` and no reason, and `http::Uri`
//! silently drops a fragment, so `GET http://host/#x` would reach the policy parser as
//! `http://host/`. The gate closes both gaps for *every* request on a connection, not just the
//! first one:
//!
//! - It frames the request stream the way hyper does (head, then a `Content-Length` or chunked
//!   body, then the next head) and checks each head with hyper's own parser (`httparse`, the
//!   same header limit and `Transfer-Encoding`/`Content-Length` rules, `http::Uri` for the
//!   target), plus the proxy's rule that a target never carries `#`.
//! - A head reaches hyper only once it is complete and valid. A bad head is never handed over:
//!   hyper reads end-of-stream instead, finishes the responses it already owes (half-close is
//!   on), and shuts the connection down; at that point the gate writes the JSON refusal (which
//!   also records the ledger event) and lingers briefly so the client can read it.
//! - Bytes are read straight into hyper's buffer and checked there; only a head split across
//!   reads (or what follows a bad one) is held back in the gate until it is whole.
//! - After a CONNECT head nothing more is examined until hyper asks for the next request (the
//!   CONNECT was refused). When a tunnel opens instead, the bytes still held here travel with it
//!   (`into_parts`).
//! - A body the gate cannot follow (chunk syntax hyper will reject) turns checking off for the
//!   rest of the connection: hyper fails that body and closes, so there is no next head.
//! - The whole head must arrive within the header timeout, counted from the moment hyper asks for
//!   it; an idle keep-alive connection then closes quietly, a half-sent head gets `408`.
//! - While it holds part of a head that has not arrived whole, it holds one of the source's
//!   pending-head slots (`sources`); a partial head that finds its source at the cap is refused
//!   `429 head_limit`.
//! - Methods are case-sensitive: a `connect` in any other case is refused as `bad_method`
//!   rather than forwarded as some other method.
//! - Writes to the client: a client that reads nothing for the idle timeout is cut off (the
//!   write fails with `TimedOut`, and the exchange ends as `idle_timeout`), so a stalled reader
//!   cannot hold a response, its upstream connection and its budget slot for ever.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use crate::error::{ClientFault, EgressError};
use crate::proxy::ClientConn;
use crate::sources::{Slot, SourceCaps};
use framing::{check, rejected, Checked, Framing};

mod framing;
mod write;

pub(crate) use framing::{head_verdict, Rejected};
pub(crate) use write::serialize;

/// Bytes read from the client per read while a head is assembled.
const READ_CHUNK: usize = 8 * 1024;
/// After a refusal: how long, and how many bytes, the rest of the client's input is read and
/// discarded, so that closing with unread input does not reset the connection before the client
/// has read the refusal.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;

/// Turns a refusal into the bytes written to the client (recording its ledger event on the way).
pub(crate) type Render = Box<dyn FnOnce(Rejected) -> Vec<u8> + Send>;

/// The gate's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GateLimits {
    /// Largest request head, request line included (`431` beyond it).
    pub(crate) max_head: usize,
    /// How long a head may take to arrive once hyper asks for one.
    pub(crate) head_timeout: Duration,
    /// How long a write to the client may make no progress before the client is cut off.
    pub(crate) write_idle: Duration,
}

/// A refused head waiting for its answer. Dropping it unanswered still records it (the ledger
/// event is made by `render`), so no refusal disappears.
struct Pending {
    render: Option<Render>,
    rejected: Option<Rejected>,
}

/// The connection's share of its source's pending-head cap.
struct Heads {
    caps: Arc<SourceCaps>,
    conn: Arc<ClientConn>,
    /// Held while part of a head is held.
    slot: Option<Slot>,
}

/// The transparent, checking wrapper around a client connection.
pub(crate) struct RequestGate<T> {
    inner: T,
    framing: Framing,
    /// Bytes read from the client and not yet handed to hyper.
    held: BytesMut,
    /// How many bytes at the front of `held` are checked and may be handed over.
    ready: usize,
    limits: GateLimits,
    /// Deadline for the head hyper is waiting for; armed when hyper starts waiting. The timer
    /// is made once per connection and reset per head (a stale one firing is a spurious wake).
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
    pending: Pending,
    /// The refusal being written at shutdown, and how much of it is out.
    reply: Option<(Vec<u8>, usize)>,
    /// After the refusal: when to stop discarding input, and how many bytes still may be.
    linger: Option<(Pin<Box<Sleep>>, usize)>,
    heads: Heads,
    /// Deadline for a write that makes no progress; armed on the first `Pending`.
    write_deadline: Option<Pin<Box<Sleep>>>,
    write_armed: bool,
}

// === impl Pending ===

impl Pending {
    /// The refusal's bytes, once (recording its ledger event).
    fn take_reply(&mut self) -> Option<Vec<u8>> {
        let rejected = self.rejected.take()?;
        let render = self.render.take()?;
        Some(render(rejected))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = self.take_reply();
    }
}

// === impl RequestGate ===

impl<T> RequestGate<T> {
    /// Wraps a client connection. `render` builds (and records) the refusal for a bad head;
    /// `caps` are the per-source caps the connection's partial heads count against.
    pub(crate) fn new(
        inner: T,
        limits: GateLimits,
        render: Render,
        conn: Arc<ClientConn>,
        caps: Arc<SourceCaps>,
    ) -> Self {
        Self {
            inner,
            framing: Framing::Head,
            held: BytesMut::new(),
            ready: 0,
            limits,
            deadline: None,
            armed: false,
            pending: Pending {
                render: Some(render),
                rejected: None,
            },
            reply: None,
            linger: None,
            heads: Heads {
                caps,
                conn,
                slot: None,
            },
            write_deadline: None,
            write_armed: false,
        }
    }

    /// The connection and the bytes read from it that hyper has not seen, for a tunnel that
    /// takes the connection over.
    pub(crate) fn into_parts(self) -> (T, Bytes) {
        let Self {
            inner,
            held,
            mut pending,
            ..
        } = self;
        // The tunnel owns these bytes now; nothing on this connection is refused any more.
        pending.rejected = None;
        (inner, held.freeze())
    }

    /// Checks as much of `held` as possible; `ready` becomes what may be handed over.
    fn examine(&mut self) {
        let rest = self.held.get(self.ready..).unwrap_or_default();
        let checked = check(&mut self.framing, rest, self.limits.max_head);
        self.ready += checked.len;
        self.account(checked);
    }

    /// Applies what a check found: a refusal, and the pending-head slot (held exactly while
    /// part of a head is held).
    fn account(&mut self, checked: Checked) {
        if let Some(rejected) = checked.rejected {
            return self.refuse(rejected);
        }
        let partial = self.framing == Framing::Head && self.held.len() > self.ready;
        if !partial {
            self.heads.slot = None;
            return;
        }
        if self.heads.slot.is_some() {
            return;
        }
        match self.heads.caps.head(self.heads.conn.peer.ip()) {
            Ok(slot) => self.heads.slot = Some(slot),
            Err(over) => {
                let rejected = rejected(&self.held[self.ready..], over.error());
                self.refuse(rejected);
            }
        }
    }

    fn refuse(&mut self, rejected: Rejected) {
        self.framing = Framing::Refused;
        self.pending.rejected = Some(rejected);
    }

    /// Hands checked bytes to hyper.
    fn hand_over(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.ready.min(buf.remaining());
        buf.put_slice(self.held.get(..n).unwrap_or_default());
        self.held.advance(n);
        self.ready -= n;
        // hyper has something to work on; the next head it waits for gets its own timeout.
        self.armed = false;
    }

    /// Arms (once per head) and polls the deadline of the head hyper is waiting for.
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let at = || tokio::time::Instant::now() + self.limits.head_timeout;
        let deadline = match &mut self.deadline {
            Some(deadline) if self.armed => deadline,
            Some(deadline) => {
                deadline.as_mut().reset(at());
                deadline
            }
            None => self
                .deadline
                .insert(Box::pin(tokio::time::sleep_until(at()))),
        };
        self.armed = true;
        deadline.as_mut().poll(cx).is_ready()
    }
}

impl<T: AsyncRead + Unpin> RequestGate<T> {
    /// With nothing held: reads straight into hyper's buffer and keeps there what checks out
    /// (the common case costs no copy); the rest (a partial head, or what follows a refused
    /// one) moves into `held`. `false` when nothing was kept for hyper this time.
    fn read_direct(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<bool>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let Some(new) = buf.filled().get(before..).filter(|new| !new.is_empty()) else {
            // End of stream between requests (a quiet close) or inside a body (hyper reports
            // the incomplete body itself).
            return Poll::Ready(Ok(true));
        };
        let checked = check(&mut self.framing, new, self.limits.max_head);
        let kept = checked.len;
        if let Some(after) = new.get(kept..).filter(|after| !after.is_empty()) {
            self.held.extend_from_slice(after);
            buf.set_filled(before + kept);
        }
        self.account(checked);
        if kept > 0 {
            self.armed = false;
        }
        Poll::Ready(Ok(kept > 0))
    }

    /// Reads more of a head into `held`; returns how many bytes came (0 at end of stream).
    fn read_head(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let start = self.held.len();
        self.held.resize(start + READ_CHUNK, 0);
        let mut space = ReadBuf::new(self.held.get_mut(start..).unwrap_or_default());
        let read = Pin::new(&mut self.inner).poll_read(cx, &mut space);
        let n = space.filled().len();
        self.held.truncate(start + n);
        ready!(read)?;
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RequestGate<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                this.hand_over(buf);
                return Poll::Ready(Ok(()));
            }
            match this.framing {
                // hyper reads end-of-stream: it finishes what it owes, then shuts down.
                Framing::Refused => return Poll::Ready(Ok(())),
                // hyper wants another request, so the CONNECT was refused: back to heads.
                Framing::Connect => this.framing = Framing::Head,
                _ => {}
            }
            if this.held.is_empty() {
                if this.framing == Framing::Head && this.head_expired(cx) {
                    // An idle keep-alive connection: close quietly, as any server does.
                    return Poll::Ready(Ok(()));
                }
                if ready!(this.read_direct(cx, buf))? {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.examine();
            if this.ready > 0 || this.framing != Framing::Head {
                continue;
            }
            // Part of a head is held; the rest has not arrived.
            if this.head_expired(cx) {
                let error = EgressError::fault(
                    ClientFault::HeadTimeout,
                    format!(
                        "the request head did not arrive within {:?}",
                        this.limits.head_timeout
                    ),
                );
                let rejected = rejected(&this.held, error);
                this.refuse(rejected);
                continue;
            }
            if ready!(this.read_head(cx))? == 0 {
                let error = EgressError::client(
                    "incomplete_request",
                    "the connection ended inside a request head",
                );
                let rejected = rejected(&this.held, error);
                this.refuse(rejected);
            }
        }
    }
}

impl<T> std::fmt::Debug for RequestGate<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestGate")
            .field("framing", &self.framing)
            .field("held", &self.held.len())
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
