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

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::decide::parse_request;
use crate::error::EgressError;

/// hyper's default limit on the number of header lines in a request head.
const MAX_HEADERS: usize = 100;
/// hyper's limit on the length of a request target (`414` beyond it).
const MAX_URI_LEN: usize = u16::MAX as usize - 1;
/// hyper's largest acceptable `Content-Length`.
const MAX_BODY_LEN: u64 = u64::MAX - 2;
/// Bytes read from the client per read while a head is assembled.
const READ_CHUNK: usize = 8 * 1024;
/// After a refusal: how long, and how many bytes, the rest of the client's input is read and
/// discarded, so that closing with unread input does not reset the connection before the client
/// has read the refusal.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// A request head the gate refused: what the ledger and the refusal need.
#[derive(Debug)]
pub(crate) struct Rejected {
    /// The method as sent, or `-` when the line did not get that far.
    pub(crate) method: String,
    /// The request target as sent, or the start of the line.
    pub(crate) target: String,
    /// Why.
    pub(crate) error: EgressError,
}

/// Turns a refusal into the bytes written to the client (recording its ledger event on the way).
pub(crate) type Render = Box<dyn FnOnce(Rejected) -> Vec<u8> + Send>;

/// The gate's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GateLimits {
    /// Largest request head, request line included (`431` beyond it).
    pub(crate) max_head: usize,
    /// How long a head may take to arrive once hyper asks for one.
    pub(crate) head_timeout: Duration,
}

/// Where the client's byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Expecting a request head.
    Head,
    /// Inside a `Content-Length` body with this many bytes to go (never zero).
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Past a CONNECT head: hold everything until hyper asks for the next request.
    Connect,
    /// Past a body the gate cannot follow: bytes pass unchecked.
    Unchecked,
    /// A head was refused: hyper reads end-of-stream from here on.
    Refused,
}

/// Position inside a chunked body, following hyper's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before the first hex digit of a size line.
    Start,
    /// In the hex size.
    Size(u64),
    /// Blanks after the size.
    SizeLws(u64),
    /// In a chunk extension (after `;`), with its length so far.
    Ext(u64, u32),
    /// After the size line's CR.
    SizeLf(u64),
    /// In chunk data with this many bytes to go (never zero).
    Data(u64),
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: an empty line ends the body, anything else is a trailer line.
    EndCr,
    EndLf,
    /// In a trailer line, then its LF.
    Trailer,
    TrailerLf,
}

/// What checking the front of the held bytes found.
#[derive(Debug)]
enum HeadCheck {
    /// Not a complete head yet, and nothing wrong so far.
    Partial,
    /// A complete, valid head of `len` bytes, followed by `next`.
    Complete { len: usize, next: Framing },
    /// A head that must be refused.
    Bad(Rejected),
}

