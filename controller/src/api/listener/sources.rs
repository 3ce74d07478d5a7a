//! Open connections per source address, bounded: a slot is taken at accept and given back
//! when the connection (or the WebSocket it became) is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The per-source counts; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Sources {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's slot for its source.
#[derive(Debug)]
pub(super) struct SourceSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

// === impl Sources ===

impl Sources {
    /// At most `cap` connections per address.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, unless it holds `cap` already.
    pub(super) fn admit(&self, ip: IpAddr) -> Option<SourceSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

// === impl SourceSlot ===

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_source_and_gives_slots_back() {
        let sources = Sources::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = sources.admit(a);
        let second = sources.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(sources.admit(a).is_none());
        assert!(sources.admit(b).is_some());
        drop(first);
        assert!(sources.admit(a).is_some());
    }
}
