//! Per-sandbox budgets: `max_connections` (open at the same time) and `max_bytes` (up plus down,
//! over the sandbox's lifetime in this proxy process).
//!
//! One [`Budget`] is shared by every connection of a sandbox. It is lock-free (atomics only), so
//! the proxy can charge bytes on every read without contention. A budget survives a policy
//! generation change for the same sandbox: the registry keeps the `Arc<Budget>` and calls
//! [`Budget::set_limits`] with the new policy's limits, so a sandbox cannot reset its byte count
//! by getting a new policy pushed.
//!
//! Invariants: the open-connection count never exceeds the limit that was in force when each
//! permit was granted, and it returns to zero once every [`ConnectionPermit`] is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Sentinel meaning "no limit" in the atomic limit fields.
const UNLIMITED: u64 = u64::MAX;

/// A per-sandbox connection and byte budget. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Budget {
    /// Maximum concurrently open connections, or [`UNLIMITED`].
    max_connections: AtomicU64,
    /// Maximum bytes (up + down), or [`UNLIMITED`].
    max_bytes: AtomicU64,
    /// Connections currently holding a permit.
    open: AtomicU64,
    /// Bytes charged so far (up + down). May exceed `max_bytes` by the last charge.
    bytes: AtomicU64,
}

/// Proof that a connection slot was taken from a [`Budget`]; dropping it gives the slot back.
#[derive(Debug)]
#[must_use = "dropping the permit releases the connection slot at once"]
pub struct ConnectionPermit {
    budget: Arc<Budget>,
}

/// Why a budget refused: the reason code is the 403 `error` code and the ledger reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    /// The sandbox already has `limit` connections open.
    #[error("the sandbox already has {limit} connections open")]
    Connections {
        /// The `max_connections` limit in force.
        limit: u32,
    },
    /// The sandbox has used up its `limit` bytes.
    #[error("the sandbox has used its budget of {limit} bytes")]
    Bytes {
        /// The `max_bytes` limit in force.
        limit: u64,
    },
}

/// The budget step of a request or tunnel: a connection slot, refused when the sandbox already
/// holds `max_connections` or has spent its bytes. The bytes are checked again once the slot is
/// held, because another connection of the sandbox may have spent them meanwhile.
pub(crate) fn admit(budget: &Arc<Budget>) -> Result<ConnectionPermit, BudgetExceeded> {
    let permit = budget.open()?;
    budget.check_bytes(0)?;
    Ok(permit)
}

// === impl Budget ===

impl Budget {
    /// A budget with the given limits; `None` means unlimited.
    pub fn new(max_connections: Option<u32>, max_bytes: Option<u64>) -> Self {
        Self {
            max_connections: AtomicU64::new(max_connections.map_or(UNLIMITED, u64::from)),
            max_bytes: AtomicU64::new(max_bytes.unwrap_or(UNLIMITED)),
            open: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// A budget without limits (it still counts connections and bytes).
    pub fn unlimited() -> Self {
        Self::new(None, None)
    }

    /// Replaces the limits (after a policy change) while keeping the counts. Connections already
    /// open above a lowered limit keep their permits; new ones are refused until the count drops.
    pub fn set_limits(&self, max_connections: Option<u32>, max_bytes: Option<u64>) {
        self.max_connections.store(
            max_connections.map_or(UNLIMITED, u64::from),
            Ordering::Release,
        );
        self.max_bytes
            .store(max_bytes.unwrap_or(UNLIMITED), Ordering::Release);
    }

    /// Takes a connection slot, or refuses when `max_connections` are already open or the byte
    /// budget is already spent (a new connection could move no byte anyway).
    pub fn open(self: &Arc<Self>) -> Result<ConnectionPermit, BudgetExceeded> {
        self.check_bytes(0)?;
        let limit = self.max_connections.load(Ordering::Acquire);
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            });
        match taken {
            Ok(_) => Ok(ConnectionPermit {
                budget: Arc::clone(self),
            }),
            Err(_) => Err(BudgetExceeded::Connections {
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            }),
        }
    }

    /// Charges `n` bytes (up or down). Returns `Err` once the total goes past `max_bytes`; the
    /// bytes are counted anyway, because they were already moved, and the caller must then close
    /// the connection.
    pub fn add_bytes(&self, n: u64) -> Result<(), BudgetExceeded> {
        let before = self.bytes.fetch_add(n, Ordering::AcqRel);
        let limit = self.max_bytes.load(Ordering::Acquire);
        if before.saturating_add(n) > limit {
            return Err(BudgetExceeded::Bytes { limit });
        }
        Ok(())
    }

    /// Refuses if charging `n` more bytes would go past the byte budget, without charging them.
    pub fn check_bytes(&self, n: u64) -> Result<(), BudgetExceeded> {
        let limit = self.max_bytes.load(Ordering::Acquire);
        let used = self.bytes.load(Ordering::Acquire);
        // At the limit exactly, a new connection (n = 0) is refused too: nothing is left.
        if used.saturating_add(n) > limit || (limit != UNLIMITED && used >= limit && n == 0) {
            return Err(BudgetExceeded::Bytes { limit });
        }
        Ok(())
    }

    /// Bytes charged so far (up plus down).
    pub fn bytes_used(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Bytes left before the budget is spent, or `None` when unlimited.
    pub fn bytes_remaining(&self) -> Option<u64> {
        let limit = self.max_bytes.load(Ordering::Acquire);
        (limit != UNLIMITED).then(|| limit.saturating_sub(self.bytes_used()))
    }

    /// Connections currently holding a permit.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    /// The `max_connections` limit in force, or `None` when unlimited.
    pub fn max_connections(&self) -> Option<u32> {
        let limit = self.max_connections.load(Ordering::Acquire);
        (limit != UNLIMITED).then(|| u32::try_from(limit).unwrap_or(u32::MAX))
    }

    /// The `max_bytes` limit in force, or `None` when unlimited.
    pub fn max_bytes(&self) -> Option<u64> {
        let limit = self.max_bytes.load(Ordering::Acquire);
        (limit != UNLIMITED).then_some(limit)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::unlimited()
    }
}

// === impl ConnectionPermit ===

impl ConnectionPermit {
    /// The budget this permit was taken from (to charge bytes against it).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl BudgetExceeded ===

impl BudgetExceeded {
    /// The stable reason code: `max_connections` or `max_bytes`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Connections { .. } => "max_connections",
            Self::Bytes { .. } => "max_bytes",
        }
    }
}

#[cfg(test)]
mod tests;
