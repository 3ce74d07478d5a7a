use super::*;

fn targets() -> Targets {
    Targets {
        gateway: Some("10.213.0.9".parse().unwrap()),
        proxy: Some("10.213.0.10".parse().unwrap()),
        admin_port: None,
        dind: vec!["172.30.0.2".parse().unwrap()],
        other_sandboxes: vec!["10.213.0.3".parse().unwrap()],
        controller: Some("172.30.0.1:8080".parse().unwrap()),
        upstream: None,
        proxy_bridge: Some("10.212.0.2".parse().unwrap()),
        neighbour_names: vec!["airlock-0190f3c2".to_owned()],
        through_proxy: true,
    }
}

fn targets_of<'a>(plan: &'a Plan, check: &str) -> Vec<&'a str> {
    plan.checks
        .iter()
        .filter(|c| c.check == check)
        .map(|c| c.target.as_str())
        .collect()
}

#[test]
fn standard_plan_covers_every_forbidden_path() {
    let plan = Plan::standard(&targets());
    plan.validate().unwrap();
    assert_eq!(
        targets_of(&plan, "gateway_port"),
        [
            "10.213.0.9:2375",
            "10.213.0.9:2376",
            "10.213.0.9:2377",
            "10.213.0.9:3129"
        ]
    );
    assert_eq!(targets_of(&plan, "proxy_admin"), ["10.213.0.10:3129"]);
    assert_eq!(targets_of(&plan, "dind_port").len(), 4);
    assert_eq!(targets_of(&plan, "other_sandbox").len(), 4);
    assert_eq!(targets_of(&plan, "controller"), ["172.30.0.1:8080"]);
    assert_eq!(
        targets_of(&plan, "metadata"),
        [
            "169.254.169.254:80",
            "[fd00:ec2::254]:80",
            "168.63.129.16:80",
            "100.100.100.200:80"
        ]
    );
    assert_eq!(targets_of(&plan, "private_range").len(), 4);
    assert_eq!(targets_of(&plan, "dns_gateway"), ["10.213.0.9:53"]);
    assert_eq!(targets_of(&plan, "dns_public").len(), 3);
    assert_eq!(targets_of(&plan, "dns_lookup"), ["example.com"]);
    assert_eq!(targets_of(&plan, "icmp_raw_socket"), ["-"]);
    assert_eq!(
        targets_of(&plan, "icmp_gateway"),
        ["10.213.0.9"],
        "ICMP is tried when a ping socket opens"
    );
    assert!(plan.checks.iter().all(|c| c.expect == Expect::Blocked));
    // Without an upstream there is no reachable check.
    assert!(targets_of(&plan, "upstream_via_proxy").is_empty());
}

#[test]
fn the_deployment_is_asked_of_the_proxy_and_must_be_infrastructure() {
    let plan = Plan::standard(&targets());
    plan.validate().unwrap();
    let via_proxy: Vec<&Check> = plan
        .checks
        .iter()
        .filter(|c| c.kind == Kind::ProxyConnect)
        .collect();
    let targets: Vec<&str> = via_proxy.iter().map(|c| c.target.as_str()).collect();
    for want in [
        "10.213.0.9:2376",
        "10.213.0.9:3129",
        "10.213.0.10:3129",
        "10.212.0.2:3129",
        "172.30.0.2:2375",
        "10.213.0.3:8080",
        "172.30.0.1:8080",
        "airlock-0190f3c2:443",
        "airlock-egress:443",
        "dind:443",
        "airlock:443",
    ] {
        assert!(targets.contains(&want), "{want} missing from {targets:?}");
    }
    let mut without = self::targets();
    without.through_proxy = false;
    let plan_without = Plan::standard(&without);
    assert!(
        plan_without
            .checks
            .iter()
            .all(|c| c.kind != Kind::ProxyConnect),
        "no proxy to ask without the network plane"
    );
    for check in &via_proxy {
        assert_eq!(check.expect, Expect::Blocked);
        assert!(
            check.codes.iter().any(|c| c == CODE_INFRASTRUCTURE),
            "{check:?}"
        );
        let is_name = check.target.parse::<SocketAddr>().is_err();
        assert_eq!(
            is_name,
            check.codes.len() > 1,
            "only names may also fail to resolve"
        );
    }
}

