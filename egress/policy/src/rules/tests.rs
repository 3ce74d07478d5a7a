use std::net::IpAddr;

use super::*;

fn spec(json: &str) -> PolicySpec {
    serde_json::from_str(json).unwrap()
}

fn compile_domains(allow: &[&str]) -> Result<Policy, PolicyError> {
    Policy::compile(&PolicySpec {
        allow_domains: Some(allow.iter().map(|s| s.to_string()).collect()),
        ..PolicySpec::default()
    })
}

#[test]
fn design_example_parses_and_round_trips() {
    let json = r#"{"mode":"enforce","allow_domains":["*.github.com"],"deny_domains":[],"allow_ports":[80,443],"allow_cidrs":[],"max_bytes":null,"max_connections":null}"#;
    let parsed = spec(json);
    assert_eq!(parsed.mode, Some(Mode::Enforce));
    assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
    assert_eq!(spec("{}"), PolicySpec::default());
    let full = spec(
        r#"{"mode":"report","allow_cidrs":["10.0.0.0/8","fd00::/8"],"max_bytes":5,"max_connections":2}"#,
    );
    let policy = Policy::compile(&full).unwrap();
    assert_eq!(policy.mode(), Mode::Report);
    assert_eq!(policy.max_bytes(), Some(5));
    assert_eq!(policy.max_connections(), Some(2));
}

#[test]
fn spec_refuses_unknown_fields_and_bad_values() {
    for json in [
        r#"{"allow_domain":["a.com"]}"#,
        r#"{"mode":"ENFORCE"}"#,
        r#"{"mode":"audit"}"#,
        r#"{"allow_ports":[70000]}"#,
        r#"{"allow_cidrs":["10.0.0.0/33"]}"#,
    ] {
        assert!(serde_json::from_str::<PolicySpec>(json).is_err(), "{json}");
    }
}

#[test]
fn default_policy_is_the_default_spec() {
    let compiled = Policy::compile(&PolicySpec::default()).unwrap();
    let default = Policy::default();
    assert_eq!(compiled.ports(), default.ports());
    assert_eq!(default.ports(), &[80, 443]);
    assert_eq!(compiled.mode(), Mode::Enforce);
    assert!(default.allow_public() && compiled.allow_public());
    assert!(default.allow_domains().find("a.com").is_none());
    assert!(default.allows_port(443) && !default.allows_port(8080));
    let empty_ports = spec(r#"{"allow_ports":[],"allow_domains":[]}"#);
    let p = Policy::compile(&empty_ports).unwrap();
    assert_eq!(p.ports(), &[80, 443]);
    assert!(
        !p.allow_public() && p.allow_domains().find("a.com").is_none(),
        "an empty allow list allows no domain"
    );
}

#[test]
fn wildcards_broader_than_a_registrable_domain_are_refused() {
    for pattern in [
        "*",
        "*.",
        "*.com",
        "*.co.uk",
        "*.localhost",
        "*.COM.",
        "*.internal",
        "*.ck",
    ] {
        let err = compile_domains(&[pattern]).unwrap_err();
        assert_eq!(err.code(), "wildcard_too_broad", "{pattern}");
    }
    for pattern in [
        "*.github.com",
        "*.example.co.uk",
        "*.corp.internal",
        "*.githubusercontent.com",
        "*.github.io",
        "github.com",
        "com",
    ] {
        assert!(compile_domains(&[pattern]).is_ok(), "{pattern}");
    }
}

#[test]
fn bad_patterns_are_refused() {
    let rows: &[(&str, &str)] = &[
        ("", "bad_domain_pattern"),
        ("**.github.com", "bad_domain_pattern"),
        ("a.*.com", "bad_domain_pattern"),
        ("foo*.com", "bad_domain_pattern"),
        ("exa mple.com", "bad_domain_pattern"),
        ("a..b", "bad_domain_pattern"),
        ("127.0.0.1", "ip_domain_pattern"),
        ("127.1", "ip_domain_pattern"),
        ("[::1]", "ip_domain_pattern"),
        ("*.10.0.0.1", "ip_domain_pattern"),
    ];
    for (pattern, code) in rows {
        assert_eq!(
            compile_domains(&[pattern]).unwrap_err().code(),
            *code,
            "{pattern:?}"
        );
    }
    let port0 = Policy::compile(&spec(r#"{"allow_ports":[443,0]}"#)).unwrap_err();
    assert_eq!(port0, PolicyError::PortZero);
}

#[test]
fn wildcard_matches_subdomains_only() {
    let p = compile_domains(&["*.github.com", "Example.COM.", "b\u{fc}cher.de"]).unwrap();
    let set = p.allow_domains();
    let rows: &[(&str, Option<&str>)] = &[
        ("a.github.com", Some("*.github.com")),
        ("a.b.github.com", Some("*.github.com")),
        ("github.com", None),
        ("evilgithub.com", None),
        ("github.com.evil.com", None),
        ("example.com", Some("example.com")),
        ("www.example.com", None),
        ("xn--bcher-kva.de", Some("xn--bcher-kva.de")),
        ("com", None),
    ];
    for (name, want) in rows {
        assert_eq!(set.find(name).map(|m| m.rule()).as_deref(), *want, "{name}");
    }
}

#[test]
fn most_specific_wildcard_wins() {
    let p = compile_domains(&["*.github.com", "*.api.github.com"]).unwrap();
    let hit = p.allow_domains().find("v3.api.github.com").unwrap();
    assert_eq!(hit.rule(), "*.api.github.com");
}

#[test]
fn cidrs_are_normalised() {
    let ops = OperatorExceptions::new(vec![
        "::ffff:127.0.0.1/128".parse().unwrap(),
        "10.1.2.3/8".parse().unwrap(),
    ]);
    assert_eq!(ops.cidrs()[0].to_string(), "127.0.0.1/32");
    assert_eq!(ops.cidrs()[1].to_string(), "10.0.0.0/8");
    let covered = |s: &str| ops.covering(s.parse::<IpAddr>().unwrap()).is_some();
    assert!(covered("127.0.0.1"));
    assert!(covered("::ffff:127.0.0.1"));
    assert!(!covered("127.0.0.2"));
    assert!(covered("10.255.0.1"));
    assert!(OperatorExceptions::none()
        .covering("127.0.0.1".parse().unwrap())
        .is_none());
}
