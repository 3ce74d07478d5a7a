use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::host::{parse_absolute, parse_connect};
use crate::infra::Infrastructure;

mod allow_public;
mod infrastructure;
use crate::spec::PolicySpec;

pub(super) fn policy(json: &str) -> Policy {
    Policy::compile(&serde_json::from_str::<PolicySpec>(json).unwrap()).unwrap()
}

pub(super) fn ops(cidrs: &[&str]) -> OperatorExceptions {
    OperatorExceptions::new(cidrs.iter().map(|c| c.parse::<IpNet>().unwrap()).collect())
}

pub(super) fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

pub(super) fn target(s: &str) -> Target {
    parse_connect(s).unwrap()
}

pub(super) fn decide(p: &Policy, o: &OperatorExceptions, t: &str, resolved: &[&str]) -> Decision {
    evaluate(p, o, &Infrastructure::none(), &target(t), &ips(resolved))
}

/// The deny code, or "allow".
pub(super) fn code(d: &Decision) -> &'static str {
    match d {
        Decision::Allow(_) => "allow",
        Decision::Deny(denied) => denied.reason.code(),
    }
}

#[test]
fn address_classes_are_denied_by_default() {
    let p = Policy::default();
    let none = OperatorExceptions::none();
    let rows: &[(&str, &str)] = &[
        ("0.0.0.0:80", "unspecified"),
        ("[::]:80", "unspecified"),
        ("127.0.0.1:80", "loopback"),
        ("[::1]:80", "loopback"),
        ("[::ffff:127.0.0.1]:80", "loopback"),
        ("169.254.169.254:80", "metadata"),
        ("[::ffff:169.254.169.254]:80", "metadata"),
        ("[fd00:ec2::254]:80", "metadata"),
        ("168.63.129.16:80", "metadata"),
        ("100.100.100.200:80", "metadata"),
        ("192.0.0.192:80", "metadata"),
        ("169.254.1.1:80", "link_local"),
        ("[fe80::1]:80", "link_local"),
        ("10.0.0.1:80", "private"),
        ("[fd12::1]:80", "private"),
        ("100.64.0.1:80", "shared_cgnat"),
        ("100.127.255.255:80", "shared_cgnat"),
        ("100.128.0.0:80", "allow"),
        ("224.0.0.1:80", "multicast"),
        ("255.255.255.255:80", "broadcast"),
        ("[fec0::1]:80", "site_local"),
        ("[64:ff9b::7f00:1]:80", "loopback"),
        ("[64:ff9b:1::a9fe:a9fe]:80", "metadata"),
        ("[64:ff9b::808:808]:80", "embedded_ipv4"),
        ("[2002:7f00:1::]:80", "loopback"),
        ("[2001:0:0:0:0:0:80ff:fffe]:80", "loopback"),
        ("[::127.0.0.1]:80", "loopback"),
        ("[::ffff:0:a00:1]:80", "private"),
        ("8.8.8.8:80", "allow"),
        ("[2606:4700::1111]:443", "allow"),
        ("8.8.8.8:22", "port_not_allowed"),
    ];
    for (t, want) in rows {
        assert_eq!(code(&decide(&p, &none, t, &[])), *want, "{t}");
    }
}

