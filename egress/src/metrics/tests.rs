//! Metrics tests: a full rendering snapshot, gauge saturation and concurrent counting.

use super::*;

#[test]
fn renders_every_series() {
    let metrics = Metrics::new();
    let ledger = Ledger::new(8);
    metrics.record_decision("allow", "allowed");
    metrics.record_decision("allow", "allowed");
    metrics.record_decision("deny", "loopback");
    metrics.record_decision("would_deny", "domain_not_allowed");
    metrics.record_decision("bogus", "x\"y");
    metrics.tunnel_opened();
    metrics.tunnel_opened();
    metrics.tunnel_closed();
    metrics.add_bytes(100, 2000);
    metrics.observe_dns(Duration::from_micros(300));
    metrics.observe_dns(Duration::from_millis(30));
    metrics.observe_dns(Duration::from_secs(10));
    metrics.connection_rejected_overload();
    metrics.connection_rejected("connection_limit");
    metrics.connection_rejected("connection_limit");
    metrics.connection_rejected("head_limit");
    assert_eq!(metrics.requests("allow", "allowed"), 2);
    assert_eq!(metrics.open_tunnels(), 1);
    expect_test::expect![[r#"
        # HELP airlock_egress_requests_total Requests and tunnels by decision and reason.
        # TYPE airlock_egress_requests_total counter
        airlock_egress_requests_total{decision="allow",reason="allowed"} 2
        airlock_egress_requests_total{decision="deny",reason="loopback"} 1
        airlock_egress_requests_total{decision="other",reason="x\"y"} 1
        airlock_egress_requests_total{decision="would_deny",reason="domain_not_allowed"} 1
        # HELP airlock_egress_open_tunnels CONNECT tunnels open now.
        # TYPE airlock_egress_open_tunnels gauge
        airlock_egress_open_tunnels 1
        # HELP airlock_egress_tunnels_total CONNECT tunnels established.
        # TYPE airlock_egress_tunnels_total counter
        airlock_egress_tunnels_total 2
        # HELP airlock_egress_bytes_total Bytes proxied.
        # TYPE airlock_egress_bytes_total counter
        airlock_egress_bytes_total{direction="up"} 100
        airlock_egress_bytes_total{direction="down"} 2000
        # HELP airlock_egress_dns_seconds DNS resolution latency.
        # TYPE airlock_egress_dns_seconds histogram
        airlock_egress_dns_seconds_bucket{le="0.0005"} 1
        airlock_egress_dns_seconds_bucket{le="0.001"} 1
        airlock_egress_dns_seconds_bucket{le="0.0025"} 1
        airlock_egress_dns_seconds_bucket{le="0.005"} 1
        airlock_egress_dns_seconds_bucket{le="0.01"} 1
        airlock_egress_dns_seconds_bucket{le="0.025"} 1
        airlock_egress_dns_seconds_bucket{le="0.05"} 2
        airlock_egress_dns_seconds_bucket{le="0.1"} 2
        airlock_egress_dns_seconds_bucket{le="0.25"} 2
        airlock_egress_dns_seconds_bucket{le="0.5"} 2
        airlock_egress_dns_seconds_bucket{le="1"} 2
        airlock_egress_dns_seconds_bucket{le="2.5"} 2
        airlock_egress_dns_seconds_bucket{le="+Inf"} 3
        airlock_egress_dns_seconds_sum 10.0303
        airlock_egress_dns_seconds_count 3
        # HELP airlock_egress_connections_rejected_total Client connections refused before any request was read.
        # TYPE airlock_egress_connections_rejected_total counter
        airlock_egress_connections_rejected_total{reason="overload"} 1
        airlock_egress_connections_rejected_total{reason="connection_limit"} 2
        airlock_egress_connections_rejected_total{reason="head_limit"} 1
        # HELP airlock_egress_spool_depth Ledger events waiting for the controller.
        # TYPE airlock_egress_spool_depth gauge
        airlock_egress_spool_depth 0
        # HELP airlock_egress_spool_capacity Ledger spool capacity.
        # TYPE airlock_egress_spool_capacity gauge
        airlock_egress_spool_capacity 8
        # HELP airlock_egress_spool_overflow_total Ledger events that fit nowhere in the spool, not even in a ledger_full summary.
        # TYPE airlock_egress_spool_overflow_total counter
        airlock_egress_spool_overflow_total 0
    "#]]
    .assert_eq(&metrics.render(&ledger));
}

#[test]
fn tunnel_gauge_never_wraps() {
    let metrics = Metrics::new();
    metrics.tunnel_closed();
    assert_eq!(metrics.open_tunnels(), 0);
}

#[test]
fn concurrent_decisions_are_all_counted() {
    let metrics = Metrics::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    metrics.record_decision("deny", "private");
                }
            });
        }
    });
    assert_eq!(metrics.requests("deny", "private"), 4000);
}
