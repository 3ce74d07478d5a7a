//! Bodies: [`ProxyBody`], the body type of every proxy response; `MeteredBody`, which wraps a
//! streamed request or response body to count its bytes, charge them to the sandbox budget,
//! enforce an idle timeout between frames (responses), stop when the sandbox's generation is
//! revoked, and end the exchange exactly once when the body finishes, fails or is dropped; and
//! `HeadCharge`, which charges the heads around the bodies: the budget counts everything on the
//! wire, not only the payload.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, ConnectionPermit};
use crate::error::EgressError;
use crate::pool::{PoolKey, UpstreamSender};
use crate::proxy::Proxy;
use crate::record::{Counters, Exchange};

/// Boxed error for response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every proxy response.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// Which way a body flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Client → upstream (request body).
    Up,
    /// Upstream → client (response body).
    Down,
}

/// A body stopped by the proxy; the reason is the ledger reason.
#[derive(Debug, thiserror::Error)]
#[error("body stopped by the proxy: {0}")]
pub(crate) struct BodyStopped(pub(crate) &'static str);

/// A counted, budgeted body.
pub(crate) struct MeteredBody<B: Body> {
    inner: B,
    flow: Flow,
    proxy: Arc<Proxy>,
    counters: Arc<Counters>,
    budget: Arc<Budget>,
    /// The sandbox's generation; once cancelled, no further frame passes.
    revoked: CancellationToken,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// For the response body: the exchange (and connection slot) to end with it.
    end: Option<(Exchange, ConnectionPermit)>,
    /// For the response body: the upstream connection, pooled again after a clean end.
    reuse: Option<(PoolKey, UpstreamSender)>,
    ended_by: Option<&'static str>,
}

/// Turns a fixed body into the proxy body type.
pub(crate) fn full(response: Response<Bytes>) -> Response<ProxyBody> {
    response.map(|b| Full::new(b).map_err(|never| match never {}).boxed())
}

// === impl MeteredBody ===

impl<B: Body> MeteredBody<B> {
    /// Wraps a request body (client → upstream).
    pub(crate) fn up(
        inner: B,
        proxy: Arc<Proxy>,
        counters: Arc<Counters>,
        budget: Arc<Budget>,
        revoked: CancellationToken,
    ) -> Self {
        Self {
            inner,
            flow: Flow::Up,
            proxy,
            counters,
            budget,
            revoked,
            idle: None,
            end: None,
            reuse: None,
            ended_by: None,
        }
    }

    /// Wraps a response body (upstream → client); the exchange ends when this body does, and
    /// `upstream`, if given, is pooled again after a clean end.
    pub(crate) fn down(
        inner: B,
        exchange: Exchange,
        permit: ConnectionPermit,
        idle: Duration,
        upstream: Option<(PoolKey, UpstreamSender)>,
        revoked: CancellationToken,
    ) -> Self {
        let proxy = exchange.proxy().clone();
        let counters = exchange.counters().clone();
        let budget = permit.budget().clone();
        Self {
            inner,
            flow: Flow::Down,
            proxy,
            counters,
            budget,
            revoked,
            idle: Some((idle, Box::pin(tokio::time::sleep(idle)))),
            end: Some((exchange, permit)),
            reuse: upstream,
            ended_by: None,
        }
    }

    fn charge(&mut self, n: u64) -> Result<(), BodyStopped> {
        if let Some((idle, sleep)) = &mut self.idle {
            sleep.as_mut().reset(Instant::now() + *idle);
        }
        self.budget.add_bytes(n).map_err(|e| {
            let _ = self.counters.cut.set(e);
            BodyStopped(e.code())
        })?;
        let metrics = self.proxy.metrics();
        match self.flow {
            Flow::Up => {
                self.counters.up.fetch_add(n, Ordering::Relaxed);
                metrics.add_bytes(n, 0);
            }
            Flow::Down => {
                self.counters.down.fetch_add(n, Ordering::Relaxed);
                metrics.add_bytes(0, n);
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        if let Some((exchange, permit)) = self.end.take() {
            drop(permit);
            exchange.finish(self.ended_by);
        }
    }

    /// Pools the upstream connection again once its response was read to the end. hyper may
    /// drop a body whose length is satisfied without polling it to `None`, so `Drop` asks too.
    fn release_upstream(&mut self) {
        if let Some((key, sender)) = self.reuse.take() {
            self.proxy.pool().checkin(key, sender);
        }
    }

    fn stop(&mut self, reason: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended_by = Some(reason);
        self.finish();
        Poll::Ready(Some(Err(Box::new(BodyStopped(reason)))))
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.revoked.is_cancelled() {
            return this.stop("policy_changed");
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if let Err(stopped) = this.charge(n) {
                    return this.stop(stopped.0);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.ended_by = Some("upstream_reset");
                this.finish();
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                this.release_upstream();
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some((_, sleep)) = &mut this.idle {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return this.stop("idle_timeout");
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if self.ended_by.is_none() && self.inner.is_end_stream() {
            self.release_upstream();
        }
        self.finish();
    }
}

/// Charges request and response heads to the sandbox's budget and the exchange's counters.
#[derive(Debug, Clone)]
pub(crate) struct HeadCharge {
    counters: Arc<Counters>,
    budget: Arc<Budget>,
}

impl HeadCharge {
    pub(crate) fn new(counters: &Arc<Counters>, budget: &Arc<Budget>) -> Self {
        Self {
            counters: Arc::clone(counters),
            budget: Arc::clone(budget),
        }
    }

    /// Whether a head of `n` bytes still fits the budget, without charging it.
    pub(crate) fn fits(&self, n: u64) -> Result<(), EgressError> {
        Ok(self.budget.check_bytes(n)?)
    }

    /// A head of `n` bytes going upstream; refused (`max_bytes`) when it would pass the budget,
    /// before a byte of it is sent.
    pub(crate) fn up(&self, n: u64) -> Result<(), EgressError> {
        self.charge(n, &self.counters.up)
    }

    /// A head of `n` bytes going to the client.
    pub(crate) fn down(&self, n: u64) -> Result<(), EgressError> {
        self.charge(n, &self.counters.down)
    }

    fn charge(&self, n: u64, counter: &std::sync::atomic::AtomicU64) -> Result<(), EgressError> {
        self.budget.check_bytes(n)?;
        counter.fetch_add(n, Ordering::Relaxed);
        Ok(self.budget.add_bytes(n)?)
    }
}

/// The size of a request head as hyper writes it: request line, `name: value` lines, blank line.
pub(crate) fn request_head_len<B>(req: &Request<B>) -> u64 {
    // Origin-form for a forwarded request, authority-form for CONNECT.
    let uri = req.uri();
    let target = match uri.path_and_query() {
        Some(path) => path.as_str().len(),
        None => uri.authority().map_or(1, |a| a.as_str().len()),
    };
    // "METHOD target HTTP/1.1\r\n"
    let line = req.method().as_str().len() + 1 + target + 11;
    (line + headers_len(req.headers())) as u64
}

/// The size of a response head: status line, `name: value` lines, blank line, plus the `date`
/// header hyper adds.
pub(crate) fn response_head_len(status: StatusCode, headers: &HeaderMap) -> u64 {
    const DATE: usize = "date: Thu, 01 Jan 1970 00:00:00 GMT\r\n".len();
    // "HTTP/1.1 200 OK\r\n"
    let line = 13 + status.canonical_reason().map_or(0, str::len) + 2;
    let date = if headers.contains_key(http::header::DATE) {
        0
    } else {
        DATE
    };
    (line + headers_len(headers) + date) as u64
}

fn headers_len(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    lines + 2
}

impl<B: Body> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody")
            .field("flow", &self.flow)
            .field("ended_by", &self.ended_by)
            .finish_non_exhaustive()
    }
}
