//! One connection: its IO wrapped so every byte is seen, hyper's HTTP/1 server over it, and
//! a watchdog beside it.
//!
//! The watchdog's rules, checked a few times per header timeout:
//! - no request in flight and a head begun (bytes after the last response, or the connection
//!   just accepted) for longer than the header timeout: closed (a slow or half-sent head);
//! - no request in flight, no head begun and no byte either way for the keep-alive idle time:
//!   closed (hyper's own header timer would start at idle and close a keep-alive connection
//!   after the header timeout; this one leaves it the idle time);
//! - a request is in flight from the moment hyper hands over its head until its response body
//!   is done, so a streaming answer (followed logs, server-sent events) is never cut; the
//!   request timeout (`super::super::deadline`) bounds the non-streaming ones.
//!
//! A WebSocket takes the IO over: hyper's connection future ends, and the IO, holding the
//! connection's slots, lives on in the WebSocket task.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::debug;

use super::sources::SourceSlot;
use crate::config::HttpConfig;

/// The per-connection timing rules.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    header_timeout: Duration,
    keepalive_idle: Duration,
    tick: Duration,
}

/// The slots a connection holds until its IO is dropped.
#[derive(Debug)]
pub(super) struct Permit {
    pub(super) _global: OwnedSemaphorePermit,
    pub(super) _source: SourceSlot,
}

/// One accepted connection, ready to run.
pub(super) struct Connection {
    pub(super) peer: SocketAddr,
    pub(super) app: Router,
    pub(super) settings: Arc<Settings>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) stop: watch::Receiver<bool>,
}

/// What the watchdog reads: times in milliseconds since the connection began.
#[derive(Debug)]
struct Activity {
    base: Instant,
    /// The last byte read or written.
    last_io: AtomicU64,
    /// When the head now awaited began (plus one; 0: none begun).
    head_since: AtomicU64,
    /// Requests handed to the app whose response bodies are not done.
    in_flight: AtomicUsize,
}

/// What the watchdog decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    HeadTimeout,
    Idle,
}

/// The IO, counting activity and holding the slots.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: Permit,
}

/// Ends a request's in-flight count when dropped (with the response body).
struct InFlight(Arc<Activity>);

/// A response body that holds its request's [`InFlight`].
struct Guarded {
    inner: Body,
    _in_flight: InFlight,
}

// === impl Settings ===

impl From<&HttpConfig> for Settings {
    fn from(http: &HttpConfig) -> Self {
        let tick =
            (http.header_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        Self {
            header_timeout: http.header_timeout,
            keepalive_idle: http.keepalive_idle,
            tick,
        }
    }
}

// === impl Connection ===

impl Connection {
    /// Serves `stream` until it closes, times out, or shutdown asks it to finish.
    pub(super) async fn run(self, stream: TcpStream, permit: Permit) {
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
            _permit: permit,
        };
        match self.tls.clone() {
            None => self.http(io, activity).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(io);
                match tokio::time::timeout(self.settings.header_timeout, handshake).await {
                    Ok(Ok(tls)) => self.http(tls, activity).await,
                    Ok(Err(error)) => {
                        debug!(client.addr = %self.peer, %error, "TLS handshake failed")
                    }
                    Err(_elapsed) => debug!(client.addr = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn http<I>(mut self, io: I, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let app = self.app.clone();
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = requests.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|inner| Guarded {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            // The watchdog owns the head timeout (hyper's would also cut idle keep-alives).
            .header_read_timeout(None);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let mut tick = tokio::time::interval(self.settings.tick);
        let mut draining = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        debug!(client.addr = %peer, %error, "Connection ended with an error");
                    }
                    return;
                }
                changed = self.stop.changed(), if !draining => {
                    drop(changed);
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = tick.tick() => match activity.verdict(Instant::now(), &self.settings) {
                    Verdict::Fine => {}
                    Verdict::HeadTimeout => {
                        debug!(client.addr = %peer, "Request head not received in time; closing");
                        return;
                    }
                    Verdict::Idle => {
                        debug!(client.addr = %peer, "Idle keep-alive connection; closing");
                        return;
                    }
                },
            }
        }
    }
}

// === impl Activity ===

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_io: AtomicU64::new(0),
            // A new connection owes its first head within the header timeout.
            head_since: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self, bytes: usize) {
        let now = self.millis(Instant::now());
        self.last_io.store(now, Ordering::Relaxed);
        if bytes > 0 && self.in_flight.load(Ordering::Acquire) == 0 {
            // Only the first byte after a response starts the head's clock.
            let _already_begun =
                self.head_since
                    .compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io
            .store(self.millis(Instant::now()), Ordering::Relaxed);
    }

    /// A head arrived: a request is in flight until the returned guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    fn verdict(&self, now: Instant, settings: &Settings) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Fine;
        }
        let now = self.millis(now);
        let since = |ms: u64| Duration::from_millis(now.saturating_sub(ms));
        match self.head_since.load(Ordering::Acquire) {
            0 if since(self.last_io.load(Ordering::Relaxed)) > settings.keepalive_idle => {
                Verdict::Idle
            }
            0 => Verdict::Fine,
            begun if since(begun - 1) > settings.header_timeout => Verdict::HeadTimeout,
            _ => Verdict::Fine,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.wrote();
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Tracked ===

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.read(buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.activity.wrote();
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// === impl Guarded ===

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            header_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            tick: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heads_idles_and_requests_in_flight() {
        let settings = settings();
        let activity = Arc::new(Activity::new());
        let at = |s: u64| activity.base + Duration::from_secs(s);
        // A new connection owes its head within the header timeout.
        assert_eq!(activity.verdict(at(10), &settings), Verdict::Fine);
        assert_eq!(activity.verdict(at(11), &settings), Verdict::HeadTimeout);
        // A request in flight is never cut, however long its answer streams.
        let request = activity.begin();
        assert_eq!(activity.verdict(at(500), &settings), Verdict::Fine);
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(request);
        // Then the connection is idle: the keep-alive time applies, not the head timeout.
        assert_eq!(activity.verdict(at(60), &settings), Verdict::Fine);
        assert_eq!(activity.verdict(at(66), &settings), Verdict::Idle);
        // A byte of the next head starts the head timer.
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.read(1);
        assert_eq!(activity.verdict(at(16), &settings), Verdict::Fine);
        assert_eq!(activity.verdict(at(17), &settings), Verdict::HeadTimeout);
    }
}
