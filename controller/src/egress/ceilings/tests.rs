//! Ceilings: parsing, resolution per role and user, and the checks against them.

use serde_json::json;

use super::*;

const DOC: &str = r#"{
  "roles": {
    "member": {"allow_cidrs": [], "ports": ["1-65535"], "report_mode": false,
               "allow_public": true, "default_policy": {"allow_public": true}},
    "admin": {"allow_cidrs": ["10.0.0.0/8"], "ports": [80, 443, "8000-8999"], "report_mode": true}
  },
  "users": {"Alice@Example.com": {"allow_cidrs": ["10.50.0.0/16"]}}
}"#;

fn ceilings() -> Ceilings {
    Ceilings::parse(DOC, DefaultPolicy::Public).unwrap()
}

fn policy(value: serde_json::Value, applied: &AppliedCeiling) -> EgressPolicy {
    let tenant = TenantPolicy::parse(value).unwrap();
    EgressPolicy::effective(&tenant, &applied.ceiling.default_policy)
}

#[test]
fn roles_and_user_overrides_resolve_with_labels() {
    let c = ceilings();
    let member = c.for_role(Role::Member);
    assert!(member.label.starts_with("role:member@"), "{}", member.label);
    assert_eq!(member.label.len(), "role:member@".len() + 8);
    assert!(!member.ceiling.report_mode && member.ceiling.allow_cidrs.is_empty());
    let viewer = c.for_role(Role::Viewer);
    assert!(
        !viewer.ceiling.report_mode,
        "report mode defaults to admins only"
    );
    assert!(c.for_role(Role::Admin).ceiling.report_mode);
    let alice = UserId::new();
    let by_email = c.for_user(Role::Member, alice, "alice@EXAMPLE.com");
    assert_eq!(by_email.label[..5 + 36], format!("user:{alice}"));
    assert_eq!(
        by_email.ceiling.allow_cidrs,
        vec!["10.50.0.0/16".parse().unwrap()]
    );
    assert!(
        !by_email.ceiling.report_mode,
        "other fields stay the role's"
    );
    let other = c.for_user(Role::Member, UserId::new(), "bob@example.com");
    assert_eq!(other, member);
    let doc = format!(r#"{{"users": {{"{alice}": {{"report_mode": true}}}}}}"#);
    let by_id = Ceilings::parse(&doc, DefaultPolicy::Public).unwrap();
    assert!(
        by_id
            .for_user(Role::Member, alice, "x@y")
            .ceiling
            .report_mode
    );
    assert_ne!(
        by_id.for_user(Role::Member, alice, "x@y").label,
        by_id
            .for_role(Role::Member)
            .label
            .replace("role:member", &format!("user:{alice}")),
        "a different ceiling has a different hash"
    );
}

#[test]
fn bad_documents_name_the_field() {
    let table = [
        (r#"{"roles": {"root": {}}}"#, "roles.root"),
        (
            r#"{"roles": {"member": {"ports": [0]}}}"#,
            "roles.member.ports[0]",
        ),
        (
            r#"{"roles": {"member": {"ports": ["9-2"]}}}"#,
            "roles.member.ports[0]",
        ),
        (
            r#"{"roles": {"member": {"allow_cidrs": ["nope"]}}}"#,
            "roles.member.allow_cidrs[0]",
        ),
        (
            r#"{"roles": {"member": {"colour": 1}}}"#,
            "roles.member.colour",
        ),
        (r#"{"users": {"bob": {}}}"#, "users.bob"),
        (
            r#"{"users": {"A@x.org": {}, "a@X.org": {}}}"#,
            "users.a@X.org",
        ),
        (
            r#"{"roles": {"member": {"default_policy": {"mode": "audit"}}}}"#,
            "roles.member.default_policy",
        ),
        // A default policy beyond its own ceiling.
        (
            r#"{"roles": {"member": {"ports": [443]}}}"#,
            "roles.member.default_policy",
        ),
        (
            r#"{"roles": {"member": {"default_policy": {"mode": "report"}}}}"#,
            "roles.member.default_policy",
        ),
        (
            r#"{"users": {"a@x.org": {"ports": [22]}}}"#,
            "users.a@x.org.default_policy",
        ),
    ];
    for (doc, field) in table {
        let error = Ceilings::parse(doc, DefaultPolicy::Public).unwrap_err();
        assert_eq!(error.field, field, "{doc}: {error}");
    }
    // A ceiling without allow_public gets the deny default, which satisfies it.
    let closed = r#"{"roles": {"member": {"allow_public": false}}}"#;
    let closed = Ceilings::parse(closed, DefaultPolicy::Public).unwrap();
    let member = closed.for_role(Role::Member);
    assert_eq!(member.ceiling.default_policy.allow_public(), Some(false));
}

#[test]
fn checks_name_the_field_and_value() {
    let c = ceilings();
    let member = c.for_role(Role::Member);
    let alice = c.for_user(Role::Member, UserId::new(), "alice@example.com");
    let admin = c.for_role(Role::Admin);
    let infra: Vec<IpNet> = vec!["10.213.0.0/16".parse().unwrap()];
    // (who, policy, Ok or (field, value))
    let table = [
        (&member, json!({}), None),
        (
            &member,
            json!({"allow_cidrs": ["8.8.8.0/24"], "allow_ports": [53]}),
            None,
        ),
        (
            &member,
            json!({"allow_cidrs": ["10.0.0.0/8"]}),
            Some(("policy.allow_cidrs[0]", json!("10.0.0.0/8"))),
        ),
        (
            &member,
            json!({"allow_cidrs": ["8.8.8.8/32", "192.168.1.0/24"]}),
            Some(("policy.allow_cidrs[1]", json!("192.168.1.0/24"))),
        ),
        (
            &member,
            json!({"mode": "report"}),
            Some(("policy.mode", json!("report"))),
        ),
        (&alice, json!({"allow_cidrs": ["10.50.3.0/24"]}), None),
        (
            &alice,
            json!({"allow_cidrs": ["10.51.0.0/16"]}),
            Some(("policy.allow_cidrs[0]", json!("10.51.0.0/16"))),
        ),
        (
            &admin,
            json!({"allow_cidrs": ["10.1.0.0/16"], "mode": "report", "allow_ports": [8080]}),
            None,
        ),
        (
            &admin,
            json!({"allow_ports": [443, 22]}),
            Some(("policy.allow_ports[1]", json!(22))),
        ),
    ];
    for (who, value, want) in table {
        let p = policy(value.clone(), who);
        let got = match check(who, &p, &infra) {
            Ok(()) => None,
            Err(PolicyRefusal::Exceeds(e)) => {
                assert_eq!(e.ceiling, who.label);
                Some((e.field, e.value))
            }
            Err(other) => panic!("{value}: {other:?}"),
        };
        let want = want.map(|(f, v)| (f.to_owned(), v));
        assert_eq!(got, want, "{value}");
    }
    let closed = Ceilings::parse(
        r#"{"roles":{"member":{"allow_public":false}}}"#,
        DefaultPolicy::Public,
    )
    .unwrap()
    .for_role(Role::Member);
    let p = policy(json!({"allow_public": true}), &closed);
    let Err(PolicyRefusal::Exceeds(e)) = check(&closed, &p, &[]) else {
        panic!("{p:?}")
    };
    assert_eq!(
        (e.field.as_str(), e.value),
        ("policy.allow_public", json!(true))
    );
}

#[test]
fn entries_that_never_take_effect_are_400s_for_everyone() {
    let admin = Ceilings::parse(
        r#"{"roles":{"admin":{"allow_cidrs":["0.0.0.0/0", "::/0"]}}}"#,
        DefaultPolicy::Public,
    )
    .unwrap()
    .for_role(Role::Admin);
    let infra: Vec<IpNet> = vec![
        "10.213.0.0/16".parse().unwrap(),
        "10.212.0.0/24".parse().unwrap(),
    ];
    let table = [
        ("169.254.169.254/32", true),
        ("127.0.0.0/8", true),
        ("0.0.0.0/32", true),
        ("fe80::/64", true),
        ("10.213.0.0/16", true),
        ("10.213.4.0/29", true),
        ("10.212.0.2/32", true),
        ("10.0.0.0/8", false),
        ("169.254.0.0/15", false),
    ];
    for (cidr, never) in table {
        let p = policy(json!({"allow_cidrs": ["8.8.8.8/32", cidr]}), &admin);
        match check(&admin, &p, &infra) {
            Err(PolicyRefusal::NeverEffective(fields)) => {
                assert!(never, "{cidr}: {fields:?}");
                assert_eq!(fields.len(), 1);
                assert_eq!(fields[0].0, "policy.allow_cidrs[1]");
            }
            Ok(()) => assert!(!never, "{cidr} accepted"),
            Err(other) => panic!("{cidr}: {other:?}"),
        }
    }
}

#[test]
fn port_ranges_parse_and_print() {
    let ranges: Vec<PortRange> = serde_json::from_value(json!([443, "80", "8000-8999"])).unwrap();
    assert_eq!(
        serde_json::to_value(&ranges).unwrap(),
        json!([443, 80, "8000-8999"])
    );
    assert!(ranges[2].contains(8000) && ranges[2].contains(8999) && !ranges[2].contains(9000));
    for bad in [
        json!(0),
        json!(65536),
        json!(-1),
        json!("1-"),
        json!("5-4"),
        json!("a"),
    ] {
        assert!(
            serde_json::from_value::<PortRange>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}
