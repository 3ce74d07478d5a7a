//! The Prometheus text, pinned.

use super::*;

#[test]
fn routes_are_templates_and_unknown_paths_are_other() {
    let cases = [
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/v1/sandboxes", "/v1/sandboxes"),
        // axum does not strip a trailing slash: that path is a 404.
        ("/v1/sandboxes/", "other"),
        ("/v1/sandboxes/01abc", "/v1/sandboxes/{id}"),
        ("/v1/sandboxes/01abc/exec", "/v1/sandboxes/{id}/exec"),
        ("/v1/sandboxes/01abc/logs", "/v1/sandboxes/{id}/logs"),
        ("/v1/sandboxes/01abc/nope", "other"),
        ("/v1/sandboxes/01abc/exec/more", "other"),
        ("/v1/sandboxes//exec", "other"),
        ("/v1/sandboxes/{id}", "/v1/sandboxes/{id}"),
        ("/etc/passwd", "other"),
        ("", "other"),
    ];
    for (path, want) in cases {
        assert_eq!(route_label(path), want, "{path}");
    }
    assert_eq!(method_label("GET"), "GET");
    assert_eq!(method_label("BREW"), "other");
}

#[test]
fn renders_counters_requests_and_gauges_in_the_text_format() {
    let metrics = Metrics::default();
    metrics.sandbox_created();
    metrics.sandbox_created();
    metrics.sandbox_deleted();
    metrics.reconcile_pass(PassKind::Full, 3, 1);
    metrics.reconcile_pass(PassKind::Timeout, 0, 0);
    metrics.reconcile_pass(PassKind::Timeout, 2, 0);
    metrics.request("POST", "/v1/sandboxes", 201);
    metrics.request("POST", "/v1/sandboxes", 201);
    metrics.request("GET", "/v1/sandboxes/01abc", 404);
    metrics.request("BREW", "/coffee", 404);
    let gauges = Gauges {
        states: Some(vec![("running", 2), ("exited", 0)]),
        store_ping: Some(Duration::from_millis(1)),
        docker_ping: None,
    };
    let text = metrics.render(&gauges);
    let want = "\
# HELP airlock_sandbox_creates_total Sandboxes created.
# TYPE airlock_sandbox_creates_total counter
airlock_sandbox_creates_total 2
# HELP airlock_sandbox_deletes_total Sandboxes deleted.
# TYPE airlock_sandbox_deletes_total counter
airlock_sandbox_deletes_total 1
# HELP airlock_reconcile_passes_total Reconciler passes by kind.
# TYPE airlock_reconcile_passes_total counter
airlock_reconcile_passes_total{kind=\"full\"} 1
airlock_reconcile_passes_total{kind=\"timeout\"} 2
# HELP airlock_reconcile_actions_total Reconciler actions by result.
# TYPE airlock_reconcile_actions_total counter
airlock_reconcile_actions_total{result=\"applied\"} 5
airlock_reconcile_actions_total{result=\"failed\"} 1
# HELP airlock_http_requests_total API requests by method, route and status.
# TYPE airlock_http_requests_total counter
airlock_http_requests_total{method=\"GET\",route=\"/v1/sandboxes/{id}\",status=\"404\"} 1
airlock_http_requests_total{method=\"POST\",route=\"/v1/sandboxes\",status=\"201\"} 2
airlock_http_requests_total{method=\"other\",route=\"other\",status=\"404\"} 1
# HELP airlock_sandboxes Stored sandboxes by state.
# TYPE airlock_sandboxes gauge
airlock_sandboxes{state=\"running\"} 2
airlock_sandboxes{state=\"exited\"} 0
# HELP airlock_dependency_up Whether the dependency answered its ping at this scrape.
# TYPE airlock_dependency_up gauge
airlock_dependency_up{dependency=\"store\"} 1
airlock_dependency_up{dependency=\"docker\"} 0
# HELP airlock_dependency_ping_seconds Ping latency of each dependency at this scrape.
# TYPE airlock_dependency_ping_seconds gauge
airlock_dependency_ping_seconds{dependency=\"store\"} 0.001
";
    assert_eq!(text, want);
}

#[test]
fn every_sample_line_is_well_formed() {
    let metrics = Metrics::default();
    metrics.request("GET", "/healthz", 200);
    let text = metrics.render(&Gauges::default());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(series.starts_with("airlock_"), "{line}");
        assert_eq!(
            series.matches('{').count(),
            series.matches('}').count(),
            "{line}"
        );
    }
}
