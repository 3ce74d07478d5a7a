//! The egress ledger on the wire: one [`Event`] per proxied request or tunnel, as the proxy
//! spools it and the controller pages through it (`GET /v1/events?after=SEQ&limit=N` answers an
//! [`EventsPage`]), then acknowledges it (`POST /v1/events/ack` with an [`Ack`]).
//!
//! [`Outcome`] is the one decision enum of the ledger on both sides: the proxy records it, the
//! controller stores it through [`Outcome::as_str`] and reads it back with `FromStr`, and nothing
//! compares decision strings by hand.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happened to a request or tunnel (the JSON field is `decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed and proxied.
    Allow,
    /// Refused (policy, identity, budget or malformed input).
    Deny,
    /// Allowed because the policy is in `report` mode, but a domain or port rule would deny it.
    WouldDeny,
}

/// A string that is not an [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ledger decision: expected allow, deny or would_deny")]
pub struct UnknownOutcome(pub String);

/// One spooled ledger event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the proxy's spool: consecutive from 1 within one proxy process.
    pub seq: u64,
    /// The sandbox id (`None` in standalone mode or when the source belongs to no sandbox).
    pub sandbox: Option<String>,
    /// The policy generation the decision was made under.
    pub generation: u64,
    /// `CONNECT`, `GET`, `POST`, ...
    pub method: String,
    /// The host as requested (name or literal), before resolution.
    pub host: String,
    /// The requested port.
    pub port: u16,
    /// The resolved address that was dialled (or that caused the denial).
    pub addr: Option<SocketAddr>,
    /// What happened.
    pub decision: Outcome,
    /// The stable reason code (a deny reason, an identity or budget code, or `allowed`).
    pub reason: String,
    /// The policy rule that matched, if any.
    pub rule: Option<String>,
    /// Bytes sent from the client to the upstream, request heads included.
    pub bytes_up: u64,
    /// Bytes sent from the upstream to the client, response heads included.
    pub bytes_down: u64,
    /// When the request or tunnel started, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// How long it lasted, in milliseconds.
    pub duration_ms: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The label of the operator ceiling the sandbox's policy was checked against. Proxies
    /// built before ceilings do not send it.
    #[serde(default)]
    pub ceiling: Option<String>,
    /// How many requests the event stands for: 1, or more for a `ledger_full` summary. Proxies
    /// built before summaries do not send it, and every event of theirs stands for one.
    #[serde(default = "one")]
    pub count: u64,
    /// The inspected tunnel the event belongs to: set on a terminated tunnel's own event and on
    /// each request inside it. A per-process counter, so `(boot id, tunnel)` names one tunnel.
    /// Absent for plain requests and tunnels, and from proxies built before inspection rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<u64>,
    /// A request inside an inspected tunnel: its canonical path (no query string, at most
    /// [`MAX_PATH`] bytes). Absent on tunnel events, and when the path was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A request inside an inspected tunnel: the status the client got (0 when none was
    /// sent). Present on every request row and only there, which is how a request row is
    /// told from its tunnel's row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The name (never the value) of the secret whose credential was added to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// How the proxy saw inside the tunnel: `terminate` (room is kept for `gateway`). A string
    /// rather than an enum so that a controller still reads the pages of a proxy that knows
    /// more modes than it does; it is stored and shown as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// The longest path a request event carries, in bytes (cut on a character boundary).
pub const MAX_PATH: usize = 256;

/// `GET /v1/events`: one page of spooled events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsPage {
    /// Events with `seq > after`, oldest first.
    pub events: Vec<Event>,
    /// The cursor for the next call: the last returned `seq`, or `after` when none was returned.
    pub next: u64,
    /// Events that could not be recorded in the spool at all (not even in a `ledger_full`
    /// summary) since the proxy started. They still reached the proxy's log.
    #[serde(default)]
    pub overflowed: u64,
    /// The proxy process; sequence numbers start again at 1 when it changes.
    pub boot_id: String,
}

/// `POST /v1/events/ack`: frees the spool up to and including `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The last sequence number the controller has committed.
    pub seq: u64,
}

// === impl Outcome ===

impl Outcome {
    /// `allow`, `deny` or `would_deny`: the JSON value, the stored value, the log field and
    /// the metrics label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::WouldDeny => "would_deny",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "would_deny" => Ok(Self::WouldDeny),
            other => Err(UnknownOutcome(other.to_owned())),
        }
    }
}

fn one() -> u64 {
    1
}

#[cfg(test)]
mod tests;
