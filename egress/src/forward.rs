//! Forward: absolute-form HTTP/1.1 requests.
//!
//! An admitted request is rewritten to
//! origin-form, its `Host` set to the canonical target (`host[:port]`, the *name* for a name,
//! port omitted when 80), hop-by-hop headers are removed (the fixed list plus every header named
//! in `Connection`, `Proxy-Authorization` included), `Via` is added, and both bodies are
//! streamed through `MeteredBody`. Each request is judged on its own; it may then reuse an idle
//! connection to one of *its* checked addresses (see `pool`), else it dials.
//!
//! The sandbox's byte budget counts the request head as sent upstream and the response head as
//! sent to the client, not only the bodies, so headers cannot carry data past `max_bytes`. The
//! generation is checked again once the upstream connection is ready, so a request admitted
//! under a policy that was replaced meanwhile never sends a byte.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock_egress_policy::Target;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, VIA};
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::admit::{still_current, Admitted};
use crate::body::{full, request_head_len, response_head_len, HeadCharge, MeteredBody, ProxyBody};
use crate::budget::ConnectionPermit;
use crate::dial::dial;
use crate::error::EgressError;
use crate::pool::{PoolKey, UpstreamSender};
use crate::proxy::Proxy;
use crate::record::Exchange;
use crate::registry::ClientCtx;
use crate::request::ParsedRequest;

/// The `Via` entry this proxy adds.
const VIA_ENTRY: &str = "1.1 airlock-egress";

/// Headers that describe one hop and never cross the proxy (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwards one admitted absolute-form request and answers with the upstream's response.
pub(crate) async fn forward(
    proxy: Arc<Proxy>,
    admitted: Admitted,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Admitted {
        mut exchange,
        parsed,
        ctx,
        addrs,
        permit,
    } = admitted;
    let outgoing = match outgoing(&proxy, &exchange, &ctx, &permit, req, &parsed) {
        Ok(outgoing) => outgoing,
        Err(error) => return full(exchange.refuse(&error)),
    };
    let charge = outgoing.charge.clone();
    let (key, sender, response) = match send(&proxy, &ctx, &addrs, &mut exchange, outgoing).await {
        Ok(sent) => sent,
        Err(error) => return full(exchange.refuse(&error)),
    };
    let (mut parts, body) = response.into_parts();
    if let Err(error) = answer_head(&mut parts, &charge, &ctx) {
        return full(exchange.refuse(&error));
    }
    let idle = proxy.config().idle_timeout;
    let upstream = Some((key, sender));
    let body = MeteredBody::down(body, exchange, permit, idle, upstream, ctx.revoked.clone());
    Response::from_parts(parts, body.boxed())
}

/// The request as it goes upstream, metered. Refused before any dial when its head alone would
/// pass the budget; the head is charged only when it is sent.
fn outgoing(
    proxy: &Arc<Proxy>,
    exchange: &Exchange,
    ctx: &ClientCtx,
    permit: &ConnectionPermit,
    req: Request<Incoming>,
    parsed: &ParsedRequest,
) -> Result<Outgoing, EgressError> {
    let upstream_req = rewrite_request(req, &parsed.target, parsed.path())?;
    let charge = HeadCharge::new(exchange.counters(), permit.budget());
    let head = request_head_len(&upstream_req);
    charge.fits(head)?;
    let req = upstream_req.map(|body| {
        let (counters, budget) = (exchange.counters().clone(), permit.budget().clone());
        MeteredBody::up(body, proxy.clone(), counters, budget, ctx.revoked.clone())
    });
    Ok(Outgoing {
        req,
        head,
        charge,
        charged: false,
    })
}

/// The response head as it goes to the client: hop-by-hop headers out, `Via` in, charged to the
/// budget, and only while the generation it was admitted under is still current.
fn answer_head(
    parts: &mut http::response::Parts,
    charge: &HeadCharge,
    ctx: &ClientCtx,
) -> Result<(), EgressError> {
    strip_hop_by_hop(&mut parts.headers);
    add_via(&mut parts.headers);
    charge.down(response_head_len(parts.status, &parts.headers))?;
    still_current(ctx)
}

/// Sends the request on an idle pooled connection to a checked address, or on a fresh one.
/// A request a pooled connection never sent (it closed meanwhile) goes out on a fresh one.
async fn send(
    proxy: &Proxy,
    ctx: &ClientCtx,
    addrs: &[SocketAddr],
    exchange: &mut Exchange,
    mut out: Outgoing,
) -> Result<(PoolKey, UpstreamSender, Response<Incoming>), EgressError> {
    let idle = proxy.config().idle_timeout;
    let pooled = proxy
        .pool()
        .checkout(addrs, ctx.sandbox.as_deref(), ctx.generation);
    if let Some((key, mut sender)) = pooled {
        if sender.ready().await.is_ok() {
            out.release(ctx)?;
            exchange.set_addr(Some(key.addr));
            match timed(idle, sender.try_send_request(out.req)).await? {
                Ok(response) => return Ok((key, sender, response)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => out.req = unsent,
                    None => return Err(upstream_failed(&error.into_error())),
                },
            }
        }
    }
    let upstream = dial(addrs, proxy.dial_options()).await?;
    exchange.set_addr(upstream.peer_addr().ok());
    let key = PoolKey {
        addr: upstream.peer_addr().map_err(|error| {
            tracing::debug!(%error, "Upstream connection closed at once");
            EgressError::upstream("connect_failed", "the destination closed the connection")
        })?,
        sandbox: ctx.sandbox.clone(),
        generation: ctx.generation,
    };
    let mut sender = handshake(proxy, ctx, upstream).await?;
    out.release(ctx)?;
    let response = timed(idle, sender.send_request(out.req))
        .await?
        .map_err(|e| upstream_failed(&e))?;
    Ok((key, sender, response))
}

