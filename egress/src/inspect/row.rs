//! The ledger row of each request inside an inspected tunnel, under the tunnel's own row.
//!
//! A [`Row`] starts with the request and is recorded exactly once: when the response body the
//! client gets ends or fails, or when the request is dropped unanswered (the client went away:
//! status 0, reason `client_gone`). It carries the method, the canonical path (never the query
//! string; cut to [`MAX_PATH`] bytes on a character boundary), the status the client got, the
//! request's and response's decrypted body bytes, the duration, the matched L7 rule or the
//! refusal code, and the *name* of the secret whose credential was added. The tunnel's own row
//! keeps the tunnel's total bytes (TLS included), so summing bytes over both would count them
//! twice: the controller's summary counts the tunnel rows only.
//!
//! A response stream that delivers no frame for the proxy's idle timeout is cut (reason
//! `idle_timeout`), whatever the tunnel's other streams do: HTTP/2 multiplexes many streams on
//! one tunnel, and one busy stream must not keep a stalled one open.
//!
//! An identified sandbox's request takes its own spool slot before anything goes upstream
//! ([`Rows::start`]); without room the request is refused in the tunnel (`429 ledger_full`,
//! as outside one).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use airlock_wire::{Outcome, MAX_PATH};
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, ProxyBody};
use crate::ledger::{InnerRequest, LedgerEvent, LedgerKey, Reservation};
use crate::proxy::Proxy;

/// Longest method name recorded (extension methods can be long).
const MAX_METHOD: usize = 32;

/// What every request row of one tunnel starts from.
#[derive(Debug, Clone)]
pub(super) struct Rows {
    proxy: Arc<Proxy>,
    base: LedgerEvent,
}

/// The ledger row of one request, recorded once (see the module docs).
#[derive(Debug)]
pub(super) struct Row {
    proxy: Arc<Proxy>,
    event: Option<LedgerEvent>,
    started: Instant,
    up: Arc<AtomicU64>,
    down: u64,
    reservation: Option<Reservation>,
    /// The sandbox's ledger share was full: the request must be refused.
    no_room: bool,
}

// === impl Rows ===

impl Rows {
    /// `base` is the tunnel's [`crate::record::Exchange::inspect`] template.
    pub(super) fn new(proxy: Arc<Proxy>, base: LedgerEvent) -> Self {
        Self { proxy, base }
    }

    /// Starts the row of a `method` request. An identified sandbox's row takes its spool slot
    /// first; without room, [`Row::no_room`] says so and the request must be refused.
    pub(super) fn start(&self, method: &str) -> Row {
        let mut event = self.base.clone();
        event.method = method.chars().take(MAX_METHOD).collect();
        event.start = SystemTime::now();
        if let Some(inspected) = &mut event.inspected {
            inspected.request = Some(InnerRequest {
                path: None,
                status: 0,
                credential: None,
            });
        }
        let reservation = match &event.sandbox {
            Some(id) => self
                .proxy
                .ledger_arc()
                .reserve(LedgerKey::Sandbox(Arc::from(id.as_str())))
                .ok(),
            None => None,
        };
        let no_room = event.sandbox.is_some() && reservation.is_none();
        event.reason = "client_gone";
        Row {
            proxy: self.proxy.clone(),
            event: Some(event),
            started: Instant::now(),
            up: Arc::new(AtomicU64::new(0)),
            down: 0,
            reservation,
            no_room,
        }
    }
}

// === impl Row ===

impl Row {
    /// Whether the sandbox's ledger share was full when the request started.
    pub(super) fn no_room(&self) -> bool {
        self.no_room
    }

    /// Records the canonical path (already free of its query string).
    pub(super) fn set_path(&mut self, path: &str) {
        if let Some(request) = self.request() {
            request.path = Some(truncate(path, MAX_PATH).to_owned());
        }
    }

    /// The request is allowed by `rule`.
    pub(super) fn allow(&mut self, rule: String) {
        if let Some(event) = &mut self.event {
            event.decision = Outcome::Allow;
            event.reason = "allowed";
            event.rule = Some(rule);
        }
    }

    /// The request is refused with `code` (`rule_denied`, `misdirected_request`, a
    /// canonicaliser code, `ledger_full`).
    pub(super) fn deny(&mut self, code: &'static str) {
        if let Some(event) = &mut self.event {
            event.decision = Outcome::Deny;
            event.reason = code;
        }
    }

