//! The ledger's value types: one event as the proxy recorded it, the page the spool hands out,
//! and the key an event is accounted under. The event as the admin API serves it is
//! `airlock_wire::Event`, made by [`spooled`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_wire::{Event, Outcome};

/// One request or tunnel, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct LedgerEvent {
    /// The sandbox id (`None` in standalone mode or when the source is registered to none).
    pub sandbox: Option<String>,
    /// The policy generation the decision was made under.
    pub generation: u64,
    /// `CONNECT`, `GET`, `POST`, ...
    pub method: String,
    /// The host as requested (name or literal), before resolution.
    pub host: String,
    /// The requested port.
    pub port: u16,
    /// The resolved address that was dialed (or that caused the denial).
    pub addr: Option<SocketAddr>,
    /// What happened.
    pub decision: Outcome,
    /// The stable reason code (a `DenyReason` code, an identity/budget code, or e.g. `allowed`).
    pub reason: &'static str,
    /// The policy rule that matched, if any.
    pub rule: Option<String>,
    /// Bytes sent from the client to the upstream, request heads included.
    pub bytes_up: u64,
    /// Bytes sent from the upstream to the client, response heads included.
    pub bytes_down: u64,
    /// When the request or tunnel started.
    pub start: SystemTime,
    /// How long it lasted.
    pub duration: Duration,
    /// The client's address.
    pub client: SocketAddr,
    /// The operator ceiling the sandbox's policy was checked against, when the controller
    /// pushed one.
    pub ceiling: Option<Arc<str>>,
    /// How many requests this event stands for: 1, or more for a `ledger_full` summary.
    pub count: u64,
    /// Set for a terminated tunnel and for each request inside one.
    pub inspected: Option<Inspected>,
}

/// What an inspected tunnel's event, or a request inside it, adds to the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The tunnel: [`crate::ledger::Ledger::next_tunnel`], unique within the process.
    pub tunnel: u64,
    /// `terminate` (or, later, `gateway`).
    pub mode: &'static str,
    /// `None` on the tunnel's own event.
    pub request: Option<InnerRequest>,
}

/// One request inside an inspected tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerRequest {
    /// The canonical path (no query string, at most [`airlock_wire::MAX_PATH`] bytes); `None`
    /// when the path was refused.
    pub path: Option<String>,
    /// The status the client got; 0 when it got none.
    pub status: u16,
    /// The name of the secret whose credential was added, if one was.
    pub credential: Option<String>,
}

/// One page of spooled events; the admin API serves it with the proxy's boot id as an
/// `airlock_wire::EventsPage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// Events with `seq > after`, oldest first.
    pub events: Vec<Event>,
    /// The cursor for the next call: the last returned `seq`, or `after` when none was returned.
    pub next: u64,
    /// Events that could not be recorded in the spool at all (not even in a `ledger_full`
    /// summary), since the process started. They still reached the log.
    pub overflowed: u64,
}

/// What the spool accounts an event to: its sandbox, or the source address of a client that
/// belongs to none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LedgerKey {
    /// A sandbox id.
    Sandbox(Arc<str>),
    /// The source address of an unattributed client.
    Source(IpAddr),
}

// === impl LedgerEvent ===

impl LedgerEvent {
    /// The key this event is accounted under.
    pub fn key(&self) -> LedgerKey {
        match &self.sandbox {
            Some(id) => LedgerKey::Sandbox(Arc::from(id.as_str())),
            None => LedgerKey::Source(self.client.ip().to_canonical()),
        }
    }
}

/// The event spooled under `seq`, as the admin API serves it.
pub(super) fn spooled(seq: u64, e: &LedgerEvent) -> Event {
    Event {
        seq,
        sandbox: e.sandbox.clone(),
        generation: e.generation,
        method: e.method.clone(),
        host: e.host.clone(),
        port: e.port,
        addr: e.addr,
        decision: e.decision,
        reason: e.reason.to_owned(),
        rule: e.rule.clone(),
        bytes_up: e.bytes_up,
        bytes_down: e.bytes_down,
        start_ms: unix_ms(e.start),
        duration_ms: millis(e.duration),
        client: e.client,
        ceiling: e.ceiling.as_deref().map(str::to_owned),
        count: e.count,
        tunnel: e.inspected.as_ref().map(|i| i.tunnel),
        path: request(e).and_then(|r| r.path.clone()),
        status: request(e).map(|r| r.status),
        credential: request(e).and_then(|r| r.credential.clone()),
        mode: e.inspected.as_ref().map(|i| i.mode.to_owned()),
    }
}

fn request(e: &LedgerEvent) -> Option<&InnerRequest> {
    e.inspected.as_ref()?.request.as_ref()
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, millis)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