/// The request about to go upstream, and its head's charge.
struct Outgoing {
    req: Request<MeteredBody<Incoming>>,
    head: u64,
    charge: HeadCharge,
    charged: bool,
}

impl Outgoing {
    /// Right before the first byte goes out: the generation must still be current, and the
    /// head is charged (once, even if a pooled connection closed and a fresh one sends it).
    fn release(&mut self, ctx: &ClientCtx) -> Result<(), EgressError> {
        still_current(ctx)?;
        if !std::mem::replace(&mut self.charged, true) {
            self.charge.up(self.head)?;
        }
        Ok(())
    }
}

/// Bounds the wait for the response head by the idle timeout (504 when it expires).
async fn timed<T>(idle: Duration, fut: impl Future<Output = T>) -> Result<T, EgressError> {
    tokio::time::timeout(idle, fut).await.map_err(|_elapsed| {
        let message = format!("no response from upstream within {idle:?}");
        EgressError::upstream_timeout("upstream_timeout", message)
    })
}

/// hyper's error text describes the connection, not addresses; it still only goes to the log,
/// and the client gets a fixed sentence.
fn upstream_failed(error: &hyper::Error) -> EgressError {
    tracing::debug!(%error, "Upstream exchange failed");
    EgressError::upstream("upstream_failed", "the destination failed the exchange")
}

/// Starts an HTTP/1.1 client connection on the dialled socket. Its driver task ends with the
/// exchange, or earlier when the sandbox's generation is revoked or shutdown's grace expires.
async fn handshake(
    proxy: &Proxy,
    ctx: &ClientCtx,
    upstream: TcpStream,
) -> Result<UpstreamSender, EgressError> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream))
        .await
        .map_err(|e| upstream_failed(&e))?;
    let revoked = ctx.revoked.clone();
    let hard_stop = proxy.hard_stop().clone();
    tokio::spawn(
        async move {
            // Cancellation first: once the generation is revoked, the connection is not polled
            // again, so no further byte is written for it.
            tokio::select! {
                biased;
                () = revoked.cancelled() => {},
                () = hard_stop.cancelled() => {},
                result = conn => if let Err(error) = result {
                    tracing::debug!(%error, "Upstream connection ended with an error");
                },
            }
        }
        .in_current_span(),
    );
    Ok(sender)
}

/// Rewrites an absolute-form request into the origin-form request sent upstream.
fn rewrite_request<B>(
    req: Request<B>,
    target: &Target,
    path_and_query: &str,
) -> Result<Request<B>, EgressError> {
    let (mut parts, body) = req.into_parts();
    parts.uri = Uri::try_from(path_and_query)
        .map_err(|e| EgressError::client("bad_target", format!("bad path: {e}")))?;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // The client's Host agreed with the target (or was absent); what goes upstream is the
    // canonical form of what was judged, never the client's spelling of it.
    let value = HeaderValue::try_from(canonical_host(target))
        .map_err(|e| EgressError::internal(format!("host header: {e}")))?;
    parts.headers.insert(HOST, value);
    add_via(&mut parts.headers);
    Ok(Request::from_parts(parts, body))
}

/// `host[:port]` as judged: lower-case name or normalised literal (IPv6 in brackets), the port
/// omitted when it is 80.
fn canonical_host(target: &Target) -> String {
    let host = target.host_str();
    match target.port {
        80 => host,
        port => format!("{host}:{port}"),
    }
}

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn add_via(headers: &mut HeaderMap) {
    headers.append(VIA, HeaderValue::from_static(VIA_ENTRY));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Secret"),
            ("connection", "keep-alive"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
            ("x-kept", "yes"),
            ("content-length", "3"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, ["content-length", "x-kept"]);
    }

    #[test]
    fn rewrite_keeps_the_name_and_adds_via() {
        let target = airlock_egress_policy::parse_absolute("http://Example.COM:8080/a?b")
            .unwrap()
            .target;
        let req = Request::builder()
            .uri("http://example.com:8080/a?b")
            .header("proxy-authorization", "Basic x")
            .header("via", "1.0 other")
            .body(())
            .unwrap();
        let out = rewrite_request(req, &target, "/a?b").unwrap();
        assert_eq!(out.uri(), "/a?b");
        assert_eq!(out.headers()[HOST], "example.com:8080");
        assert!(out.headers().get("proxy-authorization").is_none());
        let via: Vec<_> = out.headers().get_all(VIA).iter().collect();
        assert_eq!(via, ["1.0 other", VIA_ENTRY]);
    }

    #[test]
    fn the_forwarded_host_is_the_canonical_target() {
        for (uri, host_header, want) in [
            ("http://Example.COM/", "EXAMPLE.com:80", "example.com"),
            (
                "http://example.com:8080/",
                "example.com:8080",
                "example.com:8080",
            ),
            ("http://0x7f.1:81/", "127.0.0.1:81", "127.0.0.1:81"),
            (
                "http://[::FFFF:a00:1]/",
                "[::ffff:10.0.0.1]",
                "[::ffff:10.0.0.1]",
            ),
            (
                "http://[2001:DB8::1]:8443/",
                "[2001:db8::1]:8443",
                "[2001:db8::1]:8443",
            ),
        ] {
            let target = airlock_egress_policy::parse_absolute(uri).unwrap().target;
            let req = Request::builder()
                .uri(uri)
                .header(HOST, host_header)
                .body(())
                .unwrap();
            let out = rewrite_request(req, &target, "/").unwrap();
            assert_eq!(out.headers()[HOST], want, "{uri}");
            assert_eq!(out.headers().get_all(HOST).iter().count(), 1);
        }
    }
}
