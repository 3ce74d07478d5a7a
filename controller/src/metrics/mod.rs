//! Prometheus metrics: hand-rolled counters rendered in the text exposition format (0.0.4) at
//! `GET /metrics`.
//!
//! - Counters live in memory and restart at zero with the process (Prometheus handles resets).
//! - Gauges that the store or Docker knows (sandboxes by state, ping latency) are read at
//!   scrape time, so they are never stale; each ping is bounded by [`PING_TIMEOUT`].
//! - Label values come only from fixed sets (route templates, known methods, state names),
//!   never from request input, so a client cannot grow the series without bound and no
//!   sandbox id or owner appears.
//! - `/metrics` needs no token, like `/healthz`: it shows counts only. An operator who
//!   exposes the API beyond the scraper should keep `/metrics` off the public listener.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long each scrape-time ping may take before it counts as down.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The API routes, as templates; any other path is counted as `other`.
const ROUTES: [&str; 10] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/sandboxes",
    "/v1/sandboxes/{id}",
    "/v1/sandboxes/{id}/stop",
    "/v1/sandboxes/{id}/wait",
    "/v1/sandboxes/{id}/exec",
    "/v1/sandboxes/{id}/logs",
    "other",
];
/// The methods counted by name; any other is `other`.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"];

/// Label sets and values of one metric family.
type Samples<'a> = Vec<(&'a [(&'a str, &'a str)], u64)>;

/// Which reconciler pass ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    /// A full pass (Docker and the store).
    Full,
    /// A timeout pass.
    Timeout,
}

/// The process's counters; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    creates: AtomicU64,
    deletes: AtomicU64,
    full_passes: AtomicU64,
    timeout_passes: AtomicU64,
    actions_applied: AtomicU64,
    actions_failed: AtomicU64,
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    pool: Mutex<pool::PoolCounters>,
}

/// What a scrape reads from the store and Docker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Sandboxes per state name (every state appears, zero included); `None` when the store
    /// could not be read.
    pub states: Option<Vec<(&'static str, u64)>>,
    /// Store ping latency; `None` when it failed or timed out.
    pub store_ping: Option<Duration>,
    /// DinD ping latency; `None` when it failed or timed out.
    pub docker_ping: Option<Duration>,
}

// === impl Metrics ===