    /// An allowed request that failed with `code` (the upstream could not be reached).
    pub(super) fn fail(&mut self, code: &'static str) {
        if let Some(event) = &mut self.event {
            event.reason = code;
        }
    }

    /// The credential of secret `name` was added.
    pub(super) fn credential(&mut self, name: &str) {
        if let Some(request) = self.request() {
            request.credential = Some(name.to_owned());
        }
    }

    /// The request body, its bytes counted as this request's bytes up.
    pub(super) fn count_up(&self, body: ProxyBody) -> ProxyBody {
        use http_body_util::BodyExt;
        Counted {
            inner: body,
            up: Some(self.up.clone()),
            row: None,
            idle: None,
        }
        .boxed()
    }

    /// The response the client gets: its status is recorded, its body's bytes counted, and
    /// the row recorded when the body ends, fails, or is dropped.
    pub(super) fn answer(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        use http_body_util::BodyExt;
        let status = response.status().as_u16();
        if let Some(request) = self.request() {
            request.status = status;
        }
        let (parts, body) = response.into_parts();
        let idle = self.proxy.config().idle_timeout;
        let body = Counted {
            inner: body,
            up: None,
            row: Some(self),
            idle: Some(StreamIdle::new(idle)),
        };
        Response::from_parts(parts, body.boxed())
    }

    fn request(&mut self) -> Option<&mut InnerRequest> {
        self.event.as_mut()?.inspected.as_mut()?.request.as_mut()
    }

    fn record(&mut self, ended: Option<&'static str>) {
        let Some(mut event) = self.event.take() else {
            return;
        };
        if let Some(reason) = ended {
            event.reason = reason;
        }
        event.bytes_up = self.up.load(Ordering::Relaxed);
        event.bytes_down = self.down;
        event.duration = self.started.elapsed();
        self.proxy
            .metrics()
            .record_decision(event.decision.as_str(), event.reason);
        let ledger = self.proxy.ledger();
        match self.reservation.take() {
            Some(reservation) => ledger.record_reserved(event, reservation),
            None => ledger.record(event),
        }
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        let unanswered = self
            .event
            .as_ref()
            .and_then(|e| e.inspected.as_ref()?.request.as_ref())
            .is_some_and(|r| r.status == 0);
        self.record(unanswered.then_some("client_gone"));
    }
}

/// A body whose data bytes are counted: up into a shared counter, or down into its row, which
/// it records when the body ends or fails (and, through the row's `Drop`, when it is dropped
/// first: the client went away mid-body).
struct Counted {
    inner: ProxyBody,
    up: Option<Arc<AtomicU64>>,
    row: Option<Row>,
    /// Responses only: the stream's own idle timeout.
    idle: Option<StreamIdle>,
}

/// A stream's idle timeout. Frames only stamp the time; the timer is moved when it fires
/// early, so a fast stream does not touch the timer wheel per frame.
struct StreamIdle {
    limit: Duration,
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl StreamIdle {
    fn new(limit: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            limit,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    fn frame(&mut self) {
        self.last = tokio::time::Instant::now();
    }

    /// Whether the stream has been idle for the limit; otherwise arms the timer for `cx`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.limit;
            if tokio::time::Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if let Some(up) = &this.up {
                    up.fetch_add(n, Ordering::Relaxed);
                }
                if let Some(row) = &mut this.row {
                    row.down += n;
                }
                if let Some(idle) = &mut this.idle {
                    idle.frame();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut row) = this.row.take() {
                    row.record(Some("upstream_failed"));
                }
            }
            Poll::Ready(None) => {
                if let Some(mut row) = this.row.take() {
                    row.record(None);
                }
            }
            Poll::Pending => {
                if this.idle.as_mut().is_some_and(|idle| idle.expired(cx)) {
                    this.idle = None;
                    if let Some(mut row) = this.row.take() {
                        row.record(Some("idle_timeout"));
                    }
                    return Poll::Ready(Some(Err("idle_timeout".into())));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(mut row) = self.row.take() {
            // Dropped before its end: the client stopped reading (or went away).
            let ended = if self.inner.is_end_stream() {
                None
            } else {
                Some("client_gone")
            };
            row.record(ended);
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn paths_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("/abc", 256), "/abc");
        assert_eq!(truncate("/abcdef", 4), "/abc");
        // 'é' is two bytes: a cut through it backs off to before it.
        assert_eq!(truncate("/aé", 3), "/a");
        let long = format!("/{}", "x".repeat(400));
        assert_eq!(truncate(&long, 256).len(), 256);
    }
}
