//! What every request meets before its route's own layers:
//!
//! - the client's address ([`ClientAddr`]): the peer's, or, when the peer is one of
//!   `AIRLOCK_TRUSTED_PROXIES`, the right-most `X-Forwarded-For` entry that is not a trusted
//!   proxy (what the trusted proxy itself saw); login throttling and audit rows key on it;
//! - the request timeout on every non-streaming route (streaming and self-bounded routes are
//!   listed in [`UNTIMED`]): past it the answer is `503 request_timeout`;
//! - security headers: `X-Content-Type-Options: nosniff` always, `Cache-Control: no-store` on
//!   `/v1/auth/*` and `/v1/me*`, `Strict-Transport-Security` when the API serves TLS.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{CACHE_CONTROL, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::error::ApiError;
use super::AppState;
use crate::config::HttpConfig;

/// Routes that stream or bound their own time (`exec`'s and `wait`'s `timeout_s`, a create's
/// image wait and self-test), by method and route template.
pub const UNTIMED: &[(Method, &str)] = &[
    (Method::GET, "/v1/sandboxes/{id}/logs"),
    (Method::GET, "/v1/sandboxes/{id}/exec/ws"),
    (Method::POST, "/v1/sandboxes/{id}/exec"),
    (Method::GET, "/v1/sandboxes/{id}/wait"),
    (Method::POST, "/v1/sandboxes"),
    (Method::POST, "/v1/sandboxes/{id}/selftest"),
    (Method::PUT, "/v1/sandboxes/{id}/files"),
    (Method::PUT, "/v1/sandboxes/{id}/files/content"),
    (Method::GET, "/v1/sandboxes/{id}/files"),
    (Method::PUT, "/v1/volumes/{id}/files"),
    (Method::PUT, "/v1/volumes/{id}/files/content"),
    (Method::GET, "/v1/volumes/{id}/files"),
];

/// `Strict-Transport-Security` on TLS answers: a year, subdomains untouched.
const HSTS: &str = "max-age=31536000";

/// The client's address as the API believes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// What the edge layer needs to know.
#[derive(Clone, Debug)]
pub struct Edge {
    /// The request timeout of non-streaming routes.
    pub request_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether the API serves TLS (HSTS is sent then).
    pub tls: bool,
}

// === impl Edge ===

impl Edge {
    /// The edge of an API with `http`'s limits, over TLS when `tls`.
    pub fn new(http: &HttpConfig, tls: bool) -> Self {
        Self {
            request_timeout: http.request_timeout,
            trusted_proxies: http.trusted_proxies.clone(),
            tls,
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the `X-Forwarded-For` values it sent.
    pub fn client(&self, peer: IpAddr, forwarded: &[&str]) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = forwarded.iter().flat_map(|value| value.split(','));
        let hops: Vec<&str> = hops.collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Garbage: what the proxy chain vouches for ends at the last good hop.
                break;
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        client
    }
}

impl Default for Edge {
    fn default() -> Self {
        Self::new(&HttpConfig::default(), false)
    }
}

/// Middleware: the client's address, the request timeout and the security headers.
pub(crate) async fn edge(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let edge = &state.edge;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let client = edge.client(peer, &forwarded);
        request.extensions_mut().insert(ClientAddr(client));
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let untimed = route.as_deref().is_some_and(|route| {
        UNTIMED
            .iter()
            .any(|(method, r)| method == request.method() && *r == route)
    });
    let mut response = if untimed {
        next.run(request).await
    } else {
        match tokio::time::timeout(edge.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_elapsed) => ApiError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "request_timeout",
                message: format!(
                    "the request took longer than {}s",
                    edge.request_timeout.as_secs_f64()
                ),
            }
            .into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if path.starts_with("/v1/auth/") || path == "/v1/me" || path.starts_with("/v1/me/") {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if edge.tls {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let edge = Edge {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..Edge::default()
        };
        // An untrusted peer's header is ignored.
        assert_eq!(
            edge.client(ip("192.0.2.1"), &["203.0.113.9"]),
            ip("192.0.2.1")
        );
        // The proxy's own entry (right-most) wins over what the client wrote before it.
        let spoofed = ["198.51.100.1, 203.0.113.9"];
        assert_eq!(edge.client(ip("10.0.0.2"), &spoofed), ip("203.0.113.9"));
        // Trusted hops are skipped; split headers count as one list.
        let chain = ["198.51.100.1", "203.0.113.9, 10.1.1.1"];
        assert_eq!(edge.client(ip("10.0.0.2"), &chain), ip("203.0.113.9"));
        // No header, or garbage: the proxy itself.
        assert_eq!(edge.client(ip("10.0.0.2"), &[]), ip("10.0.0.2"));
        assert_eq!(edge.client(ip("10.0.0.2"), &["nope"]), ip("10.0.0.2"));
    }
}