#[test]
fn reports_name_neighbours_and_the_node_by_role() {
    let plan = Plan::standard(&targets());
    let shown: Vec<&str> = plan.checks.iter().map(Check::shown_target).collect();
    for hidden in ["10.213.0.3", "172.30.0.2", "172.30.0.1", "airlock-0190f3c2"] {
        assert!(
            shown.iter().all(|t| !t.contains(hidden)),
            "{hidden} is shown: {shown:?}"
        );
    }
    assert!(shown.contains(&"neighbour-1:8080"), "{shown:?}");
    assert!(shown.contains(&"neighbour-1-name:443"), "{shown:?}");
    assert!(shown.contains(&"node-1:2376"), "{shown:?}");
    assert!(shown.contains(&"controller"), "{shown:?}");
}

#[test]
fn an_upstream_adds_the_direct_and_proxied_checks() {
    let mut t = targets();
    t.upstream = Some("172.30.0.9:8081".parse().unwrap());
    t.admin_port = Some(9443);
    let plan = Plan::standard(&t);
    let direct = plan
        .checks
        .iter()
        .find(|c| c.check == "upstream_direct")
        .unwrap();
    assert_eq!((direct.kind, direct.expect), (Kind::Tcp, Expect::Blocked));
    let proxied = plan
        .checks
        .iter()
        .find(|c| c.check == "upstream_via_proxy")
        .unwrap();
    assert_eq!(
        (proxied.kind, proxied.expect, proxied.target.as_str()),
        (Kind::HttpProxy, Expect::Reachable, "172.30.0.9:8081")
    );
    assert_eq!(targets_of(&plan, "proxy_admin"), ["10.213.0.10:9443"]);
}

#[test]
fn plans_round_trip_through_json() {
    let plan = Plan::standard(&targets());
    let json = plan.to_json();
    assert!(json.contains(r#""kind":"udp_dns""#), "{json}");
    assert_eq!(Plan::from_json(&json).unwrap(), plan);
    let minimal = Plan::from_json(
        r#"{"checks":[{"check":"x","kind":"tcp","target":"127.0.0.1:1","expect":"blocked"}]}"#,
    )
    .unwrap();
    assert_eq!(minimal.timeout_ms, DEFAULT_TIMEOUT_MS);
}

#[test]
fn bad_plans_are_refused() {
    let check = |kind: &str, target: &str| {
        format!(
            r#"{{"checks":[{{"check":"c","kind":"{kind}","target":"{target}","expect":"blocked"}}]}}"#
        )
    };
    let table = [
        (check("tcp", "example.com:80"), "does not fit"),
        (check("udp_dns", "10.0.0.1"), "does not fit"),
        (check("icmp", "10.0.0.1:1"), "does not fit"),
        (check("dns_lookup", "a..b"), "does not fit"),
        (check("dns_lookup", "a b"), "does not fit"),
        (check("proxy_connect", "a_b:80"), "does not fit"),
        (check("proxy_connect", "dind"), "does not fit"),
        (check("proxy_connect", "dind:0"), "does not fit"),
        (check("ftp", "10.0.0.1:21"), "invalid plan"),
        (r#"{"checks":[],"extra":1}"#.to_owned(), "invalid plan"),
        (r#"{"timeout_ms":0,"checks":[]}"#.to_owned(), "timeout_ms 0"),
        (
            r#"{"timeout_ms":60000,"checks":[]}"#.to_owned(),
            "timeout_ms 60000",
        ),
    ];
    for (json, want) in table {
        let error = Plan::from_json(&json).unwrap_err().to_string();
        assert!(error.contains(want), "{json}: {error}");
    }
    let many = Plan {
        timeout_ms: 100,
        checks: vec![Check::blocked("x", Kind::RawSocket, "-"); MAX_CHECKS + 1],
    };
    assert_eq!(many.validate(), Err(PlanError::TooMany(MAX_CHECKS + 1)));
}

#[test]
fn names() {
    assert!(valid_name("example.com"));
    assert!(valid_name("a-b.c1"));
    assert!(!valid_name(""));
    assert!(!valid_name("a_b.com"));
    assert!(!valid_name(&"a".repeat(64)));
}
