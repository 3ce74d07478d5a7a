//! Gateway: origin-form requests to the proxy itself, `/gw/<name>/<path>`, for clients that
//! cannot be made to trust a CA (httpx stops reading `SSL_CERT_FILE`; Claude Code reads
//! `NODE_EXTRA_CA_CERTS` only from its real environment). The sandbox reaches it as
//! `http://airlock.internal:3128/gw/<name>` ([`airlock_wire::gateway`]); its SDK's base URL
//! points there.
//!
//! A gateway request is admitted in this order, each refusal a JSON answer recorded in the
//! ledger:
//! 1. the client is identified by its source address alone (an unknown one is `401
//!    gateway_unauthorized`, an unbound pool member's `403 sandbox_not_claimed`);
//! 2. `<name>` must be a gateway of one of its terminating endpoints (`404 unknown_gateway`);
//! 3. in controlled mode, the endpoint's credential header must carry the sandbox's own
//!    placeholder ([`crate::inspect::Inspection`] checks its token against the pushed hash):
//!    another sandbox's placeholder, or none, is `401 gateway_unauthorized`. (Standalone, the
//!    proxy has one client, as for its terminating endpoints.)
//! 4. then the same checks as a CONNECT to the endpoint (ledger slot, judgement of the
//!    endpoint's host, budget slot).
//!
//! What follows is a request inside a terminated tunnel: L7 rules on the canonical path, the
//! bound header replaced by the credential, verified TLS upstream to a checked address, and a
//! request row of mode `gateway` ([`crate::inspect::gateway`]).

use std::sync::Arc;

use airlock_egress_policy::parse_connect;
use airlock_wire::GATEWAY_PATH;
use http::Request;
use hyper::body::Incoming;

use crate::admit::{admit_identified, Admitted};
use crate::body::{full, ProxyBody};
use crate::error::{ClientFault, EgressError};
use crate::inspect::{self, Inspection};
use crate::proxy::{ClientConn, Proxy};
use crate::record::Exchange;
use crate::registry::IdentityError;
use crate::request::{ParsedRequest, RequestKind};

/// Whether `req` is a gateway request: origin-form, under [`GATEWAY_PATH`], not CONNECT.
pub(crate) fn is_gateway<B>(req: &Request<B>) -> bool {
    req.method() != http::Method::CONNECT
        && req.uri().authority().is_none()
        && req.uri().path().starts_with(GATEWAY_PATH)
}

/// Admits and serves one gateway request (see the module docs).
pub(crate) async fn serve(
    proxy: Arc<Proxy>,
    conn: Arc<ClientConn>,
    req: Request<Incoming>,
) -> Response {
    let (name, origin_form) = split(req.uri());
    // The ledger gets the gateway's name, never the path's query string.
    let raw = format!("{GATEWAY_PATH}{name}");
    let mut exchange = Exchange::begin(proxy.clone(), &conn, req.method().as_str(), &raw);
    match admit(&proxy, &conn, &req, &name, &mut exchange).await {
        Ok((parsed, ctx, inspection)) => {
            let (addrs, permit) =
                match admit_identified(&proxy, &ctx, &parsed.target, &mut exchange).await {
                    Ok(admitted) => admitted,
                    Err(error) => return full(exchange.refuse(&error)),
                };
            let admitted = Admitted {
                exchange,
                parsed,
                ctx,
                addrs,
                permit,
            };
            inspect::gateway(proxy, &conn, admitted, req, inspection, &origin_form).await
        }
        Err(error) => full(exchange.refuse(&error)),
    }
}

type Response = http::Response<ProxyBody>;

/// Steps 1 to 3: who sent it, which endpoint it names, and whether it carries the sandbox's
/// placeholder.
async fn admit(
    proxy: &Proxy,
    conn: &ClientConn,
    req: &Request<Incoming>,
    name: &str,
    exchange: &mut Exchange,
) -> Result<(ParsedRequest, crate::registry::ClientCtx, Arc<Inspection>), EgressError> {
    let ctx = proxy
        .registry()
        .identify_source(conn.peer.ip())
        .map_err(|error| match error {
            IdentityError::SandboxNotClaimed => EgressError::from(error),
            _ => unauthorized("this address is no sandbox of this proxy"),
        })?;
    exchange.set_identity(&ctx);
    let unknown = || {
        EgressError::fault(
            ClientFault::UnknownGateway,
            format!("the sandbox has no gateway {name:?}"),
        )
    };
    let inspection = ctx.inspection.clone().ok_or_else(unknown)?;
    let endpoint = inspection.gateway(name).ok_or_else(unknown)?;
    let target = parse_connect(&format!("{}:{}", endpoint.host, endpoint.port))
        .map_err(|e| EgressError::internal(format!("gateway endpoint: {e}")))?;
    exchange.set_target(&target);
    if ctx.sandbox.is_some() && !inspection.gateway_admits(endpoint, req.headers()) {
        return Err(unauthorized(
            "the request does not carry this sandbox's placeholder in its credential header",
        ));
    }
    let parsed = ParsedRequest {
        kind: RequestKind::Forward {
            path_and_query: String::new(),
        },
        target,
    };
    Ok((parsed, ctx, inspection))
}

fn unauthorized(message: &str) -> EgressError {
    EgressError::fault(ClientFault::GatewayUnauthorized, message)
}

/// `/gw/<name>/<rest>?<query>` → (`name`, `/<rest>?<query>`).
fn split(uri: &http::Uri) -> (String, String) {
    let path = uri.path().strip_prefix(GATEWAY_PATH).unwrap_or_default();
    let (name, rest) = path.split_once('/').unwrap_or((path, ""));
    let mut origin_form = format!("/{rest}");
    if let Some(query) = uri.query() {
        origin_form.push('?');
        origin_form.push_str(query);
    }
    (name.to_owned(), origin_form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_paths_split_into_name_and_origin_form() {
        let split = |s: &str| split(&s.parse().unwrap());
        assert_eq!(
            split("/gw/anthropic/v1/messages?beta=true"),
            ("anthropic".into(), "/v1/messages?beta=true".into())
        );
        assert_eq!(split("/gw/openai"), ("openai".into(), "/".into()));
        assert_eq!(split("/gw/"), (String::new(), "/".into()));
        let get = Request::get("/gw/x/y").body(()).unwrap();
        assert!(is_gateway(&get));
        let absolute = Request::get("http://h/gw/x").body(()).unwrap();
        assert!(!is_gateway(&absolute));
        let other = Request::get("/index.html").body(()).unwrap();
        assert!(!is_gateway(&other));
    }
}
