//! The dispatcher: [`serve`] runs the proxy until shutdown, and `handle` takes each request
//! through the pipeline, top to bottom:
//!
//! 1. [`accept`](crate::accept): connection caps, then every client byte through the
//!    [`gate`](crate::gate) before hyper parses a request;
//! 2. [`admit`](crate::admit): parse the target, [`identify`](crate::identify) the client, take
//!    its ledger slot, [`judge`](crate::judge) the target, take a [`budget`](crate::budget) slot;
//! 3. [`forward`](crate::forward) or [`tunnel`](crate::tunnel), each of which
//!    [`dial`](crate::dial)s one of the checked addresses (forwarding may first reuse a pooled
//!    connection to one of them) and moves the bytes;
//! 4. [`record`](crate::record): exactly one ledger event per request or tunnel, however it
//!    ends.
//!
//! Only this module knows the order; no step imports it.
//!
//! On shutdown the loop stops accepting, open connections finish their in-flight request, and
//! after the grace period every remaining connection and tunnel is cut.

use std::future::Future;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accept::accept_loop;
use crate::admit::admit;
use crate::body::ProxyBody;
use crate::config::Config;
use crate::forward::forward;
use crate::proxy::{ClientConn, Proxy, Services};
use crate::{gateway, tunnel};

/// Runs the proxy on `listener` until `shutdown` resolves, then drains for the configured
/// grace period.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let (proxy, mut drained) = Proxy::new(config, services, local);
    let graceful = CancellationToken::new();
    tracing::info!(listen.addr = %local, "Egress proxy listening");
    accept_loop(&listener, &proxy, &graceful, shutdown, handle).await;
    drop(listener);
    graceful.cancel();
    let grace = proxy.config().shutdown_grace;
    let hard_stop = proxy.hard_stop().clone();
    drop(proxy);
    if tokio::time::timeout(grace, drained.recv()).await.is_err() {
        tracing::warn!(
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "Shutdown grace expired; cutting connections"
        );
    }
    hard_stop.cancel();
    tracing::info!("Egress proxy stopped");
    Ok(())
}

/// One request: admitted (or refused), then forwarded or tunnelled; a request to the proxy's
/// own gateway path goes to [`gateway`].
async fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ClientConn>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if gateway::is_gateway(&req) {
        return gateway::serve(proxy, conn, req).await;
    }
    let admitted = match admit(&proxy, &conn, &req).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    if req.method() == Method::CONNECT {
        tunnel::open(proxy, admitted, req).await
    } else {
        forward(proxy, admitted, req).await
    }
}
