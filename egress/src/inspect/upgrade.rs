//! HTTP/1.1 upgrades (WebSocket) inside a terminated tunnel. The upgrade request passes every
//! check of an ordinary request (authority, canonical path, rules, the credential), then goes
//! upstream on a fresh HTTP/1.1 connection of its own with its `Upgrade` header kept. A `101`
//! is relayed and the two upgraded streams are spliced raw; any other answer is an ordinary
//! response. No RFC 8441 (WebSocket over HTTP/2), and the gateway does not upgrade.
//!
//! The client side of the splice is the tunnel's own metered stream, so its bytes still count
//! against the sandbox's budget and keep the tunnel from going idle. The splice ends with the
//! tunnel (revocation, shutdown, idle); the tunnel waits for it before recording its row.

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::forward::strip_hop_by_hop;

/// What a tunnel's upgrades need: the hold its `open` waits on, and the token that ends them.
pub(super) struct Upgrades {
    /// Held by every splice; the tunnel ends only when all are dropped.
    pub(super) hold: mpsc::Sender<()>,
    /// Cancelled when the tunnel ends.
    pub(super) stop: CancellationToken,
}

/// A client's upgrade: the protocol it asked for and its side of the upgraded stream.
pub(super) struct ClientUpgrade {
    protocol: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Takes the client's upgrade out of `req` when it is an HTTP/1.1 upgrade request
/// (`Connection: upgrade` and an `Upgrade` protocol).
pub(super) fn take<B>(req: &mut Request<B>) -> Option<ClientUpgrade> {
    let protocol = req.headers().get(UPGRADE)?.clone();
    let asks = req.version() == http::Version::HTTP_11 && has_token(req.headers(), "upgrade");
    asks.then(|| ClientUpgrade {
        protocol,
        on_upgrade: hyper::upgrade::on(req),
    })
}

/// Whether a `Connection` header lists `token`.
fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl ClientUpgrade {
    /// Puts the upgrade headers back on the outgoing request (hop-by-hop stripping took them).
    pub(super) fn mark(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// Relays the upstream's answer: a `101` becomes the client's `101` and both streams are
    /// spliced until either side closes or the tunnel ends; anything else is returned as is.
    pub(super) fn answer(
        self,
        mut response: Response<hyper::body::Incoming>,
        upgrades: &Upgrades,
    ) -> Response<ProxyBody> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, body.map_err(Into::into).boxed());
        }
        let upstream = hyper::upgrade::on(&mut response);
        let (hold, stop) = (upgrades.hold.clone(), upgrades.stop.clone());
        let (mut parts, _) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.mark(&mut parts.headers);
        let client = self.on_upgrade;
        tokio::spawn(
            async move {
                let _hold = hold;
                let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else {
                    return;
                };
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                }
            }
            .in_current_span(),
        );
        let body = Empty::new().map_err(|never| match never {}).boxed();
        Response::from_parts(parts, body)
    }
}
