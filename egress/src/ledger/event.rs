//! The ledger's value types: one event as the proxy recorded it, as the admin API serves it,
//! and the key it is accounted under.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Decision;

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
    /// The decision.
    pub decision: Decision,
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
}

/// A spooled event as served by the admin API (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledEvent {
    /// Position in the spool: consecutive from 1 within one process.
    pub seq: u64,
    /// See [`LedgerEvent::sandbox`].
    pub sandbox: Option<String>,
    /// See [`LedgerEvent::generation`].
    pub generation: u64,
    /// See [`LedgerEvent::method`].
    pub method: String,
    /// See [`LedgerEvent::host`].
    pub host: String,
    /// See [`LedgerEvent::port`].
    pub port: u16,
    /// See [`LedgerEvent::addr`].
    pub addr: Option<SocketAddr>,
    /// See [`LedgerEvent::decision`].
    pub decision: Decision,
    /// See [`LedgerEvent::reason`].
    pub reason: String,
    /// See [`LedgerEvent::rule`].
    pub rule: Option<String>,
    /// See [`LedgerEvent::bytes_up`].
    pub bytes_up: u64,
    /// See [`LedgerEvent::bytes_down`].
    pub bytes_down: u64,
    /// [`LedgerEvent::start`] in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// [`LedgerEvent::duration`] in milliseconds.
    pub duration_ms: u64,
    /// See [`LedgerEvent::client`].
    pub client: SocketAddr,
    /// See [`LedgerEvent::ceiling`].
    pub ceiling: Option<String>,
    /// See [`LedgerEvent::count`].
    pub count: u64,
}

/// One page of spooled events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// Events with `seq > after`, oldest first.
    pub events: Vec<SpooledEvent>,
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

// === impl SpooledEvent ===

impl SpooledEvent {
    pub(super) fn new(seq: u64, e: &LedgerEvent) -> Self {
        Self {
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
        }
    }
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, millis)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
