//! Prometheus metrics for the proxy, kept in atomics and rendered as text format 0.0.4.
//!
//! Series:
//! - `airlock_egress_requests_total{decision,reason}`: requests and tunnels by decision/reason;
//! - `airlock_egress_open_tunnels` (gauge) and `airlock_egress_tunnels_total`;
//! - `airlock_egress_bytes_total{direction="up"|"down"}`;
//! - `airlock_egress_dns_seconds` (histogram);
//! - `airlock_egress_connections_rejected_total{reason="overload"|"connection_limit"|"head_limit"}`;
//! - `airlock_egress_spool_depth`, `airlock_egress_spool_capacity` and
//!   `airlock_egress_spool_overflow_total`, read from the [`Ledger`] at render time.
//!
//! The hot paths are one atomic add each; [`Metrics::record_decision`] takes a read lock on the
//! label map and only writes the first time a (decision, reason) pair is seen. Labels are
//! `&'static str`, so the series count is bounded by the code, not by clients.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use crate::ledger::Ledger;

/// Upper bounds (seconds) of the DNS latency histogram buckets; `+Inf` is implied.
const DNS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The proxy's counters and gauges.
#[derive(Debug)]
pub struct Metrics {
    requests: RwLock<HashMap<(&'static str, &'static str), AtomicU64>>,
    open_tunnels: AtomicU64,
    tunnels_total: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    dns_buckets: [AtomicU64; DNS_BUCKETS.len()],
    dns_count: AtomicU64,
    dns_sum_nanos: AtomicU64,
    rejected_overload: AtomicU64,
    rejected_connection_limit: AtomicU64,
    rejected_head_limit: AtomicU64,
}

// === impl Metrics ===

impl Metrics {
    /// Zeroed metrics.
    pub fn new() -> Self {
        Self {
            requests: RwLock::new(HashMap::new()),
            open_tunnels: AtomicU64::new(0),
            tunnels_total: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            dns_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            dns_count: AtomicU64::new(0),
            dns_sum_nanos: AtomicU64::new(0),
            rejected_overload: AtomicU64::new(0),
            rejected_connection_limit: AtomicU64::new(0),
            rejected_head_limit: AtomicU64::new(0),
        }
    }

