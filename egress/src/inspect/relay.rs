//! The decrypted side of a terminated tunnel: HTTP/1.1 or HTTP/2 from the sandbox (by ALPN),
//! each request checked and rewritten, then sent over verified TLS to the checked address on
//! connections owned by this tunnel. See the parent module for the rules.

use std::convert::Infallible;
use std::sync::Arc;

use airlock_egress_policy::{canonical_path, parse_host, Host};
use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::accept::accept;
use super::io::{Charges, MeteredIo};
use super::row::{Row, Rows};
use super::upgrade::{self, Upgrades};
use super::upstream::{Outgoing, Upstream};
use super::Inspection;
use crate::admit::{still_current, Admitted};
use crate::body::{
    full, request_head_len, response_head_len, BoxError, HeadCharge, MeteredBody, ProxyBody,
};
use crate::error::EgressError;
use crate::forward::strip_hop_by_hop;
use crate::proxy::{ClientConn, Proxy};
use crate::tunnel::{take_client, Activity};

/// The mode recorded on a terminated tunnel's rows.
const MODE_TERMINATE: &str = "terminate";
/// The mode recorded on a gateway request's rows.
const MODE_GATEWAY: &str = "gateway";

/// How long a client in a terminated tunnel has to send a whole HTTP/1.1 request head.
const INNER_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a terminated tunnel whose `200` was sent: handshake, then serve until it ends; records
/// how it ended.
pub(crate) async fn open(
    proxy: Arc<Proxy>,
    admitted: Admitted,
    upstream: TcpStream,
    on_upgrade: OnUpgrade,
    inspection: Arc<Inspection>,
) {
    let Admitted {
        mut exchange,
        ctx,
        permit,
        parsed,
        addrs,
    } = admitted;
    let (client, prefix) = match take_client(on_upgrade).await {
        Ok(taken) => taken,
        Err(reason) => return exchange.finish(Some(reason)),
    };
    let (host, port) = (parsed.target.host_str(), parsed.target.port);
    let Some(endpoint) = inspection.terminating(&host, port) else {
        return exchange.finish(Some("internal"));
    };
    let tunnel_id = proxy.ledger().next_tunnel();
    let rows = Rows::new(proxy.clone(), exchange.inspect(tunnel_id, MODE_TERMINATE));
    let activity = Arc::new(Activity::new());
    let charges = Charges {
        proxy: proxy.clone(),
        counters: exchange.counters().clone(),
        budget: permit.budget().clone(),
        revoked: ctx.revoked.clone(),
        activity: activity.clone(),
    };
    let io = MeteredIo::new(client, prefix, charges);
    let tls = match accept(io, &endpoint.host, || {
        inspection.server_config(endpoint).ok()
    })
    .await
    {
        Ok(tls) => tls,
        Err(reason) => return exchange.finish(Some(reason)),
    };
    let upstream = Arc::new(Upstream::new(
        &proxy,
        &inspection,
        &host,
        Some(upstream),
        addrs,
    ));
    let (hold, mut spliced) = mpsc::channel::<()>(1);
    let stop = CancellationToken::new();
    let tunnel = Arc::new(Tunnel {
        upstream,
        inspection,
        rows,
        host,
        port,
        upgrades: Some(Upgrades {
            hold,
            stop: stop.clone(),
        }),
    });
    let service = service_fn(move |req: Request<Incoming>| {
        let tunnel = tunnel.clone();
        let req = req.map(|body| body.map_err(BoxError::from).boxed());
        async move { Ok::<_, Infallible>(tunnel.handle(req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(INNER_HEAD_TIMEOUT);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    // The connection ends when the client closes it or hands it to an upgrade; the tunnel
    // ends when, besides, every upgraded splice has (each holds a clone of `hold`).
    let served = async move {
        let served = conn.await;
        while spliced.recv().await.is_some() {}
        served
    };
    let ended = tokio::select! {
        biased;
        () = ctx.revoked.cancelled() => Some("policy_changed"),
        () = proxy.hard_stop().cancelled() => Some("shutdown"),
        () = activity.idle(proxy.config().idle_timeout) => Some("idle_timeout"),
        served = served => served.err().map(|_gone| "client_gone"),
    };
    stop.cancel();
    drop(permit);
    exchange.finish(ended);
}

/// Serves one admitted gateway request (`/gw/<name>/…`, already authenticated) as a
/// one-request inspected exchange: the same checks, rewrite, credential and ledger row as a
/// request inside a terminated tunnel, with `origin_form` as its path. Both bodies are charged
/// to the sandbox's budget, and the exchange's own row (mode `gateway`) is recorded when the
/// response body ends.
pub(crate) async fn gateway(
    proxy: Arc<Proxy>,
    conn: &ClientConn,
    admitted: Admitted,
    req: Request<Incoming>,
    inspection: Arc<Inspection>,
    origin_form: &str,
) -> Response<ProxyBody> {
    let Admitted {
        mut exchange,
        ctx,
        permit,
        parsed,
        addrs,
    } = admitted;
    let (host, port) = (parsed.target.host_str(), parsed.target.port);
    let tunnel_id = proxy.ledger().next_tunnel();
    let rows = Rows::new(proxy.clone(), exchange.inspect(tunnel_id, MODE_GATEWAY));
    let upstream = conn
        .gateway
        .for_request(&proxy, &ctx, &inspection, (&host, port), addrs);
    let tunnel = Tunnel {
        upstream,
        inspection,
        rows,
        host,
        port,
        upgrades: None,
    };
    let (mut parts, body) = req.into_parts();
    let charge = HeadCharge::new(exchange.counters(), permit.budget());
    let rewritten = Uri::try_from(origin_form)
        .ok()
        .zip(HeaderValue::from_str(&tunnel.authority()).ok());
    let Some((uri, authority)) = rewritten else {
        let error = EgressError::client("bad_request", "the gateway path is not a valid URI");
        return full(exchange.refuse(&error));
    };
    parts.uri = uri;
    parts.headers.insert(HOST, authority);
    let (counters, budget) = (exchange.counters().clone(), permit.budget().clone());
    let body = MeteredBody::up(body, proxy.clone(), counters, budget, ctx.revoked.clone());
    let req = Request::from_parts(parts, body.boxed());
    if let Err(error) = still_current(&ctx).and_then(|()| charge.up(request_head_len(&req))) {
        return full(exchange.refuse(&error));
    }
    let response = tunnel.handle(req).await;
    let (parts, body) = response.into_parts();
    if let Err(error) = charge.down(response_head_len(parts.status, &parts.headers)) {
        return full(exchange.refuse(&error));
    }
    let idle = proxy.config().idle_timeout;
    let body = MeteredBody::down(body, exchange, permit, idle, None, ctx.revoked.clone());
    Response::from_parts(parts, body.boxed())
}

/// One terminated tunnel's state, shared by its requests.
struct Tunnel {
    inspection: Arc<Inspection>,
    rows: Rows,
    host: String,
    port: u16,
    upstream: Arc<Upstream>,
    /// Set where HTTP/1.1 upgrades are relayed (a terminated tunnel, not the gateway).
    upgrades: Option<Upgrades>,
}

impl Tunnel {
    /// Checks, rewrites and sends one request; every refusal is a JSON answer in the tunnel.
    /// Each request gets its own ledger row (see `row`).
    async fn handle(&self, req: Request<ProxyBody>) -> Response<ProxyBody> {
        let mut row = self.rows.start(req.method().as_str());
        if row.no_room() {
            row.deny("ledger_full");
            return row.answer(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "ledger_full",
                "the sandbox's ledger share is full; retry once it is drained",
            ));
        }
        let response = self.serve(req, &mut row).await;
        row.answer(response)
    }

    async fn serve(&self, mut req: Request<ProxyBody>, row: &mut Row) -> Response<ProxyBody> {
        let Some(endpoint) = self.inspection.terminating(&self.host, self.port) else {
            row.deny("internal");
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no endpoint");
        };
        let raw = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let canonical = canonical_path(raw);
        if let Ok(target) = &canonical {
            row.set_path(&target.path);
        }
        if !self.authority_matches(&req) {
            row.deny("misdirected_request");
            return refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "the request's authority is not the host this tunnel was opened for",
            );
        }
        let target = match canonical {
            Ok(target) => target,
            Err(e) => {
                row.deny(e.code());
                return refusal(StatusCode::BAD_REQUEST, e.code(), &e.to_string());
            }
        };
        let method = req.method().as_str().to_owned();
        let Some(rule) = endpoint.rules.check(&method, &target.path) else {
            tracing::info!(%method, path = %target.path, host = %self.host, "L7 rule denied");
            row.deny("rule_denied");
            return refusal(
                StatusCode::FORBIDDEN,
                "rule_denied",
                "no rule of this endpoint allows this method and path",
            );
        };
        let upgrade = self.upgrades.as_ref().and_then(|_| upgrade::take(&mut req));
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(upgrade) = &upgrade {
            upgrade.mark(&mut parts.headers);
        }
        parts.headers.remove(HOST);
        if let Some(credential) = &endpoint.credential {
            parts.headers.remove(credential.header.as_str());
            match self.inspection.credential_value(credential) {
                Some(value) => {
                    parts.headers.insert(
                        http::HeaderName::from_bytes(credential.header.as_bytes())
                            .unwrap_or(http::header::AUTHORIZATION),
                        value,
                    );
                    row.credential(&credential.secret);
                }
                None => {
                    row.deny("credential_unavailable");
                    return refusal(StatusCode::BAD_GATEWAY, "credential_unavailable", "");
                }
            }
        }
        tracing::debug!(%method, path = %target.path, %rule, "Inspected request");
        row.allow(rule);
        let body = row.count_up(body);
        let out = Outgoing {
            parts,
            body,
            origin_form: target.to_origin_form(),
        };
        let answer = match &upgrade {
            Some(_) => self.upstream.send_upgrade(out, &self.authority()).await,
            None => self.upstream.send(out, &self.authority()).await,
        };
        let response = match answer {
            Ok(response) => response,
            Err(code) => {
                row.fail(code);
                return refusal(
                    StatusCode::BAD_GATEWAY,
                    code,
                    "the upstream could not be reached",
                );
            }
        };
        if let (Some(upgrade), Some(upgrades)) = (upgrade, &self.upgrades) {
            return upgrade.answer(response, upgrades);
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove("alt-svc");
        Response::from_parts(parts, body.map_err(BoxError::from).boxed())
    }

    /// `host[:port]`, the port omitted when 443.
    fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the request names this tunnel's host and port (HTTP/2 `:authority`, else `Host`).
    fn authority_matches<B>(&self, req: &Request<B>) -> bool {
        let raw = match req.uri().authority() {
            Some(a) => a.as_str().to_owned(),
            None => match req.headers().get(HOST).and_then(|h| h.to_str().ok()) {
                Some(h) => h.to_owned(),
                None => return false,
            },
        };
        let Ok(authority) = raw.parse::<http::uri::Authority>() else {
            return false;
        };
        let port = authority.port_u16().unwrap_or(443);
        let host_ok =
            matches!(parse_host(authority.host()), Ok(Host::Name(n)) if n.as_str() == self.host);
        host_ok && port == self.port
    }
}

/// A JSON refusal inside the tunnel.
fn refusal(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
