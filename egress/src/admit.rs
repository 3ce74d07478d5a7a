//! Admission: the checks every request and tunnel passes before anything is dialled, in order —
//! parse the target, [`identify`](crate::identify) the client, take its ledger slot,
//! [`judge`](crate::judge) the target, take a [`budget`](crate::budget) slot. What passes is an
//! [`Admitted`] request for `forward` or `tunnel`; what fails is its JSON refusal, already
//! recorded.
//!
//! An identified sandbox's request takes its ledger slot before the decision: nothing goes
//! upstream that the ledger cannot record.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_egress_policy::Target;
use http::{Request, Response};

use crate::body::{full, ProxyBody};
use crate::budget::{self, ConnectionPermit};
use crate::error::EgressError;
use crate::identify::identify;
use crate::judge::allowed_addrs;
use crate::proxy::{ClientConn, Proxy};
use crate::record::Exchange;
use crate::registry::ClientCtx;
use crate::request::ParsedRequest;

/// An identified, allowed request: the addresses it may go to, and its connection slot.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Its ledger record.
    pub(crate) exchange: Exchange,
    /// What it asks for.
    pub(crate) parsed: ParsedRequest,
    /// Who sent it, under which policy generation.
    pub(crate) ctx: ClientCtx,
    /// Every checked address, in answer order; only these may be dialled or reused.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Its place under the sandbox's `max_connections`.
    pub(crate) permit: ConnectionPermit,
}

/// Admits `req` from `conn`, or returns its refusal.
pub(crate) async fn admit<B>(
    proxy: &Arc<Proxy>,
    conn: &Arc<ClientConn>,
    req: &Request<B>,
) -> Result<Admitted, Response<ProxyBody>> {
    let raw_target = req.uri().to_string();
    let mut exchange = Exchange::begin(proxy.clone(), conn, req.method().as_str(), &raw_target);
    match checks(proxy, conn.peer, req, &raw_target, &mut exchange).await {
        Ok((parsed, ctx, addrs, permit)) => Ok(Admitted {
            exchange,
            parsed,
            ctx,
            addrs,
            permit,
        }),
        Err(error) => Err(full(exchange.refuse(&error))),
    }
}

/// The checks, in order; each records what it learnt in the exchange.
async fn checks<B>(
    proxy: &Proxy,
    peer: SocketAddr,
    req: &Request<B>,
    raw_target: &str,
    exchange: &mut Exchange,
) -> Result<(ParsedRequest, ClientCtx, Vec<SocketAddr>, ConnectionPermit), EgressError> {
    let parsed = ParsedRequest::from_request(req, raw_target)?;
    exchange.set_target(&parsed.target);
    let ctx = identify(proxy.registry(), peer, req)?;
    exchange.set_identity(&ctx);
    let (addrs, permit) = admit_identified(proxy, &ctx, &parsed.target, exchange).await?;
    Ok((parsed, ctx, addrs, permit))
}

/// The checks after identification, for an exchange whose target and identity are set: the
/// ledger slot, the judgement of `target`, the budget slot.
pub(crate) async fn admit_identified(
    proxy: &Proxy,
    ctx: &ClientCtx,
    target: &Target,
    exchange: &mut Exchange,
) -> Result<(Vec<SocketAddr>, ConnectionPermit), EgressError> {
    exchange.reserve()?;
    let addrs = allowed_addrs(proxy, ctx, target, exchange).await?;
    let permit = budget::admit(&ctx.budget)?;
    Ok((addrs, permit))
}

/// After the dial: a policy pushed while the request was being admitted revokes it before any
/// byte leaves.
pub(crate) fn still_current(ctx: &ClientCtx) -> Result<(), EgressError> {
    if ctx.revoked.is_cancelled() {
        return Err(EgressError::policy(
            "policy_changed",
            "the sandbox's policy changed while the request was admitted; send it again",
        ));
    }
    Ok(())
}
