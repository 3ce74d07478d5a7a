//! `GET`/`PUT /v1/infrastructure`: the controller's list of the deployment's own addresses,
//! and what the proxy enforces (the pushed list, `--deny-cidr`, and what it derives from its
//! own interfaces).

use std::net::IpAddr;

use airlock_wire::{InfrastructureReport, PutInfrastructure};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::routes::{json, read_json, ApiError, Reply};
use super::AdminState;

/// Most CIDRs one push may carry.
const MAX_CIDRS: usize = 4096;

pub(super) fn get_infrastructure(state: &AdminState) -> Reply {
    let report = state.infra.report();
    let reply = InfrastructureReport {
        effective: report.effective,
        pushed: report.pushed,
        configured: report.configured,
        derived: report.derived,
    };
    json(StatusCode::OK, &reply)
}

pub(super) async fn put_infrastructure(
    state: &AdminState,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let body: PutInfrastructure = read_json(req).await?;
    if body.cidrs.len() > MAX_CIDRS {
        return Err(bad_cidr(format!("at most {MAX_CIDRS} CIDRs per push")));
    }
    let cidrs = body
        .cidrs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse(text).ok_or_else(|| {
                bad_cidr(format!(
                    "cidrs[{i}] = {text:?} is not a CIDR like 10.213.0.0/16"
                ))
            })
        })
        .collect::<Result<Vec<IpNet>, ApiError>>()?;
    let count = cidrs.len();
    state.infra.set_pushed(cidrs);
    tracing::info!(infra.pushed = count, "Infrastructure list pushed");
    Ok(get_infrastructure(state))
}

/// Reads the interfaces again before a sandbox entry goes live. A failure keeps the previous
/// derivation; the pushed list still covers the sandbox pools.
pub(super) async fn refresh_interfaces(state: &AdminState) {
    let infra = state.infra.clone();
    match tokio::task::spawn_blocking(move || infra.refresh()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "Cannot read the interfaces"),
        Err(error) => tracing::warn!(%error, "Interface refresh task failed"),
    }
}

/// A CIDR, or a bare address meaning its host route.
fn parse(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn bad_cidr(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_cidr", message)
}
