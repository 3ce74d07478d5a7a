//! Idle upstream HTTP/1.1 connections kept for forwarded requests.
//!
//! Every request is still parsed, identified and judged on its own; only then may it reuse an
//! idle connection, and only one whose peer is one of the addresses *this* request was allowed
//! (the key is the exact checked `SocketAddr`), opened for the same sandbox under the same policy
//! generation. A connection returns to the pool only after its response body was read to the end.
//! Connections of a revoked generation are closed by their driver task and never handed out.
//! The pool is bounded per key and in total, and entries expire after a short idle time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::body::MeteredBody;

/// Idle connections kept per key.
const MAX_IDLE_PER_KEY: usize = 32;
/// Idle connections kept in total.
const MAX_IDLE_TOTAL: usize = 512;
/// Longest time a connection may sit idle before it is discarded.
const MAX_IDLE_FOR: Duration = Duration::from_secs(30);

/// The request side of an upstream HTTP/1.1 connection.
pub(crate) type UpstreamSender = SendRequest<MeteredBody<Incoming>>;

/// What a pooled connection may be reused for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    /// The checked address the connection is connected to.
    pub(crate) addr: SocketAddr,
    /// The sandbox it was opened for.
    pub(crate) sandbox: Option<String>,
    /// The policy generation it was opened under.
    pub(crate) generation: u64,
}

/// Bounded store of idle upstream connections.
#[derive(Debug)]
pub(crate) struct UpstreamPool {
    idle: Mutex<Idle>,
    idle_for: Duration,
}

#[derive(Debug, Default)]
struct Idle {
    by_key: HashMap<PoolKey, Vec<(UpstreamSender, Instant)>>,
    total: usize,
}

// === impl UpstreamPool ===

impl UpstreamPool {
    /// An empty pool whose entries live at most `idle_timeout` (capped at 30 s).
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(Idle::default()),
            idle_for: idle_timeout.min(MAX_IDLE_FOR),
        }
    }

    /// Takes an open idle connection to one of `addrs` (in order), opened for this sandbox and
    /// generation.
    pub(crate) fn checkout(
        &self,
        addrs: &[SocketAddr],
        sandbox: Option<&str>,
        generation: u64,
    ) -> Option<(PoolKey, UpstreamSender)> {
        let mut idle = self.lock();
        for &addr in addrs {
            let key = PoolKey {
                addr,
                sandbox: sandbox.map(str::to_owned),
                generation,
            };
            while let Some((sender, since)) = idle.take(&key) {
                // Not ready means the previous exchange is still draining: never wait for it.
                if since.elapsed() < self.idle_for && sender.is_ready() {
                    return Some((key, sender));
                }
            }
        }
        None
    }

    /// Returns a connection whose exchange finished cleanly.
    pub(crate) fn checkin(&self, key: PoolKey, sender: UpstreamSender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let idle_for = self.idle_for;
        let total_before = idle.total;
        let list = idle.by_key.entry(key).or_default();
        let before = list.len();
        list.retain(|(s, since)| since.elapsed() < idle_for && !s.is_closed());
        let purged = before - list.len();
        let keep = list.len() < MAX_IDLE_PER_KEY && total_before - purged < MAX_IDLE_TOTAL;
        if keep {
            list.push((sender, Instant::now()));
        }
        idle.total = total_before - purged + usize::from(keep);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Idle ===

impl Idle {
    fn take(&mut self, key: &PoolKey) -> Option<(UpstreamSender, Instant)> {
        let list = self.by_key.get_mut(key)?;
        let entry = list.pop();
        if list.is_empty() {
            self.by_key.remove(key);
        }
        if entry.is_some() {
            self.total = self.total.saturating_sub(1);
        }
        entry
    }
}
