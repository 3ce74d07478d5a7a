//! Per-source caps, so that one sandbox cannot starve the others of the proxy (the source
//! address identifies the sandbox): a cap on open client connections and a cap on connections
//! still sending a request head (holding part of a head that has not arrived whole; a head that
//! arrives in one read is never counted, so a burst of ordinary requests does not trip it).
//!
//! Over a cap the new connection, or the head that would pass it, is refused at once with a
//! `429` JSON answer; nothing waits for room. The proxy's global connection cap still applies
//! on top.
//!
//! Counts live in one map under a mutex, touched once per connection and per partial head; an
//! entry disappears when its source holds nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::EgressError;

/// Refusals per source that may linger at once (reading the client's leftover input so the
/// answer is not reset away); beyond it a refusal is written and the socket closed at once.
const MAX_LINGERING: usize = 64;

/// The caps and the per-source counts.
#[derive(Debug)]
pub(crate) struct SourceCaps {
    max_open: usize,
    max_pending: usize,
    counts: Mutex<HashMap<IpAddr, Counts>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    open: usize,
    pending: usize,
    lingering: usize,
}

/// Which count a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Pending,
    Lingering,
}

/// One unit of one source's count; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct Slot {
    caps: Arc<SourceCaps>,
    ip: IpAddr,
    kind: Kind,
}

/// Which cap refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// Too many open connections from the source.
    Connections(usize),
    /// Too many connections from the source still sending a head.
    Heads(usize),
}

// === impl SourceCaps ===

impl SourceCaps {
    pub(crate) fn new(max_open: usize, max_pending: usize) -> Self {
        Self {
            max_open,
            max_pending,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// A new connection from `ip`: its open slot, or the cap the source is already at.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Over> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let entry = counts.entry(ip).or_default();
        let over = if entry.open >= self.max_open {
            Some(Over::Connections(self.max_open))
        } else if entry.pending >= self.max_pending {
            Some(Over::Heads(self.max_pending))
        } else {
            None
        };
        if let Some(over) = over {
            if entry.is_empty() {
                counts.remove(&ip);
            }
            return Err(over);
        }
        entry.open += 1;
        drop(counts);
        Ok(self.slot(ip, Kind::Open))
    }

    /// A connection from `ip` holds part of a head.
    pub(crate) fn head(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Over> {
        self.take(ip, Kind::Pending, self.max_pending)
            .ok_or(Over::Heads(self.max_pending))
    }

    /// Room to linger after a refusal, if the source does not already hold too many.
    pub(crate) fn linger(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        self.take(ip, Kind::Lingering, MAX_LINGERING)
    }

    fn take(self: &Arc<Self>, ip: IpAddr, kind: Kind, max: usize) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let entry = counts.entry(ip).or_default();
        let count = entry.get_mut(kind);
        if *count >= max {
            if entry.is_empty() {
                counts.remove(&ip);
            }
            return None;
        }
        *count += 1;
        drop(counts);
        Some(self.slot(ip, kind))
    }

    fn slot(self: &Arc<Self>, ip: IpAddr, kind: Kind) -> Slot {
        Slot {
            caps: Arc::clone(self),
            ip,
            kind,
        }
    }

    fn give_back(&self, ip: IpAddr, kind: Kind) {
        let mut counts = self.lock();
        let Some(entry) = counts.get_mut(&ip) else {
            return;
        };
        let count = entry.get_mut(kind);
        *count = count.saturating_sub(1);
        if entry.is_empty() {
            counts.remove(&ip);
        }
    }

    /// `(open, pending)` for `ip`.
    #[cfg(test)]
    pub(crate) fn counts(&self, ip: IpAddr) -> (usize, usize) {
        self.lock()
            .get(&ip.to_canonical())
            .map_or((0, 0), |c| (c.open, c.pending))
    }

    // A poisoned lock means a panic while holding it; every update is a single increment or
    // decrement, so the counts are still consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Counts>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Counts ===

impl Counts {
    fn get_mut(&mut self, kind: Kind) -> &mut usize {
        match kind {
            Kind::Open => &mut self.open,
            Kind::Pending => &mut self.pending,
            Kind::Lingering => &mut self.lingering,
        }
    }

    fn is_empty(&self) -> bool {
        self.open == 0 && self.pending == 0 && self.lingering == 0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.give_back(self.ip, self.kind);
    }
}

// === impl Over ===

impl Over {
    /// The refusal code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Over::Connections(_) => "connection_limit",
            Over::Heads(_) => "head_limit",
        }
    }

    /// The `429` refusal.
    pub(crate) fn error(self) -> EgressError {
        match self {
            Over::Connections(max) => EgressError::limited(
                "connection_limit",
                format!("this source already holds {max} open connections to the proxy"),
            ),
            Over::Heads(max) => EgressError::limited(
                "head_limit",
                format!("this source already holds {max} connections still sending a request head"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_per_source_and_slots_give_back() {
        let caps = Arc::new(SourceCaps::new(2, 1));
        let a: IpAddr = "10.213.0.3".parse().unwrap();
        let b: IpAddr = "10.213.0.11".parse().unwrap();
        let open_a = caps.admit(a).unwrap();
        let pending_a = caps.head(a).unwrap();
        assert_eq!(caps.head(a).unwrap_err(), Over::Heads(1));
        assert_eq!(caps.admit(a).unwrap_err(), Over::Heads(1));
        drop(pending_a);
        let open_a2 = caps.admit("::ffff:10.213.0.3".parse().unwrap()).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Over::Connections(2));
        // Another source is untouched by A's caps.
        let _b = caps.admit(b).unwrap();
        let _pending_b = caps.head(b).unwrap();
        assert_eq!(caps.counts(a), (2, 0));
        drop((open_a, open_a2));
        assert_eq!(caps.counts(a), (0, 0));
        assert_eq!(Over::Heads(1).error().status().as_u16(), 429);
        assert_eq!(Over::Connections(1).error().code(), "connection_limit");
    }

    #[test]
    fn an_empty_source_leaves_no_entry() {
        let caps = Arc::new(SourceCaps::new(1, 1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drop(caps.admit(a).unwrap());
        assert!(caps.admit(a).is_ok(), "the slot came back");
        let linger = caps.linger(a);
        assert!(linger.is_some());
        drop(linger);
        assert!(caps.lock().is_empty());
    }
}
