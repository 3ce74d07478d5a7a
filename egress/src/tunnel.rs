//! Tunnel: CONNECT.
//!
//! The tunnel is judged and its upstream socket opened *before* the `200` is sent, so a denied or
//! unreachable destination is refused with a JSON error and no tunnel ever opens. After the
//! upgrade the client socket is taken back from hyper (with the bytes the gate still held) and
//! [`splice`] moves bytes in both directions with half-close: EOF on one side shuts down the
//! write half of the other, and the tunnel ends when both directions are done.
//!
//! The budget counts the CONNECT head and the `200` as well as the tunnel's bytes. After the
//! dial the sandbox's generation is checked again: a policy replaced while the tunnel was being
//! admitted refuses it before the `200`. Once open, every select that races cancellation polls
//! it first (`biased`), and each chunk is checked before it is written, so no byte moves under
//! a revoked generation.
//!
//! A tunnel also ends when its sandbox's budget is spent, when it is idle for the idle timeout,
//! when its policy generation is replaced or removed (`revoked`), or when shutdown's grace period
//! expires.

mod splice;

pub(crate) use splice::Activity;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::admit::{still_current, Admitted};
use crate::body::{full, request_head_len, response_head_len, HeadCharge, ProxyBody};
use crate::dial::dial;
use crate::error::EgressError;
use crate::gate::RequestGate;
use crate::proxy::Proxy;
use splice::{splice, Direction, Meter};

/// Opens the tunnel of an admitted CONNECT: dial, answer `200`, then splice in the background,
/// or, when the destination is one of the sandbox's terminating endpoints, serve it through
/// [`crate::inspect`].
pub(crate) async fn open(
    proxy: Arc<Proxy>,
    mut admitted: Admitted,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let upstream = match connect(&proxy, &mut admitted, request_head_len(&req)).await {
        Ok(upstream) => upstream,
        Err(error) => return full(admitted.exchange.refuse(&error)),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let drain = proxy.drain_guard();
    let target = &admitted.parsed.target;
    let inspection = (admitted.ctx.inspection.clone())
        .filter(|i| i.terminating(&target.host_str(), target.port).is_some());
    tokio::spawn(
        async move {
            let _drain = drain;
            match inspection {
                Some(inspection) => {
                    crate::inspect::open(proxy, admitted, upstream, on_upgrade, inspection).await;
                }
                None => run(proxy, admitted, upstream, on_upgrade).await,
            }
        }
        .in_current_span(),
    );
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::OK;
    response
}

/// Charges the CONNECT head, dials, checks the generation again and charges the `200`.
async fn connect(
    proxy: &Proxy,
    admitted: &mut Admitted,
    head: u64,
) -> Result<TcpStream, EgressError> {
    let charge = HeadCharge::new(admitted.exchange.counters(), admitted.permit.budget());
    charge.up(head)?;
    let upstream = dial(&admitted.addrs, proxy.dial_options()).await?;
    admitted.exchange.set_addr(upstream.peer_addr().ok());
    still_current(&admitted.ctx)?;
    charge.down(response_head_len(StatusCode::OK, &http::HeaderMap::new()))?;
    Ok(upstream)
}

/// Takes the client connection back from hyper and moves bytes until the tunnel ends; records
/// how it ended.
async fn run(proxy: Arc<Proxy>, admitted: Admitted, upstream: TcpStream, on_upgrade: OnUpgrade) {
    let Admitted {
        exchange,
        ctx,
        permit,
        ..
    } = admitted;
    let (client, prefix) = match take_client(on_upgrade).await {
        Ok(taken) => taken,
        Err(reason) => return exchange.finish(Some(reason)),
    };
    let metrics = proxy.metrics();
    metrics.tunnel_opened();
    let activity = Activity::new();
    let counters = exchange.counters().clone();
    let up = Meter {
        direction: Direction::Up,
        counters: &counters,
        budget: permit.budget(),
        metrics,
        activity: &activity,
        revoked: &ctx.revoked,
    };
    let down = Meter {
        direction: Direction::Down,
        ..up
    };
    // Cancellation first: when the generation is revoked while data is ready, the revocation
    // wins and the splice is not polled again.
    let ended = tokio::select! {
        biased;
        () = ctx.revoked.cancelled() => Some("policy_changed"),
        () = proxy.hard_stop().cancelled() => Some("shutdown"),
        () = activity.idle(proxy.config().idle_timeout) => Some("idle_timeout"),
        ended = splice(client, prefix, upstream, &up, &down) => ended,
    };
    metrics.tunnel_closed();
    drop(permit);
    exchange.finish(ended);
}

/// The client socket after the upgrade, and the bytes it sent after its CONNECT head: first
/// what hyper had buffered, then what the gate still held. `Err` is the ledger reason.
pub(crate) async fn take_client(on_upgrade: OnUpgrade) -> Result<(TcpStream, Bytes), &'static str> {
    let upgraded = on_upgrade.await.map_err(|error| {
        tracing::debug!(%error, "Client left before the tunnel opened");
        "client_gone"
    })?;
    let Ok(parts) = upgraded.downcast::<TokioIo<RequestGate<TcpStream>>>() else {
        tracing::error!("Upgraded connection is not a TCP stream");
        return Err("internal");
    };
    let (client, held) = parts.io.into_inner().into_parts();
    let prefix = if held.is_empty() {
        parts.read_buf
    } else {
        [parts.read_buf, held].concat().into()
    };
    Ok((client, prefix))
}
