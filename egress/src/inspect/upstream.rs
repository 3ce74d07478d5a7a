//! A terminated tunnel's (or a gateway client connection's) upstream side: verified TLS to the
//! addresses checked at admission, HTTP/2 or HTTP/1.1 by ALPN, connections owned by that tunnel
//! or client connection alone, and a fresh HTTP/1.1-only connection for each upgrade.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::header::{HeaderValue, HOST};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::Instrument;

use super::Inspection;
use crate::body::ProxyBody;
use crate::dial::{dial, DialOptions};
use crate::proxy::Proxy;
use crate::registry::ClientCtx;

/// Idle HTTP/1.1 upstream connections kept per tunnel.
const MAX_IDLE_H1: usize = 8;

impl GatewayUpstream {
    /// The kept upstream if this request may reuse it, else a new one (which replaces it).
    pub(super) fn for_request(
        &self,
        proxy: &Proxy,
        ctx: &ClientCtx,
        inspection: &Arc<Inspection>,
        (host, port): (&str, u16),
        addrs: Vec<SocketAddr>,
    ) -> Arc<Upstream> {
        let mut sorted = addrs.clone();
        sorted.sort_unstable();
        let key = GatewayKey {
            sandbox: ctx.sandbox.clone(),
            generation: ctx.generation,
            inspection: inspection.clone(),
            host: host.to_owned(),
            port,
            addrs: sorted,
        };
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, upstream)) = slot.as_ref() {
            if *kept == key {
                return upstream.clone();
            }
        }
        let upstream = Arc::new(Upstream::new(proxy, inspection, host, None, addrs));
        *slot = Some((key, upstream.clone()));
        upstream
    }
}

impl fmt::Debug for GatewayUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayUpstream").finish_non_exhaustive()
    }
}

impl PartialEq for GatewayKey {
    fn eq(&self, other: &Self) -> bool {
        self.sandbox == other.sandbox
            && self.generation == other.generation
            && Arc::ptr_eq(&self.inspection, &other.inspection)
            && (self.host.as_str(), self.port) == (other.host.as_str(), other.port)
            && self.addrs == other.addrs
    }
}

/// A request ready to go upstream once its connection's version is known.
pub(super) struct Outgoing {
    pub(super) parts: http::request::Parts,
    pub(super) body: ProxyBody,
    /// The canonical path and query.
    pub(super) origin_form: String,
}

impl Outgoing {
    /// The request as HTTP/1.1 sends it: origin-form, `Host` set to `authority`.
    fn into_h1(self, authority: &str) -> Result<Request<ProxyBody>, &'static str> {
        let Outgoing {
            mut parts,
            body,
            origin_form,
        } = self;
        parts.version = Version::HTTP_11;
        parts.uri = Uri::try_from(origin_form).map_err(|_bad| "bad_request")?;
        let host = HeaderValue::from_str(authority).map_err(|_bad| "bad_request")?;
        parts.headers.insert(HOST, host);
        Ok(Request::from_parts(parts, body))
    }
}

/// This tunnel's upstream connections: one HTTP/2 connection, or up to [`MAX_IDLE_H1`] idle
/// HTTP/1.1 ones. The first uses the socket dialled at CONNECT; later ones dial the same
/// checked addresses again.
pub(super) struct Upstream {
    first: Mutex<Option<TcpStream>>,
    addrs: Vec<SocketAddr>,
    dial: DialOptions,
    host: String,
    tls: TlsConnector,
    /// The same, offering HTTP/1.1 only (for upgrades).
    tls_h1: TlsConnector,
    h2: Mutex<Option<http2::SendRequest<ProxyBody>>>,
    h1: Mutex<Vec<http1::SendRequest<ProxyBody>>>,
}

/// The gateway upstream of one client connection, kept between its requests while they name
/// the same sandbox, generation, inspection, endpoint and checked addresses: a keep-alive client
/// pays for upstream TLS once, and nothing is shared across sandboxes, generations or clients.
#[derive(Default)]
pub(crate) struct GatewayUpstream(Mutex<Option<(GatewayKey, Arc<Upstream>)>>);

