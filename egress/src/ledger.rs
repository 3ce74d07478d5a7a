//! The egress ledger: one canonical event per proxied request or tunnel.
//!
//! [`Ledger::record`] writes each event twice: as one `info!` log line (target
//! `airlock_egress::ledger`, message `proxy decision`, dotted fields) and into a bounded
//! in-memory spool that the controller pages through with a cursor and acknowledges over the
//! admin API.
//!
//! Invariants:
//! - Spooled events get consecutive sequence numbers starting at 1, in the order they were
//!   spooled; a sequence number is never reused within a process (the registry's boot id tells
//!   the controller when the process, and so the numbering, changed).
//! - Room is accounted fairly per key (sandbox, or source address): see `spool`. One sandbox's
//!   flood never takes the room another sandbox's events need.
//! - An identified sandbox's request or tunnel [`Ledger::reserve`]s its slot before any upstream
//!   byte, so everything a sandbox is let through is recorded; without room it is refused
//!   (`ledger_full`) until the controller drains.
//! - A refusal that finds no room is counted for its key and spooled later as one summary event
//!   (`reason: "ledger_full"`, `count: N`). Only what fits nowhere (an unreserved allowed event
//!   in standalone mode, or a refusal beyond the bound on waiting keys) is counted in
//!   [`Ledger::overflowed`]. Every event reaches the log either way.
//! - [`Ledger::ack`] frees room for everything up to and including the acknowledged sequence.
//!
//! What the admin API serves is [`airlock_wire::Event`], with its [`airlock_wire::Outcome`]: the
//! same types the controller reads.

mod event;
mod spool;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use airlock_wire::Event;

use event::millis;
pub use event::{EventPage, InnerRequest, Inspected, LedgerEvent, LedgerKey};
use spool::{Limits, Offered, Spool};

/// Largest page [`Ledger::events_after`] returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 10_000;
/// Default for the most events one key may hold (`AIRLOCK_EGRESS_SPOOL_PER_SANDBOX`).
pub const DEFAULT_PER_KEY: usize = 4096;

/// The ledger: log line plus bounded, fairly shared spool.
#[derive(Debug)]
pub struct Ledger {
    limits: Limits,
    spool: Mutex<Spool>,
    overflowed: AtomicU64,
    /// The last tunnel id handed out by [`Ledger::next_tunnel`].
    tunnels: AtomicU64,
}

/// A slot taken for one request or tunnel; [`Ledger::record_reserved`] fills it, and dropping
/// it unused gives it back.
#[derive(Debug)]
#[must_use = "dropping the reservation gives the slot back"]
pub struct Reservation {
    ledger: Arc<Ledger>,
    key: Option<LedgerKey>,
}

/// The key has no room: its requests are refused until the controller drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sandbox's ledger share is full; new requests are refused until it is drained")]
pub struct LedgerFull;

// === impl Ledger ===

impl Ledger {
    /// A ledger whose spool holds `capacity` unacknowledged events (up to twice that while
    /// keys share it), at most [`DEFAULT_PER_KEY`] per key.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_PER_KEY)
    }

    /// A ledger with an explicit per-key limit.
    pub fn with_limits(capacity: usize, per_key: usize) -> Self {
        let limits = Limits { capacity, per_key };
        Self {
            limits,
            spool: Mutex::new(Spool::new(limits)),
            overflowed: AtomicU64::new(0),
            tunnels: AtomicU64::new(0),
        }
    }

    /// A new inspected tunnel's id: 1, 2, ... within this process. The controller stores
    /// events with the proxy's boot id, so `(boot id, tunnel)` names one tunnel for good; the
    /// tunnel's own event and the events of the requests inside it carry the same id.
    pub fn next_tunnel(&self) -> u64 {
        self.tunnels.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes a slot for an event of `key`, or refuses when the key has no room.
    pub fn reserve(self: &Arc<Self>, key: LedgerKey) -> Result<Reservation, LedgerFull> {
        if !self.lock().reserve(&key) {
            return Err(LedgerFull);
        }
        Ok(Reservation {
            ledger: Arc::clone(self),
            key: Some(key),
        })
    }

    /// Logs the event and spools it (or counts it, see the module invariants).
    pub fn record(&self, event: LedgerEvent) {
        let offered = self.lock().offer(event.key(), &event);
        let seq = match offered {
            Offered::Spooled(seq) => Some(seq),
            Offered::Waiting => None,
            Offered::Lost => {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        emit(&event, seq);
    }

    /// Logs the event and spools it into its reserved slot.
    pub fn record_reserved(&self, event: LedgerEvent, mut reservation: Reservation) {
        let seq = match reservation.key.take() {
            Some(key) => self.lock().push_reserved(key, &event),
            None => return self.record(event),
        };
        emit(&event, Some(seq));
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) spooled events with `seq > after`, oldest first.
    pub fn events_after(&self, after: u64, limit: usize) -> EventPage {
        let limit = limit.min(MAX_PAGE);
        let spool = self.lock();
        let queue = spool.events();
        let skip = match queue.front() {
            // Seqs in the spool are consecutive, so the offset is arithmetic.
            Some((_, first)) => {
                usize::try_from(after.saturating_sub(first.seq - 1)).unwrap_or(usize::MAX)
            }
            None => 0,
        };
        let events: Vec<Event> = queue
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        drop(spool);
        let next = events.last().map_or(after, |e| e.seq);
        EventPage {
            events,
            next,
            overflowed: self.overflowed(),
        }
    }

    /// Drops every spooled event with `seq <= upto`, freeing their room (and letting waiting
    /// summaries out).
    pub fn ack(&self, upto: u64) {
        self.lock().ack(upto);
    }

    /// Unacknowledged events in the spool.
    pub fn depth(&self) -> usize {
        self.lock().events().len()
    }

    /// The spool's capacity.
    pub fn capacity(&self) -> usize {
        self.limits.capacity
    }

    /// Refusals counted for a summary that has not been spooled yet.
    pub fn waiting(&self) -> u64 {
        self.lock().waiting()
    }

    /// Events that could not be recorded in the spool at all, since the process started.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    // A poisoned lock only means a panic elsewhere while holding it; every mutation here
    // leaves the counts consistent before anything that could panic.
    fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Reservation ===

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.ledger.lock().release(&key);
        }
    }
}

/// The one canonical log line per request or tunnel.
fn emit(e: &LedgerEvent, seq: Option<u64>) {
    let inner = e.inspected.as_ref().and_then(|i| i.request.as_ref());
    tracing::info!(
        target: "airlock_egress::ledger",
        duration_ms = millis(e.duration),
        ledger.seq = seq,
        sandbox.id = e.sandbox.as_deref(),
        policy.generation = e.generation,
        policy.ceiling = e.ceiling.as_deref(),
        request.method = %e.method,
        dst.host = %e.host,
        dst.port = e.port,
        dst.addr = e.addr.map(tracing::field::display),
        policy.decision = e.decision.as_str(),
        policy.reason = e.reason,
        policy.rule = e.rule.as_deref(),
        bytes.tx = e.bytes_up,
        bytes.rx = e.bytes_down,
        request.count = e.count,
        client.addr = %e.client,
        tunnel.id = e.inspected.as_ref().map(|i| i.tunnel),
        tunnel.mode = e.inspected.as_ref().map(|i| i.mode),
        request.path = inner.and_then(|r| r.path.as_deref()),
        response.status = inner.map(|r| r.status),
        credential.name = inner.and_then(|r| r.credential.as_deref()),
        "proxy decision"
    );
}

#[cfg(test)]
mod tests;
