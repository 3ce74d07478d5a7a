//! `allow_public` and `allow_domains` together: absent, `[]`, a list, and both flags set.

use super::*;

/// (policy JSON, target, answers, expected code).
const ROWS: &[(&str, &str, &[&str], &str)] = &[
    // `{}`: every public destination, as before.
    ("{}", "example.com:443", &["93.184.215.14"], "allow"),
    ("{}", "8.8.8.8:443", &[], "allow"),
    ("{}", "example.com:443", &["10.0.0.1"], "private"),
    // `allow_domains: []` now means "no names" and no literals outside allow_cidrs.
    (
        r#"{"allow_domains":[]}"#,
        "example.com:443",
        &["93.184.215.14"],
        "domain_not_allowed",
    ),
    (
        r#"{"allow_domains":[]}"#,
        "8.8.8.8:443",
        &[],
        "ip_literal_not_allowed",
    ),
    (
        r#"{"allow_domains":[],"allow_cidrs":["8.8.8.0/24"]}"#,
        "8.8.8.8:443",
        &[],
        "allow",
    ),
    // An allow-list, as before.
    (
        r#"{"allow_domains":["a.com"]}"#,
        "a.com:443",
        &["93.184.215.14"],
        "allow",
    ),
    (
        r#"{"allow_domains":["a.com"]}"#,
        "b.com:443",
        &["93.184.215.14"],
        "domain_not_allowed",
    ),
    // allow_public: true with a list: the list only names the rule; deny_domains still wins.
    (
        r#"{"allow_public":true,"allow_domains":["a.com"]}"#,
        "b.com:443",
        &["93.184.215.14"],
        "allow",
    ),
    (
        r#"{"allow_public":true,"allow_domains":[],"deny_domains":["b.com"]}"#,
        "b.com:443",
        &["93.184.215.14"],
        "domain_denied",
    ),
    (
        r#"{"allow_public":true,"allow_domains":[]}"#,
        "8.8.8.8:443",
        &[],
        "allow",
    ),
    // allow_public: true never opens a non-global address.
    (
        r#"{"allow_public":true}"#,
        "b.com:443",
        &["10.0.0.1"],
        "private",
    ),
    (r#"{"allow_public":true}"#, "10.0.0.1:443", &[], "private"),
    // allow_public: false with nothing listed: nothing at all.
    (
        r#"{"allow_public":false}"#,
        "b.com:443",
        &["93.184.215.14"],
        "domain_not_allowed",
    ),
    (
        r#"{"allow_public":false}"#,
        "8.8.8.8:443",
        &[],
        "ip_literal_not_allowed",
    ),
    (
        r#"{"allow_public":false,"allow_domains":["b.com"]}"#,
        "b.com:443",
        &["93.184.215.14"],
        "allow",
    ),
];

#[test]
fn allow_public_and_allow_domains_combine() {
    let none = OperatorExceptions::none();
    for (json, t, answers, want) in ROWS {
        let got = code(&decide(&policy(json), &none, t, answers));
        assert_eq!(got, *want, "{json} {t} {answers:?}");
    }
}

#[test]
fn the_rule_names_the_listed_domain_under_allow_public() {
    let p = policy(r#"{"allow_public":true,"allow_domains":["*.github.com"]}"#);
    let none = OperatorExceptions::none();
    let Decision::Allow(listed) = decide(&p, &none, "api.github.com:443", &["140.82.112.3"]) else {
        panic!("listed name denied")
    };
    assert_eq!(listed.rule.as_deref(), Some("*.github.com"));
    let Decision::Allow(other) = decide(&p, &none, "example.com:443", &["93.184.215.14"]) else {
        panic!("public name denied")
    };
    assert_eq!(other.rule, None);
}

#[test]
fn the_default_follows_allow_domains() {
    let rows: &[(&str, bool)] = &[
        ("{}", true),
        (r#"{"allow_domains":null}"#, true),
        (r#"{"allow_domains":[]}"#, false),
        (r#"{"allow_domains":["a.com"]}"#, false),
        (r#"{"allow_public":true,"allow_domains":["a.com"]}"#, true),
        (r#"{"allow_public":false}"#, false),
    ];
    for (json, want) in rows {
        let spec: PolicySpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.effective_allow_public(), *want, "{json}");
        assert_eq!(policy(json).allow_public(), *want, "{json}");
    }
    assert!(Policy::default().allow_public());
}

#[test]
fn report_mode_reports_a_name_outside_the_list() {
    let p = policy(r#"{"mode":"report","allow_domains":[]}"#);
    let Decision::Allow(a) = decide(
        &p,
        &OperatorExceptions::none(),
        "b.com:443",
        &["93.184.215.14"],
    ) else {
        panic!("report mode denied a public name")
    };
    assert_eq!(a.would_deny, Some(DenyReason::DomainNotAllowed));
}
