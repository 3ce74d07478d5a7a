//! The egress ledger: one canonical event per proxied request or tunnel.
//!
//! [`Ledger::record`] writes each event twice: as one `info!` log line (target
//! `airlock_egress::ledger`, message `proxy decision`, dotted fields) and into a bounded
//! in-memory spool that the controller pages through with a cursor and acknowledges over the
//! admin API.
//!
//! Invariants:
//! - Spooled events get consecutive sequence numbers starting at 1, in the order they were
//!   recorded; a sequence number is never reused within a process (the registry's boot id tells
//!   the controller when the process, and so the numbering, changed).
//! - While the spool has room no event is lost. When it is full the **new** event is dropped
//!   (the ones already spooled are kept for the controller) and counted in
//!   [`Ledger::overflowed`]; it still reaches the log.
//! - [`Ledger::ack`] frees room for everything up to and including the acknowledged sequence.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Largest page [`Ledger::events_after`] returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 10_000;

/// What happened to a request or tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed and proxied.
    Allow,
    /// Refused (policy, identity, budget or malformed input).
    Deny,
    /// Allowed because the policy is in `report` mode, but a domain or port rule would deny it.
    WouldDeny,
}

/// One request or tunnel, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct LedgerEvent {
    /// The sandbox id (`None` in standalone mode or when identification failed).
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
    /// Bytes sent from the client to the upstream.
    pub bytes_up: u64,
    /// Bytes sent from the upstream to the client.
    pub bytes_down: u64,
    /// When the request or tunnel started.
    pub start: SystemTime,
    /// How long it lasted.
    pub duration: Duration,
    /// The client's address.
    pub client: SocketAddr,
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
}

/// One page of spooled events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// Events with `seq > after`, oldest first.
    pub events: Vec<SpooledEvent>,
    /// The cursor for the next call: the last returned `seq`, or `after` when none was returned.
    pub next: u64,
    /// Events dropped because the spool was full, since the process started.
    pub overflowed: u64,
}

/// The ledger: log line plus bounded spool.
#[derive(Debug)]
pub struct Ledger {
    capacity: usize,
    spool: Mutex<Spool>,
    overflowed: AtomicU64,
}

#[derive(Debug)]
struct Spool {
    events: VecDeque<SpooledEvent>,
    /// The seq the next spooled event gets.
    next_seq: u64,
}

// === impl Ledger ===

impl Ledger {
    /// A ledger whose spool holds at most `capacity` unacknowledged events.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            spool: Mutex::new(Spool {
                events: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 1,
            }),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Logs the event and spools it (or counts it as overflow when the spool is full).
    pub fn record(&self, event: LedgerEvent) {
        let seq = self.spool(&event);
        emit(&event, seq);
    }

    fn spool(&self, event: &LedgerEvent) -> Option<u64> {
        // Copy the event before taking the lock so the critical section is a check and a push.
        let mut spooled = SpooledEvent::new(0, event);
        let mut spool = self.lock();
        if spool.events.len() >= self.capacity {
            drop(spool);
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        spooled.seq = spool.next_seq;
        spool.next_seq += 1;
        spool.events.push_back(spooled);
        Some(spool.next_seq - 1)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) spooled events with `seq > after`, oldest first.
    pub fn events_after(&self, after: u64, limit: usize) -> EventPage {
        let limit = limit.min(MAX_PAGE);
        let spool = self.lock();
        let skip = match spool.events.front() {
            // Seqs in the spool are consecutive, so the offset is arithmetic.
            Some(first) => {
                usize::try_from(after.saturating_sub(first.seq - 1)).unwrap_or(usize::MAX)
            }
            None => 0,
        };
        let events: Vec<SpooledEvent> = spool
            .events
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        drop(spool);
        let next = events.last().map_or(after, |e| e.seq);
        EventPage {
            events,
            next,
            overflowed: self.overflowed(),
        }
    }

    /// Drops every spooled event with `seq <= upto`, freeing their room.
    pub fn ack(&self, upto: u64) {
        let mut spool = self.lock();
        while spool.events.front().is_some_and(|e| e.seq <= upto) {
            spool.events.pop_front();
        }
    }

    /// Unacknowledged events in the spool.
    pub fn depth(&self) -> usize {
        self.lock().events.len()
    }

    /// The spool's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events dropped because the spool was full, since the process started.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    // A poisoned lock only means a panic elsewhere while holding it; every mutation here is a
    // single push or pop, so the spool is still consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl SpooledEvent ===

impl SpooledEvent {
    fn new(seq: u64, e: &LedgerEvent) -> Self {
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
        }
    }
}

// === impl Decision ===

impl Decision {
    /// `allow`, `deny` or `would_deny`: the log field and the metrics label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::WouldDeny => "would_deny",
        }
    }
}

/// The one canonical log line per request or tunnel.
fn emit(e: &LedgerEvent, seq: Option<u64>) {
    tracing::info!(
        target: "airlock_egress::ledger",
        duration_ms = millis(e.duration),
        ledger.seq = seq,
        sandbox.id = e.sandbox.as_deref(),
        policy.generation = e.generation,
        request.method = %e.method,
        dst.host = %e.host,
        dst.port = e.port,
        dst.addr = e.addr.map(tracing::field::display),
        policy.decision = e.decision.as_str(),
        policy.reason = e.reason,
        policy.rule = e.rule.as_deref(),
        bytes.tx = e.bytes_up,
        bytes.rx = e.bytes_down,
        client.addr = %e.client,
        "proxy decision"
    );
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