/// What a kept gateway upstream may be reused for.
struct GatewayKey {
    sandbox: Option<String>,
    generation: u64,
    inspection: Arc<Inspection>,
    host: String,
    port: u16,
    /// Sorted, so that a resolver's rotation does not count as a change.
    addrs: Vec<SocketAddr>,
}

enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Upstream {
    /// The upstream of `host` through `inspection`'s verified TLS: `first` (dialled at
    /// CONNECT) first, then new dials to the checked `addrs`.
    pub(super) fn new(
        proxy: &Proxy,
        inspection: &Inspection,
        host: &str,
        first: Option<TcpStream>,
        addrs: Vec<SocketAddr>,
    ) -> Self {
        Self {
            first: Mutex::new(first),
            addrs,
            dial: proxy.dial_options().clone(),
            host: host.to_owned(),
            tls: TlsConnector::from(inspection.upstream()),
            tls_h1: TlsConnector::from(inspection.upstream_h1()),
            h2: Mutex::new(None),
            h1: Mutex::new(Vec::new()),
        }
    }

    /// Sends an upgrade request on a fresh HTTP/1.1 connection of its own (never pooled: once
    /// upgraded it carries only this stream).
    pub(super) async fn send_upgrade(
        &self,
        out: Outgoing,
        authority: &str,
    ) -> Result<Response<Incoming>, &'static str> {
        let tls = self.connect_tls(true).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|_failed| "upstream_failed")?;
        tokio::spawn(async move { drop(conn.with_upgrades().await) }.in_current_span());
        let response = sender.send_request(out.into_h1(authority)?).await;
        response.map_err(|_failed| "upstream_failed")
    }

    pub(super) async fn send(
        &self,
        out: Outgoing,
        authority: &str,
    ) -> Result<Response<Incoming>, &'static str> {
        let sender = match self.ready_sender() {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        match sender {
            Sender::H2(mut sender) => {
                let Outgoing {
                    mut parts,
                    body,
                    origin_form,
                } = out;
                parts.version = Version::HTTP_2;
                parts.uri = Uri::try_from(format!("https://{authority}{origin_form}"))
                    .map_err(|_bad| "bad_request")?;
                let response = sender.send_request(Request::from_parts(parts, body)).await;
                response.map_err(|_failed| "upstream_failed")
            }
            Sender::H1(mut sender) => {
                let response = sender.send_request(out.into_h1(authority)?).await;
                let mut idle = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE_H1 {
                    idle.push(sender);
                }
                response.map_err(|_failed| "upstream_failed")
            }
        }
    }

    /// A connection that can take a request now, if one is open.
    fn ready_sender(&self) -> Option<Sender> {
        if let Some(h2) = self
            .h2
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if !h2.is_closed() {
                return Some(Sender::H2(h2.clone()));
            }
        }
        let mut idle = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|s| !s.is_closed());
        let ready = idle.iter().position(http1::SendRequest::is_ready)?;
        Some(Sender::H1(idle.swap_remove(ready)))
    }

    /// A verified TLS connection to a checked address, offering h2 and HTTP/1.1, or HTTP/1.1
    /// alone.
    async fn connect_tls(&self, h1_only: bool) -> Result<TlsStream<TcpStream>, &'static str> {
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let tcp = match first {
            Some(tcp) => tcp,
            None => dial(&self.addrs, &self.dial)
                .await
                .map_err(|_failed| "connect_failed")?,
        };
        let name = ServerName::try_from(self.host.clone()).map_err(|_bad| "bad_request")?;
        let connector = if h1_only { &self.tls_h1 } else { &self.tls };
        connector
            .connect(name, tcp)
            .await
            .map_err(|_refused| "upstream_tls_failed")
    }

    /// Opens a verified TLS connection to a checked address and the HTTP version it agreed.
    async fn connect(&self) -> Result<Sender, &'static str> {
        let tls = self.connect_tls(false).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_failed| "upstream_failed")?;
            tokio::spawn(async move { drop(conn.await) }.in_current_span());
            *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|_failed| "upstream_failed")?;
            tokio::spawn(async move { drop(conn.await) }.in_current_span());
            Ok(Sender::H1(sender))
        }
    }
}