/// A refused head waiting for its answer. Dropping it unanswered still records it (the ledger
/// event is made by `render`), so no refusal disappears.
struct Pending {
    render: Option<Render>,
    rejected: Option<Rejected>,
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
    /// Wraps a client connection. `render` builds (and records) the refusal for a bad head.
    pub(crate) fn new(inner: T, limits: GateLimits, render: Render) -> Self {
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
        let (checked, rejected) = check(&mut self.framing, rest, self.limits.max_head);
        self.ready += checked;
        if let Some(rejected) = rejected {
            self.refuse(rejected);
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
        let (kept, rejected) = check(&mut self.framing, new, self.limits.max_head);
        if let Some(after) = new.get(kept..).filter(|after| !after.is_empty()) {
            self.held.extend_from_slice(after);
            buf.set_filled(before + kept);
        }
        if let Some(rejected) = rejected {
            self.refuse(rejected);
        }
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

    /// After the refusal is out: read and discard the client's remaining input for a moment,
    /// so that closing with unread input does not reset the connection under the refusal.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (deadline, left) = self
            .linger
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        let mut scratch = [0u8; 4096];
        while *left > 0 && deadline.as_mut().poll(cx).is_pending() {
            let mut sink = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut sink) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !sink.filled().is_empty() => {
                    *left = left.saturating_sub(sink.filled().len());
                }
                Poll::Ready(_) => break,
            }
        }
        Poll::Ready(())
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
                let error = EgressError::client(
                    "header_timeout",
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

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RequestGate<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// hyper shuts the connection down once it has written everything it owes; a refusal goes
    /// out first.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.reply.is_none() {
            this.reply = this.pending.take_reply().map(|bytes| (bytes, 0));
        }
        let Some((bytes, sent)) = &mut this.reply else {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        };
        while let Some(rest) = bytes.get(*sent..).filter(|rest| !rest.is_empty()) {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        ready!(this.poll_linger(cx));
        Poll::Ready(Ok(()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

/// Runs the framing over `bytes`: returns how many of them are checked and may go to hyper,
/// and the refusal when a bad head follows them.
fn check(framing: &mut Framing, bytes: &[u8], max_head: usize) -> (usize, Option<Rejected>) {
    let mut pos = 0;
    while let Some(rest) = bytes.get(pos..).filter(|rest| !rest.is_empty()) {
        match *framing {
            Framing::Head => match check_head(rest, max_head) {
                HeadCheck::Partial => break,
                HeadCheck::Complete { len, next } => {
                    pos += len;
                    *framing = next;
                }
                HeadCheck::Bad(rejected) => return (pos, Some(rejected)),
            },
            Framing::Body(_) | Framing::Chunked(_) | Framing::Unchecked => {
                pos += advance(framing, rest);
            }
            Framing::Connect | Framing::Refused => break,
        }
    }
    (pos, None)
}

/// Moves the framing through body bytes; returns how many belong to the current body (all of
/// them unless the body ends inside `bytes` and a head follows).
fn advance(framing: &mut Framing, bytes: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(rest) = bytes.get(pos..).filter(|rest| !rest.is_empty()) {
        match *framing {
            Framing::Body(left) | Framing::Chunked(Chunk::Data(left)) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                pos += take;
                let left = left - take as u64;
                *framing = match (*framing, left) {
                    (Framing::Body(_), 0) => Framing::Head,
                    (Framing::Body(_), left) => Framing::Body(left),
                    (_, 0) => Framing::Chunked(Chunk::DataCr),
                    (_, left) => Framing::Chunked(Chunk::Data(left)),
                };
            }
            Framing::Chunked(state) => {
                pos += 1;
                *framing = match chunk_step(state, rest[0]) {
                    Some(Some(next)) => Framing::Chunked(next),
                    Some(None) => Framing::Head,
                    None => Framing::Unchecked,
                };
            }
            Framing::Unchecked => return bytes.len(),
            Framing::Head | Framing::Connect | Framing::Refused => break,
        }
    }
    pos
}

/// One byte of chunked framing: `Some(Some(next))` to go on, `Some(None)` at the end of the
/// body, `None` where hyper's decoder fails.
fn chunk_step(state: Chunk, b: u8) -> Option<Option<Chunk>> {
    let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
    let next = match (state, b) {
        (Chunk::Start, b) => Chunk::Size(hex(b)?),
        (Chunk::Size(n), b) if hex(b).is_some() => {
            Chunk::Size(n.checked_mul(16)?.checked_add(hex(b)?)?)
        }
        (Chunk::Size(n) | Chunk::SizeLws(n), b'\t' | b' ') => Chunk::SizeLws(n),
        (Chunk::Size(n) | Chunk::SizeLws(n), b';') => Chunk::Ext(n, 0),
        (Chunk::Size(n) | Chunk::SizeLws(n) | Chunk::Ext(n, _), b'\r') => Chunk::SizeLf(n),
        (Chunk::Ext(_, _), b'\n') => return None,
        (Chunk::Ext(n, len), _) => Chunk::Ext(n, len.checked_add(1).filter(|l| *l < 16 * 1024)?),
        (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
        (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Start,
        (Chunk::EndCr, b'\r') => Chunk::EndLf,
        (Chunk::EndLf, b'\n') => return Some(None),
        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
        (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
        (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
        _ => return None,
    };
    Some(Some(next))
}

/// Checks the request head at the front of `bytes` as hyper would parse it, plus the proxy's
/// own rule for targets.
fn check_head(bytes: &[u8], max_head: usize) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Partial) if bytes.len() <= max_head => return HeadCheck::Partial,
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(_) => return HeadCheck::Bad(rejected(bytes, too_large(max_head))),
        Err(error) => {
            let error = match error {
                httparse::Error::Token if req.method.is_none() => {
                    EgressError::client("bad_method", "the request method is not a valid token")
                }
                httparse::Error::Token => target_error(bytes),
                httparse::Error::Version => EgressError::client(
                    "bad_version",
                    "only HTTP/1.0 and HTTP/1.1 requests are served",
                ),
                httparse::Error::TooManyHeaders => EgressError::client(
                    "header_too_large",
                    format!("the request head has more than {MAX_HEADERS} header lines"),
                ),
                other => {
                    EgressError::client("bad_header", format!("malformed request head: {other}"))
                }
            };
            return HeadCheck::Bad(rejected(bytes, error));
        }
    };
    match check_parsed(&req) {
        Ok(next) => HeadCheck::Complete { len, next },
        Err(error) => HeadCheck::Bad(rejected(bytes, error)),
    }
}

/// hyper's checks of a complete head, and what follows it.
fn check_parsed(req: &httparse::Request<'_, '_>) -> Result<Framing, EgressError> {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(EgressError::internal(
            "a complete head without a request line",
        ));
    };
    if target.len() > MAX_URI_LEN {
        return Err(EgressError::client(
            "uri_too_long",
            format!("the request target is longer than {MAX_URI_LEN} bytes"),
        ));
    }
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(EgressError::client(
            "bad_method",
            "the request method is not valid",
        ));
    }
    // http::Uri drops a fragment silently and rejects what the policy parser explains better.
    if target.contains('#') || http::Uri::try_from(target).is_err() {
        return Err(explain_target(method, target));
    }
    let http11 = req.version == Some(1);
    // Transfer-Encoding and Content-Length as hyper reads them: a later Transfer-Encoding
    // discards an earlier Content-Length, a Content-Length after it is ignored, the last
    // Transfer-Encoding header decides whether the body is chunked.
    let mut chunked = None;
    let mut length = None;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(bad_header(
                    "an HTTP/1.0 request cannot have Transfer-Encoding",
                ));
            }
            chunked = Some(ends_in_chunked(header.value));
            length = None;
        } else if header.name.eq_ignore_ascii_case("content-length") && chunked.is_none() {
            let n =
                digits(header.value).ok_or_else(|| bad_header("Content-Length is not a number"))?;
            if length.is_some_and(|previous| previous != n) {
                return Err(bad_header("conflicting Content-Length headers"));
            }
            if n > MAX_BODY_LEN {
                return Err(bad_header("Content-Length is too large"));
            }
            length = Some(n);
        }
    }
    let body = match (chunked, length) {
        (Some(false), _) => {
            return Err(bad_header("Transfer-Encoding does not end in chunked"));
        }
        (Some(true), _) => Framing::Chunked(Chunk::Start),
        (None, Some(n)) if n > 0 => Framing::Body(n),
        (None, _) => Framing::Head,
    };
    Ok(if method == "CONNECT" {
        Framing::Connect
    } else {
        body
    })
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked` (hyper: visible ASCII only).
fn ends_in_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    visible
        && std::str::from_utf8(value).is_ok_and(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        })
}

/// A `Content-Length` value: decimal digits only, as hyper's server accepts it.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn bad_header(message: &str) -> EgressError {
    EgressError::client("bad_header", message)
}

fn too_large(max_head: usize) -> EgressError {
    EgressError::client(
        "header_too_large",
        format!("the request head is larger than {max_head} bytes"),
    )
}

/// The refusal for a target hyper could not take: the policy parser's reason where it has one.
fn target_error(bytes: &[u8]) -> EgressError {
    let (method, target) = request_line(bytes);
    explain_target(&method, &target)
}

fn explain_target(method: &str, target: &str) -> EgressError {
    match parse_request(method, target, &[]) {
        Err(error) => error,
        Ok(_) if target.contains('#') => EgressError::client(
            "fragment",
            "fragments are not allowed in the request target",
        ),
        Ok(_) => EgressError::client("bad_target", "the request target is malformed"),
    }
}

/// The method and target of the line at the front of `bytes`, as far as they can be told
/// (for the ledger and for explaining a bad target).
fn request_line(bytes: &[u8]) -> (String, String) {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().filter(|m| !m.is_empty() && m.len() <= 32);
    let target = parts.next().unwrap_or_default();
    let target = target.get(..1024).unwrap_or(target);
    (
        method.map_or_else(
            || "-".to_owned(),
            |m| String::from_utf8_lossy(m).into_owned(),
        ),
        String::from_utf8_lossy(target).into_owned(),
    )
}

fn rejected(bytes: &[u8], error: EgressError) -> Rejected {
    let (method, target) = request_line(bytes);
    Rejected {
        method,
        target,
        error,
    }
}

/// A refusal as HTTP/1.1 bytes, closing the connection.
pub(crate) fn serialize(response: &Response<Bytes>) -> Vec<u8> {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        response.body().len()
    )
    .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(response.body());
    out
}

#[cfg(test)]
mod tests;
