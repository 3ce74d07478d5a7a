//! Identify: which sandbox sent this request, and which policy, budget and generation apply to
//! it. The answer comes from the registry, from the client's source address **and** its
//! `Proxy-Authorization` header together; in controlled mode an unknown source or a wrong
//! credential is refused here (fail closed), before anything is judged. An unbound pool
//! member's address is refused `sandbox_not_claimed` whatever credential it presents.

use std::net::SocketAddr;

use http::header::PROXY_AUTHORIZATION;
use http::Request;

use crate::error::EgressError;
use crate::registry::{ClientCtx, Registry};

/// Identifies the client at `peer` that sent `req`.
pub(crate) fn identify<B>(
    registry: &Registry,
    peer: SocketAddr,
    req: &Request<B>,
) -> Result<ClientCtx, EgressError> {
    let credential = req.headers().get(PROXY_AUTHORIZATION).map(|v| v.as_bytes());
    Ok(registry.identify(peer.ip(), credential)?)
}
