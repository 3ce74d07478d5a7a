//! The warm pools' series: `airlock_pool_ready{pool}` (gauge, set by the refill),
//! `airlock_pool_claims_total`, `airlock_pool_miss_total{reason}` and the histogram
//! `airlock_pool_claim_seconds` (API request → running). The `pool` label is a configured
//! pool's key hash and `reason` one of the fixed miss reasons, so neither grows with input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{header, sample};

/// The histogram's upper bounds, in seconds.
const BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The pools' counters.
#[derive(Debug, Default)]
pub(super) struct PoolCounters {
    ready: BTreeMap<String, u64>,
    misses: BTreeMap<&'static str, u64>,
    /// Per bucket of [`BUCKETS`], then `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    claims: u64,
    sum: f64,
}

// === impl PoolCounters ===

impl PoolCounters {
    pub(super) fn ready(&mut self, pool: &str, ready: u64) {
        self.ready.insert(pool.to_owned(), ready);
    }

    pub(super) fn miss(&mut self, reason: &'static str) {
        *self.misses.entry(reason).or_insert(0) += 1;
    }

    pub(super) fn claimed(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket] += 1;
        self.claims += 1;
        self.sum += seconds;
    }

    /// Renders the series once a pool reported (a node without pools shows none).
    pub(super) fn render(&self, out: &mut String) {
        if self.ready.is_empty() && self.claims == 0 && self.misses.is_empty() {
            return;
        }
        let name = "airlock_pool_ready";
        header(out, name, "gauge", "Ready members per pool (key hash).");
        for (pool, n) in &self.ready {
            sample(out, name, &[("pool", pool)], *n);
        }
        let name = "airlock_pool_claims_total";
        header(
            out,
            name,
            "counter",
            "Creates served by a warm pool member.",
        );
        sample(out, name, &[], self.claims);
        let name = "airlock_pool_miss_total";
        header(
            out,
            name,
            "counter",
            "Creates that went cold although pools are configured, by reason.",
        );
        for (reason, n) in &self.misses {
            sample(out, name, &[("reason", reason)], *n);
        }
        let name = "airlock_pool_claim_seconds";
        header(
            out,
            name,
            "histogram",
            "Warm claims, API request to running.",
        );
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.claims);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.claims);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_fall_into_cumulative_buckets() {
        let mut counters = PoolCounters::default();
        counters.claimed(Duration::from_millis(30));
        counters.claimed(Duration::from_millis(80));
        counters.claimed(Duration::from_secs(9));
        counters.miss("empty");
        counters.ready("0123456789abcdef", 3);
        let mut out = String::new();
        counters.render(&mut out);
        assert!(out.contains("airlock_pool_claim_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(out.contains("airlock_pool_claim_seconds_bucket{le=\"0.1\"} 2\n"));
        assert!(out.contains("airlock_pool_claim_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("airlock_pool_miss_total{reason=\"empty\"} 1\n"));
        assert!(out.contains("airlock_pool_ready{pool=\"0123456789abcdef\"} 3\n"));
    }
}