    /// Counts one request or tunnel. `decision` is `allow`, `deny` or `would_deny` (anything
    /// else is counted as `other`, to keep the label set bounded).
    pub fn record_decision(&self, decision: &str, reason: &'static str) {
        let key = (static_decision(decision), reason);
        if let Some(counter) = self.read_requests().get(&key) {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.requests
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A CONNECT tunnel was established.
    pub fn tunnel_opened(&self) {
        self.open_tunnels.fetch_add(1, Ordering::Relaxed);
        self.tunnels_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A CONNECT tunnel ended (pair every call with one [`Metrics::tunnel_opened`]).
    pub fn tunnel_closed(&self) {
        // Saturate instead of wrapping if a caller ever closes twice.
        let _ = self
            .open_tunnels
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Adds proxied bytes: `up` from clients to upstreams, `down` back.
    pub fn add_bytes(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    /// Observes one DNS resolution's latency.
    pub fn observe_dns(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        if let Some(i) = DNS_BUCKETS.iter().position(|&le| secs <= le) {
            if let Some(bucket) = self.dns_buckets.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dns_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.dns_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A client connection was refused because the global connection cap was reached.
    pub fn connection_rejected_overload(&self) {
        self.rejected_overload.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection was refused at accept over a per-source cap (`connection_limit` or
    /// `head_limit`; any other code counts as `head_limit`, to keep the label set bounded).
    pub fn connection_rejected(&self, code: &str) {
        let counter = match code {
            "connection_limit" => &self.rejected_connection_limit,
            _ => &self.rejected_head_limit,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Tunnels open right now.
    pub fn open_tunnels(&self) -> u64 {
        self.open_tunnels.load(Ordering::Relaxed)
    }

    /// The count for one (decision, reason) pair.
    pub fn requests(&self, decision: &str, reason: &str) -> u64 {
        self.read_requests()
            .get(&(static_decision(decision), reason))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Renders every series in the Prometheus text format, reading spool gauges from `ledger`.
    pub fn render(&self, ledger: &Ledger) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_traffic(&mut out);
        self.render_dns(&mut out);
        self.render_rejections(&mut out);
        render_spool(&mut out, ledger);
        out
    }

    fn render_traffic(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            out,
            "airlock_egress_open_tunnels",
            "CONNECT tunnels open now.",
            load(&self.open_tunnels),
        );
        counter(
            out,
            "airlock_egress_tunnels_total",
            "CONNECT tunnels established.",
            load(&self.tunnels_total),
        );
        header(
            out,
            "airlock_egress_bytes_total",
            "Bytes proxied.",
            "counter",
        );
        for (direction, bytes) in [("up", &self.bytes_up), ("down", &self.bytes_down)] {
            let _ = writeln!(
                out,
                "airlock_egress_bytes_total{{direction=\"{direction}\"}} {}",
                load(bytes)
            );
        }
    }

    fn render_rejections(&self, out: &mut String) {
        header(
            out,
            "airlock_egress_connections_rejected_total",
            "Client connections refused before any request was read.",
            "counter",
        );
        for (reason, count) in [
            ("overload", &self.rejected_overload),
            ("connection_limit", &self.rejected_connection_limit),
            ("head_limit", &self.rejected_head_limit),
        ] {
            let _ = writeln!(
                out,
                "airlock_egress_connections_rejected_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }

    fn render_requests(&self, out: &mut String) {
        header(
            out,
            "airlock_egress_requests_total",
            "Requests and tunnels by decision and reason.",
            "counter",
        );
        let mut rows: Vec<_> = self
            .read_requests()
            .iter()
            .map(|(&(d, r), c)| (d, r, c.load(Ordering::Relaxed)))
            .collect();
        rows.sort_unstable();
        for (decision, reason, n) in rows {
            let _ = writeln!(
                out,
                "airlock_egress_requests_total{{decision=\"{decision}\",reason=\"{}\"}} {n}",
                escape_label(reason)
            );
        }
    }

    fn render_dns(&self, out: &mut String) {
        header(
            out,
            "airlock_egress_dns_seconds",
            "DNS resolution latency.",
            "histogram",
        );
        let mut cumulative = 0;
        for (le, bucket) in DNS_BUCKETS.iter().zip(&self.dns_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "airlock_egress_dns_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.dns_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "airlock_egress_dns_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = Duration::from_nanos(self.dns_sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "airlock_egress_dns_seconds_sum {sum}");
        let _ = writeln!(out, "airlock_egress_dns_seconds_count {count}");
    }

    fn read_requests(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<(&'static str, &'static str), AtomicU64>> {
        // A poisoned map is still a valid map: entries are only ever inserted whole.
        self.requests.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn static_decision(decision: &str) -> &'static str {
    match decision {
        "allow" => "allow",
        "deny" => "deny",
        "would_deny" => "would_deny",
        _ => "other",
    }
}

/// The spool's gauges, read from the ledger at render time.
fn render_spool(out: &mut String, ledger: &Ledger) {
    let depth = u64::try_from(ledger.depth()).unwrap_or(u64::MAX);
    let capacity = u64::try_from(ledger.capacity()).unwrap_or(u64::MAX);
    gauge(
        out,
        "airlock_egress_spool_depth",
        "Ledger events waiting for the controller.",
        depth,
    );
    gauge(
        out,
        "airlock_egress_spool_capacity",
        "Ledger spool capacity.",
        capacity,
    );
    counter(
        out,
        "airlock_egress_spool_overflow_total",
        "Ledger events that fit nowhere in the spool, not even in a ledger_full summary.",
        ledger.overflowed(),
    );
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value per the text format (backslash, quote, newline).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