#[test]
fn names_denied_before_lookup_in_every_mode() {
    for mode in ["enforce", "report"] {
        let p = policy(&format!(r#"{{"mode":"{mode}"}}"#));
        let rows: &[(&str, &str)] = &[
            ("localhost:80", "localhost_name"),
            ("LOCALHOST.:80", "localhost_name"),
            ("a.b.localhost:80", "localhost_name"),
            ("ip6-localhost:80", "localhost_name"),
            ("metadata.google.internal:80", "metadata_name"),
            ("metadata:80", "metadata_name"),
            ("instance-data.ec2.internal:80", "metadata_name"),
        ];
        for (t, want) in rows {
            let denied = precheck(&p, &target(t)).expect(t);
            assert_eq!(denied.reason.code(), *want, "{mode} {t}");
            assert_eq!(
                code(&decide(&p, &OperatorExceptions::none(), t, &["8.8.8.8"])),
                *want
            );
        }
        assert!(precheck(&p, &target("notlocalhost:80")).is_none());
    }
}

#[test]
fn domain_rules() {
    let p = policy(
        r#"{"allow_domains":["*.github.com","example.com"],"deny_domains":["evil.github.com"]}"#,
    );
    let none = OperatorExceptions::none();
    let allowed = decide(&p, &none, "api.github.com:443", &["140.82.112.3"]);
    let Decision::Allow(a) = allowed else {
        panic!("{allowed:?}")
    };
    assert_eq!(a.rule.as_deref(), Some("*.github.com"));
    assert_eq!(a.addr(), "140.82.112.3:443".parse::<SocketAddr>().unwrap());

    let denied = precheck(&p, &target("evil.github.com:443")).unwrap();
    assert_eq!(denied.reason, DenyReason::DomainDenied);
    assert_eq!(denied.rule.as_deref(), Some("evil.github.com"));
    assert_eq!(
        precheck(&p, &target("github.com:443")).unwrap().reason,
        DenyReason::DomainNotAllowed
    );
    assert_eq!(
        precheck(&p, &target("example.com:22")).unwrap().reason,
        DenyReason::PortNotAllowed
    );
    assert!(precheck(&p, &target("example.com:80")).is_none());
}

#[test]
fn ip_literals_under_an_allow_list_need_a_policy_cidr() {
    let p = policy(
        r#"{"allow_domains":["example.com"],"allow_cidrs":["140.82.112.0/20","10.0.0.0/8"]}"#,
    );
    let none = OperatorExceptions::none();
    assert_eq!(
        code(&decide(&p, &none, "8.8.8.8:443", &[])),
        "ip_literal_not_allowed"
    );
    let Decision::Allow(a) = decide(&p, &none, "140.82.112.3:443", &[]) else {
        panic!()
    };
    assert_eq!(a.rule.as_deref(), Some("allow_cidrs:140.82.112.0/20"));
    assert_eq!(code(&decide(&p, &none, "10.1.1.1:443", &[])), "allow");
    // Without an allow list, literals are judged by address alone.
    assert_eq!(
        code(&decide(&Policy::default(), &none, "8.8.8.8:443", &[])),
        "allow"
    );
}

#[test]
fn report_mode_reports_domain_and_port_but_enforces_addresses() {
    let p = policy(
        r#"{"mode":"report","allow_domains":["example.com"],"deny_domains":["bad.example.org"]}"#,
    );
    let none = OperatorExceptions::none();
    assert!(precheck(&p, &target("other.org:443")).is_none());
    let rows: &[(&str, DenyReason)] = &[
        ("other.org:443", DenyReason::DomainNotAllowed),
        ("bad.example.org:443", DenyReason::DomainDenied),
        ("example.com:8080", DenyReason::PortNotAllowed),
    ];
    for (t, reason) in rows {
        let Decision::Allow(a) = decide(&p, &none, t, &["93.184.215.14"]) else {
            panic!("{t}")
        };
        assert_eq!(a.would_deny, Some(*reason), "{t}");
    }
    let Decision::Allow(a) = decide(&p, &none, "example.com:443", &["93.184.215.14"]) else {
        panic!()
    };
    assert_eq!(a.would_deny, None);
    assert_eq!(
        code(&decide(&p, &none, "other.org:443", &["10.0.0.1"])),
        "private"
    );
    assert_eq!(
        code(&decide(&p, &none, "other.org:443", &["169.254.169.254"])),
        "metadata"
    );
    assert_eq!(code(&decide(&p, &none, "127.0.0.1:443", &[])), "loopback");
}

#[test]
fn every_answer_is_checked() {
    let p = Policy::default();
    let none = OperatorExceptions::none();
    let mixed = decide(&p, &none, "example.com:443", &["93.184.215.14", "10.0.0.1"]);
    let Decision::Deny(d) = mixed else {
        panic!("{mixed:?}")
    };
    assert_eq!(d.reason, DenyReason::Private);
    assert_eq!(d.addr, Some("10.0.0.1:443".parse().unwrap()));
    let mixed6 = decide(&p, &none, "example.com:443", &["2606:4700::1111", "::1"]);
    assert_eq!(code(&mixed6), "loopback");
    assert_eq!(
        code(&decide(&p, &none, "example.com:443", &[])),
        "dns_no_answer"
    );

    let both = decide(
        &p,
        &none,
        "example.com:443",
        &["93.184.215.14", "::ffff:1.1.1.1", "2606:4700::1111"],
    );
    let Decision::Allow(a) = both else { panic!() };
    let want: Vec<SocketAddr> = ["93.184.215.14:443", "1.1.1.1:443", "[2606:4700::1111]:443"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(a.addrs, want, "order kept, mapped answers unwrapped");
    assert_eq!(a.rule, None);
    // For a literal, the resolved list is ignored.
    assert_eq!(
        code(&decide(&p, &none, "8.8.8.8:443", &["127.0.0.1"])),
        "allow"
    );
}

#[test]
fn broad_operator_exceptions_never_open_metadata_or_unspecified() {
    let p = Policy::default();
    let broad = ops(&["0.0.0.0/0", "::/0"]);
    for target in [
        "169.254.169.254:80",
        "168.63.129.16:80",
        "100.100.100.200:80",
        "192.0.0.192:80",
        "[fd00:ec2::254]:80",
        "[::ffff:169.254.169.254]:80",
    ] {
        assert_eq!(
            code(&decide(&p, &broad, target, &[])),
            "metadata",
            "{target}"
        );
    }
    assert_eq!(code(&decide(&p, &broad, "0.0.0.0:80", &[])), "unspecified");
    assert_eq!(
        code(&decide(
            &p,
            &broad,
            "meta.test:80",
            &["8.8.8.8", "169.254.169.254"]
        )),
        "metadata"
    );
    // Broad exceptions still admit the classes they name.
    assert_eq!(code(&decide(&p, &broad, "10.1.2.3:80", &[])), "allow");
    let link_local = ops(&["169.254.0.0/16"]);
    assert_eq!(
        code(&decide(&p, &link_local, "169.254.1.1:80", &[])),
        "allow"
    );
    assert_eq!(
        code(&decide(&p, &link_local, "169.254.169.254:80", &[])),
        "metadata"
    );
}

#[test]
fn operator_exceptions_cover_exactly() {
    let p = Policy::default();
    let o = ops(&["127.0.0.1/32", "169.254.169.254/32", "64:ff9b::/96"]);
    let Decision::Allow(a) = decide(&p, &o, "127.0.0.1:80", &[]) else {
        panic!()
    };
    assert_eq!(a.rule.as_deref(), Some("operator:127.0.0.1/32"));
    let Decision::Allow(a) = decide(&p, &o, "[::ffff:127.0.0.1]:80", &[]) else {
        panic!()
    };
    assert_eq!(a.addr(), "127.0.0.1:80".parse::<SocketAddr>().unwrap());
    assert_eq!(code(&decide(&p, &o, "127.0.0.2:80", &[])), "loopback");
    assert_eq!(code(&decide(&p, &o, "[::1]:80", &[])), "loopback");
    assert_eq!(code(&decide(&p, &o, "169.254.169.254:80", &[])), "allow");
    assert_eq!(
        code(&decide(&p, &o, "169.254.169.253:80", &[])),
        "link_local"
    );
    assert_eq!(
        code(&decide(&p, &o, "app.test:80", &["127.0.0.1", "127.0.0.2"])),
        "loopback"
    );
    // The outer NAT64 range is allowed; the inner address must still pass.
    assert_eq!(code(&decide(&p, &o, "[64:ff9b::808:808]:80", &[])), "allow");
    assert_eq!(code(&decide(&p, &o, "[64:ff9b::a00:1]:80", &[])), "private");
    assert_eq!(code(&decide(&p, &o, "[64:ff9b::7f00:1]:80", &[])), "allow");
    assert_eq!(
        code(&decide(&p, &o, "[64:ff9b::7f00:2]:80", &[])),
        "loopback"
    );
    assert_eq!(
        code(&decide(&p, &o, "[64:ff9b:1::808:808]:80", &[])),
        "embedded_ipv4"
    );
    // An exception for the inner address does not open the outer range.
    let inner_only = ops(&["8.8.8.8/32"]);
    assert_eq!(
        code(&decide(&p, &inner_only, "[2002:808:808::]:80", &[])),
        "embedded_ipv4"
    );
}

#[test]
fn policy_cidrs_never_admit_loopback_link_local_metadata_or_unspecified() {
    let p = policy(r#"{"allow_cidrs":["0.0.0.0/0","::/0"]}"#);
    let none = OperatorExceptions::none();
    let rows: &[(&str, &str)] = &[
        ("10.0.0.1:80", "allow"),
        ("100.64.0.1:80", "allow"),
        ("[fd12::1]:80", "allow"),
        ("127.0.0.1:80", "loopback"),
        ("169.254.1.1:80", "link_local"),
        ("169.254.169.254:80", "metadata"),
        ("[fd00:ec2::254]:80", "metadata"),
        ("0.0.0.0:80", "unspecified"),
        ("[::]:80", "unspecified"),
        ("224.0.0.1:80", "multicast"),
        ("[64:ff9b::808:808]:80", "embedded_ipv4"),
    ];
    for (t, want) in rows {
        assert_eq!(code(&decide(&p, &none, t, &[])), *want, "{t}");
    }
    let Decision::Allow(a) = decide(&p, &none, "10.0.0.1:80", &[]) else {
        panic!()
    };
    assert_eq!(a.rule.as_deref(), Some("allow_cidrs:0.0.0.0/0"));
}

#[test]
fn deny_codes_are_unique_snake_case() {
    let reasons = [
        DenyReason::Malformed(ParseError::Userinfo),
        DenyReason::LocalhostName,
        DenyReason::MetadataName,
        DenyReason::DomainDenied,
        DenyReason::DomainNotAllowed,
        DenyReason::IpLiteralNotAllowed,
        DenyReason::PortNotAllowed,
        DenyReason::Unspecified,
        DenyReason::Loopback,
        DenyReason::Private,
        DenyReason::SharedCgnat,
        DenyReason::LinkLocal,
        DenyReason::Metadata,
        DenyReason::Multicast,
        DenyReason::Broadcast,
        DenyReason::Documentation,
        DenyReason::Benchmarking,
        DenyReason::ProtocolAssignment,
        DenyReason::Reserved,
        DenyReason::SiteLocal,
        DenyReason::EmbeddedIpv4,
        DenyReason::DnsNoAnswer,
        DenyReason::NoPolicy,
        DenyReason::Infrastructure,
    ];
    let mut codes: Vec<&str> = reasons.iter().map(DenyReason::code).collect();
    assert!(codes.iter().all(|c| c
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    codes.sort_unstable();
    let n = codes.len();
    codes.dedup();
    assert_eq!(codes.len(), n);
    assert!(DenyReason::Malformed(ParseError::Fragment).is_malformed());
    assert_eq!(Denied::from(ParseError::Fragment).reason.code(), "fragment");
}

proptest! {
    #[test]
    fn evaluate_never_panics(
        input in "\\PC{0,60}",
        answers in proptest::collection::vec(any::<[u8; 16]>(), 0..4),
        v4 in any::<bool>(),
    ) {
        let p = policy(r#"{"allow_domains":["*.example.com"],"allow_cidrs":["10.0.0.0/8"],"mode":"report"}"#);
        let o = ops(&["64:ff9b::/96"]);
        let infra = Infrastructure::new(vec!["10.213.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        let resolved: Vec<IpAddr> = answers
            .iter()
            .map(|b| if v4 { IpAddr::from([b[0], b[1], b[2], b[3]]) } else { IpAddr::from(*b) })
            .collect();
        for t in [parse_connect(&input).ok(), parse_absolute(&format!("http://{input}/")).ok().map(|a| a.target)]
            .into_iter()
            .flatten()
        {
            let _ = precheck(&p, &t);
            if let Decision::Allow(a) = evaluate(&p, &o, &Infrastructure::none(), &t, &resolved) {
                prop_assert!(!a.addrs.is_empty());
            }
            let _ = evaluate(&Policy::default(), &OperatorExceptions::none(), &infra, &t, &resolved);
            // Nothing inside the infrastructure set is ever allowed.
            if let Decision::Allow(a) = evaluate(&p, &o, &infra, &t, &resolved) {
                prop_assert!(a.addrs.iter().all(|addr| infra.contains(addr.ip()).is_none()));
            }
        }
    }
}
