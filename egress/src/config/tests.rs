//! Config tests: defaults, every variable, every bad variable reported at once, the resolver
//! rule and the duration grammar.

use std::collections::HashMap;

use super::*;

fn from_map(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_apply_when_unset() {
    let c = from_map(&[]).unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!(c.mode.clone(), ProxyMode::Standalone);
    assert_eq!(c.dns, DnsServers::System);
    assert_eq!(
        c.connect_timeout,
        parse_duration(DEFAULT_CONNECT_TIMEOUT).unwrap()
    );
    assert_eq!(
        c.idle_timeout,
        parse_duration(DEFAULT_IDLE_TIMEOUT).unwrap()
    );
    assert_eq!(
        c.shutdown_grace,
        parse_duration(DEFAULT_SHUTDOWN_GRACE).unwrap()
    );
    assert!(c.allow_cidrs.is_empty());
    assert!(c.admin_listen.is_none());
}

#[test]
fn every_variable_parses() {
    let c = from_map(&[
        (ENV_LISTEN, "127.0.0.1:0"),
        (ENV_ADMIN_LISTEN, "[::1]:3129"),
        (ENV_ADMIN_TLS_DIR, "/etc/airlock/tls"),
        (ENV_DNS, "127.0.0.1:5353, 10.0.0.2"),
        (ENV_ALLOW_CIDRS, "127.0.0.2/32,10.1.2.3"),
        (ENV_POLICY, "/etc/airlock/policy.json"),
        (ENV_MODE, "controlled"),
        (ENV_MAX_HEADER_BYTES, "16384"),
        (ENV_CONNECT_TIMEOUT, "250ms"),
        (ENV_IDLE_TIMEOUT, "5m"),
        (ENV_MAX_CONNECTIONS, "7"),
        (ENV_SHUTDOWN_GRACE, "1h"),
        (ENV_SPOOL_CAPACITY, "10"),
        (ENV_DENY_CIDRS, "10.213.0.0/16, 10.212.0.2"),
        (ENV_SPOOL_PER_SANDBOX, "7"),
        (ENV_MAX_CONNECTIONS_PER_SOURCE, "9"),
        (ENV_MAX_PENDING_HEADS_PER_SOURCE, "3"),
    ])
    .unwrap();
    assert_eq!(
        c.deny_cidrs,
        vec![
            "10.213.0.0/16".parse::<IpNet>().unwrap(),
            "10.212.0.2/32".parse().unwrap()
        ]
    );
    assert_eq!(
        (
            c.spool_per_sandbox,
            c.max_connections_per_source,
            c.max_pending_heads_per_source
        ),
        (7, 9, 3)
    );
    assert_eq!(c.admin_listen, Some("[::1]:3129".parse().unwrap()));
    assert_eq!(
        c.dns,
        DnsServers::Explicit(vec![
            "127.0.0.1:5353".parse().unwrap(),
            "10.0.0.2:53".parse().unwrap()
        ])
    );
    assert_eq!(
        c.allow_cidrs,
        vec![
            "127.0.0.2/32".parse::<IpNet>().unwrap(),
            "10.1.2.3/32".parse().unwrap()
        ]
    );
    assert_eq!(c.mode, ProxyMode::Controlled);
    assert_eq!(c.max_header_bytes, 16384);
    assert_eq!(c.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.max_connections, 7);
    assert_eq!(c.shutdown_grace, Duration::from_secs(3600));
    assert_eq!(c.spool_capacity, 10);
}

#[test]
fn every_bad_variable_is_reported() {
    let err = from_map(&[
        (ENV_LISTEN, "nope"),
        (ENV_DNS, "1.2.3.4,bad"),
        (ENV_ALLOW_CIDRS, "10.0.0.0/33"),
        (ENV_MODE, "chaos"),
        (ENV_MAX_HEADER_BYTES, "12"),
        (ENV_CONNECT_TIMEOUT, "10"),
        (ENV_MAX_CONNECTIONS, "0"),
        (ENV_DENY_CIDRS, "10.0.0.0/40"),
        (ENV_MAX_PENDING_HEADS_PER_SOURCE, "0"),
    ])
    .unwrap_err();
    let vars: Vec<_> = err.problems.iter().map(|p| p.var).collect();
    assert_eq!(
        vars,
        vec![
            ENV_LISTEN,
            ENV_DNS,
            ENV_ALLOW_CIDRS,
            ENV_DENY_CIDRS,
            ENV_MODE,
            ENV_MAX_HEADER_BYTES,
            ENV_CONNECT_TIMEOUT,
            ENV_MAX_CONNECTIONS,
            ENV_MAX_PENDING_HEADS_PER_SOURCE
        ]
    );
    assert_eq!(err.problems[0].value, "nope");
    let text = err.to_string();
    assert!(text.contains("AIRLOCK_EGRESS_MODE=\"chaos\": expected standalone or controlled"));
}

#[test]
fn dockers_embedded_resolver_is_never_configured() {
    for dns in ["127.0.0.11", "127.0.0.11:53", "10.0.0.2,127.0.0.11"] {
        let err = from_map(&[(ENV_DNS, dns)]).unwrap_err();
        assert_eq!(err.problems[0].var, ENV_DNS, "{dns}");
    }
    let c = from_map(&[]).unwrap();
    assert_eq!(c.max_connections_per_source, 256);
    assert_eq!(c.max_pending_heads_per_source, 32);
    assert_eq!(c.spool_per_sandbox, 4096);
    assert!(c.deny_cidrs.is_empty());
}

/// The proxy takes the grammar both binaries share; zero is a duration here (the controller
/// refuses it for its own settings).
#[test]
fn durations() {
    for (text, want) in [
        ("0s", Some(Duration::ZERO)),
        ("15ms", Some(Duration::from_millis(15))),
        ("2m", Some(Duration::from_secs(120))),
        ("2", None),
        ("s", None),
        ("2d", Some(Duration::from_secs(172_800))),
        ("2w", None),
        ("-2s", None),
    ] {
        assert_eq!(parse_duration(text).ok(), want, "{text}");
    }
    let c = from_map(&[(ENV_IDLE_TIMEOUT, "1d"), (ENV_SHUTDOWN_GRACE, "0s")]).unwrap();
    assert_eq!(c.idle_timeout, Duration::from_secs(86_400));
    assert_eq!(c.shutdown_grace, Duration::ZERO);
}