impl Metrics {
    /// Counts a sandbox created (a new one, not an idempotent repeat).
    pub fn sandbox_created(&self) {
        self.inner.creates.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a sandbox deleted.
    pub fn sandbox_deleted(&self) {
        self.inner.deletes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one reconciler pass and the actions it applied and abandoned.
    pub fn reconcile_pass(&self, kind: PassKind, applied: usize, failed: usize) {
        let passes = match kind {
            PassKind::Full => &self.inner.full_passes,
            PassKind::Timeout => &self.inner.timeout_passes,
        };
        passes.fetch_add(1, Ordering::Relaxed);
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let inner = &self.inner;
        inner
            .actions_applied
            .fetch_add(count(applied), Ordering::Relaxed);
        inner
            .actions_failed
            .fetch_add(count(failed), Ordering::Relaxed);
    }

    /// Counts one API request to `path` with `method` that answered `status`.
    pub fn request(&self, method: &str, path: &str, status: u16) {
        let key = (method_label(method), route_label(path), status);
        *self.requests().entry(key).or_insert(0) += 1;
    }

    /// Sets pool `pool`'s (key hash) ready members.
    pub fn pool_ready(&self, pool: &str, ready: u64) {
        self.pool().ready(pool, ready);
    }

    /// Counts a create that went cold although pools are configured.
    pub fn pool_miss(&self, reason: &'static str) {
        self.pool().miss(reason);
    }

    /// Counts a warm claim that took `took` (API request → running).
    pub fn pool_claimed(&self, took: Duration) {
        self.pool().claimed(took);
    }

    fn pool(&self) -> MutexGuard<'_, pool::PoolCounters> {
        // Plain counters, like `requests`.
        self.inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The exposition text, counters plus the scrape-time `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let inner = &self.inner;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let families: [(&str, &str, Samples<'_>); 4] = [
            (
                "airlock_sandbox_creates_total",
                "Sandboxes created.",
                vec![(&[], load(&inner.creates))],
            ),
            (
                "airlock_sandbox_deletes_total",
                "Sandboxes deleted.",
                vec![(&[], load(&inner.deletes))],
            ),
            (
                "airlock_reconcile_passes_total",
                "Reconciler passes by kind.",
                vec![
                    (&[("kind", "full")], load(&inner.full_passes)),
                    (&[("kind", "timeout")], load(&inner.timeout_passes)),
                ],
            ),
            (
                "airlock_reconcile_actions_total",
                "Reconciler actions by result.",
                vec![
                    (&[("result", "applied")], load(&inner.actions_applied)),
                    (&[("result", "failed")], load(&inner.actions_failed)),
                ],
            ),
        ];
        for (name, help, samples) in families {
            header(&mut out, name, "counter", help);
            for (labels, value) in samples {
                sample(&mut out, name, labels, value);
            }
        }
        self.render_requests(&mut out);
        self.pool().render(&mut out);
        render_gauges(&mut out, gauges);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = "airlock_http_requests_total";
        header(
            out,
            name,
            "counter",
            "API requests by method, route and status.",
        );
        for ((method, route, status), n) in self.requests().iter() {
            let status = status.to_string();
            let labels = [
                ("method", *method),
                ("route", *route),
                ("status", status.as_str()),
            ];
            sample(out, name, &labels, *n);
        }
    }

    fn requests(&self) -> MutexGuard<'_, BTreeMap<(&'static str, &'static str, u16), u64>> {
        // Plain counters: a panic elsewhere cannot leave the map inconsistent.
        self.inner
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn render_gauges(out: &mut String, gauges: &Gauges) {
    if let Some(states) = &gauges.states {
        let name = "airlock_sandboxes";
        header(out, name, "gauge", "Stored sandboxes by state.");
        for (state, n) in states {
            sample(out, name, &[("state", state)], *n);
        }
    }
    let name = "airlock_dependency_up";
    header(
        out,
        name,
        "gauge",
        "Whether the dependency answered its ping at this scrape.",
    );
    let pings = [("store", gauges.store_ping), ("docker", gauges.docker_ping)];
    for (dependency, ping) in pings {
        sample(
            out,
            name,
            &[("dependency", dependency)],
            u64::from(ping.is_some()),
        );
    }
    let name = "airlock_dependency_ping_seconds";
    header(
        out,
        name,
        "gauge",
        "Ping latency of each dependency at this scrape.",
    );
    for (dependency, ping) in pings {
        if let Some(ping) = ping {
            let _ = writeln!(
                out,
                "{name}{{dependency=\"{dependency}\"}} {}",
                ping.as_secs_f64()
            );
        }
    }
}

/// The route template `path` was served by, or `other`.
fn route_label(path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').collect();
    let template = match segments.as_slice() {
        ["", "v1", "sandboxes", id] if !id.is_empty() => "/v1/sandboxes/{id}",
        ["", "v1", "sandboxes", id, action] if !id.is_empty() => {
            return ROUTES
                .iter()
                .find(|r| r.strip_prefix("/v1/sandboxes/{id}/") == Some(*action))
                .copied()
                .unwrap_or("other");
        }
        _ => path,
    };
    ROUTES
        .iter()
        .find(|r| **r == template)
        .copied()
        .unwrap_or("other")
}

fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    // Label values are fixed identifiers here, so no escaping is needed.
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let _ = if labels.is_empty() {
        writeln!(out, "{name} {value}")
    } else {
        writeln!(out, "{name}{{{}}} {value}", labels.join(","))
    };
}

mod pool;
#[cfg(test)]
mod tests;
