//! Absolute-form HTTP/1.1 forwarding.
//!
//! After `admit` has opened a socket to the checked address, the request is rewritten to
//! origin-form (the Host header keeps the *name*), hop-by-hop headers are removed (the fixed list
//! plus every header named in `Connection`, `Proxy-Authorization` included), `Via` is added, and
//! both bodies are streamed through `MeteredBody`. Each request is judged on its own; it may then
//! reuse an idle connection to one of *its* checked addresses (see `pool`), else it dials.

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

use crate::body::MeteredBody;
use crate::error::EgressError;
use crate::exchange::Exchange;
use crate::pool::{PoolKey, UpstreamSender};
use crate::registry::ClientCtx;
use crate::server::{admit, full, open_upstream, path_of, Admitted, Proxy, ProxyBody};

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

/// Handles one absolute-form request.
pub(crate) async fn handle(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Admitted {
        mut exchange,
        parsed,
        ctx,
        addrs,
        permit,
    } = match admit(&proxy, peer, &req).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let upstream_req = match rewrite_request(req, &parsed.target, path_of(&parsed)) {
        Ok(r) => r.map(|body| {
            let (counters, budget) = (exchange.counters().clone(), permit.budget().clone());
            MeteredBody::up(body, proxy.clone(), counters, budget)
        }),
        Err(error) => return full(exchange.refuse(&error)),
    };
    let sent = send(&proxy, &ctx, &addrs, &mut exchange, upstream_req).await;
    let (key, sender, response) = match sent {
        Ok(sent) => sent,
        Err(error) => return full(exchange.refuse(&error)),
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    add_via(&mut parts.headers);
    let idle = proxy.config().idle_timeout;
    let body = MeteredBody::down(body, exchange, permit, idle, (key, sender));
    Response::from_parts(parts, body.boxed())
}

/// Sends the request on an idle pooled connection to a checked address, or on a fresh one.
/// A request a pooled connection never sent (it closed meanwhile) goes out on a fresh one.
async fn send(
    proxy: &Proxy,
    ctx: &ClientCtx,
    addrs: &[SocketAddr],
    exchange: &mut Exchange,
    mut req: Request<MeteredBody<Incoming>>,
) -> Result<(PoolKey, UpstreamSender, Response<Incoming>), EgressError> {
    let idle = proxy.config().idle_timeout;
    let pooled = proxy
        .pool()
        .checkout(addrs, ctx.sandbox.as_deref(), ctx.generation);
    if let Some((key, mut sender)) = pooled {
        if sender.ready().await.is_ok() {
            exchange.set_addr(Some(key.addr));
            match timed(idle, sender.try_send_request(req)).await? {
                Ok(response) => return Ok((key, sender, response)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(upstream_failed(&error.into_error())),
                },
            }
        }
    }
    let upstream = open_upstream(proxy, exchange, addrs).await?;
    let key = PoolKey {
        addr: upstream
            .peer_addr()
            .map_err(|e| EgressError::upstream("connect_failed", e.to_string(), false))?,
        sandbox: ctx.sandbox.clone(),
        generation: ctx.generation,
    };
    let mut sender = handshake(proxy, ctx, upstream).await?;
    let response = timed(idle, sender.send_request(req))
        .await?
        .map_err(|e| upstream_failed(&e))?;
    Ok((key, sender, response))
}

/// Bounds the wait for the response head by the idle timeout (504 when it expires).
async fn timed<T>(idle: Duration, fut: impl Future<Output = T>) -> Result<T, EgressError> {
    tokio::time::timeout(idle, fut).await.map_err(|_elapsed| {
        let message = format!("no response from upstream within {idle:?}");
        EgressError::upstream("upstream_timeout", message, true)
    })
}

fn upstream_failed(error: &hyper::Error) -> EgressError {
    EgressError::upstream("upstream_failed", error.to_string(), false)
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
        .map_err(|e| EgressError::upstream("upstream_failed", e.to_string(), false))?;
    let revoked = ctx.revoked.clone();
    let hard_stop = proxy.hard_stop().clone();
    tokio::spawn(
        async move {
            tokio::select! {
                result = conn => if let Err(error) = result {
                    tracing::debug!(%error, "Upstream connection ended with an error");
                },
                () = revoked.cancelled() => {},
                () = hard_stop.cancelled() => {},
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
    if !parts.headers.contains_key(HOST) {
        let host = match target.port {
            80 => target.host_str(),
            port => format!("{}:{port}", target.host_str()),
        };
        let value = HeaderValue::try_from(host)
            .map_err(|e| EgressError::internal(format!("host header: {e}")))?;
        parts.headers.insert(HOST, value);
    }
    add_via(&mut parts.headers);
    Ok(Request::from_parts(parts, body))
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
}
