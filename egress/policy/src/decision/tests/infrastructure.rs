//! The infrastructure set wins over everything: exceptions, policy CIDRs, report mode,
//! `allow_public`, ports; and it is checked on every answer and on embedded IPv4.

use super::*;

fn infra() -> Infrastructure {
    Infrastructure::new(
        [
            "10.213.0.0/16",
            "10.212.0.0/24",
            "192.168.50.7/32",
            "fd42::/64",
            "127.0.0.9/32",
        ]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect(),
    )
}

fn judge(p: &Policy, o: &OperatorExceptions, t: &str, resolved: &[&str]) -> Decision {
    evaluate(p, o, &infra(), &target(t), &ips(resolved))
}

#[test]
fn no_policy_shape_reaches_the_infrastructure() {
    let widest = [
        r#"{"allow_cidrs":["0.0.0.0/0","::/0"],"allow_ports":[22,80,443,2375,2376,3129,8080]}"#,
        r#"{"mode":"report","allow_cidrs":["10.0.0.0/8"],"allow_ports":[443]}"#,
        r#"{"allow_public":true,"allow_domains":["*.sandbox.test"],"allow_cidrs":["10.213.0.0/16"]}"#,
        r#"{"allow_public":false,"allow_domains":["n.sandbox.test"],"allow_cidrs":["10.213.0.0/16"]}"#,
    ];
    let broad_ops = ops(&["0.0.0.0/0", "::/0"]);
    let rows: &[(&str, &[&str])] = &[
        ("10.213.0.3:8080", &[]),
        ("10.213.0.3:22", &[]),
        ("10.212.0.1:3129", &[]),
        ("192.168.50.7:2376", &[]),
        ("[fd42::1]:443", &[]),
        ("[::ffff:10.213.0.3]:443", &[]),
        ("[64:ff9b::ad5:3]:443", &[]),
        ("[2002:ad5:3::]:443", &[]),
        ("[::ad5:3]:443", &[]),
        ("127.0.0.9:443", &[]),
        ("n.sandbox.test:443", &["10.213.0.3"]),
        ("n.sandbox.test:8080", &["93.184.215.14", "10.213.0.3"]),
        ("n.sandbox.test:443", &["64:ff9b::ad5:3"]),
        ("n.sandbox.test:443", &["::ffff:10.212.0.1"]),
    ];
    for json in widest {
        let p = policy(json);
        for o in [&OperatorExceptions::none(), &broad_ops] {
            for (t, resolved) in rows {
                let d = judge(&p, o, t, resolved);
                assert_eq!(code(&d), "infrastructure", "{json} {t} {resolved:?}");
            }
        }
    }
}

#[test]
fn infrastructure_wins_over_name_and_port_rules_for_every_answer() {
    // Even where another rule would deny, the infrastructure answer names the reason.
    let p = policy(r#"{"allow_domains":["a.test"],"allow_ports":[443]}"#);
    let none = OperatorExceptions::none();
    assert_eq!(
        code(&judge(&p, &none, "10.213.9.9:22", &[])),
        "infrastructure"
    );
    assert_eq!(
        code(&judge(&p, &none, "other.test:22", &["10.213.9.9"])),
        "infrastructure"
    );
    let Decision::Deny(d) = judge(&p, &none, "a.test:443", &["93.184.215.14", "10.213.9.9"]) else {
        panic!("allowed")
    };
    assert_eq!(d.reason, DenyReason::Infrastructure);
    assert_eq!(d.addr, Some("10.213.9.9:443".parse().unwrap()));
    assert_eq!(d.rule.as_deref(), Some("infrastructure:10.213.0.0/16"));
    // The message never names the address.
    assert!(!d.reason.message().contains("10."));
    // Outside the set, the ordinary rules apply.
    assert_eq!(
        code(&judge(&p, &none, "a.test:443", &["93.184.215.14"])),
        "allow"
    );
    assert_eq!(
        code(&judge(&p, &none, "10.214.0.1:443", &[])),
        "ip_literal_not_allowed"
    );
}

#[test]
fn an_empty_set_changes_nothing() {
    let p = Policy::default();
    let none = OperatorExceptions::none();
    for (t, want) in [("8.8.8.8:443", "allow"), ("10.213.0.3:443", "private")] {
        let d = evaluate(&p, &none, &Infrastructure::none(), &target(t), &[]);
        assert_eq!(code(&d), want, "{t}");
    }
}

#[test]
fn the_set_is_normalised() {
    let set = Infrastructure::new(
        [
            "10.213.0.5/16",
            "10.213.4.0/24",
            "::ffff:10.212.0.0/120",
            "10.212.0.9/32",
            "fd42::1/64",
            "10.213.0.0/16",
        ]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect(),
    );
    let got: Vec<String> = set.cidrs().iter().map(ToString::to_string).collect();
    assert_eq!(got, ["10.212.0.0/24", "10.213.0.0/16", "fd42::/64"]);
    assert_eq!(set.len(), 3);
    assert!(!set.is_empty() && Infrastructure::none().is_empty());
    assert_eq!(
        set.contains("::ffff:10.212.0.3".parse().unwrap())
            .map(ToString::to_string),
        Some("10.212.0.0/24".to_owned())
    );
    // Teredo carries the inverted client address: 10.213.0.3 is f52a:fffc.
    assert!(set
        .contains("2001:0:4136:e378:8000:63bf:f52a:fffc".parse().unwrap())
        .is_some());
    assert!(set.contains("10.214.0.1".parse().unwrap()).is_none());
}
