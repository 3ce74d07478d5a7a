//! Fuzzes `precheck` and `evaluate` with arbitrary targets and answers under a few policies.
//! Besides "never panics", it checks the core invariants: an allowed request only ever carries
//! addresses that are global or covered by an exception, and never one inside the
//! infrastructure set (nor one embedding an IPv4 address inside it).
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use airlock_egress_policy::{
    classify, evaluate, parse_absolute, parse_connect, precheck, Decision, Infrastructure,
    OperatorExceptions, Policy, PolicySpec,
};
use libfuzzer_sys::fuzz_target;

/// The deployment's own ranges: a sandbox pool, the egress bridge, a node host route, and an
/// IPv6 pool; the operator exceptions and policy CIDRs below overlap them on purpose.
fn infrastructure() -> &'static Infrastructure {
    static INFRA: OnceLock<Infrastructure> = OnceLock::new();
    INFRA.get_or_init(|| {
        Infrastructure::new(
            ["10.213.0.0/16", "10.212.0.0/24", "127.0.0.1/32", "fd42::/64"]
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
        )
    })
}

fn policies() -> &'static [(Policy, OperatorExceptions)] {
    static POLICIES: OnceLock<Vec<(Policy, OperatorExceptions)>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let strict: PolicySpec = serde_json::from_str(
            r#"{"mode":"report","allow_domains":["*.example.com","example.org"],
                "deny_domains":["bad.example.com"],"allow_ports":[443,8080],
                "allow_cidrs":["10.0.0.0/8","0.0.0.0/0"]}"#,
        )
        .unwrap_or_default();
        // The widest shape a tenant could ask for, under the broadest operator exceptions.
        let wide: PolicySpec = serde_json::from_str(
            r#"{"allow_public":true,"allow_domains":[],"allow_ports":[22,80,443,2376,3129],
                "allow_cidrs":["10.213.0.0/16","fd42::/64","0.0.0.0/0"]}"#,
        )
        .unwrap_or_default();
        vec![
            (Policy::default(), OperatorExceptions::none()),
            (
                Policy::compile(&strict).unwrap_or_default(),
                OperatorExceptions::new(vec![
                    "127.0.0.1/32".parse().unwrap(),
                    "64:ff9b::/96".parse().unwrap(),
                ]),
            ),
            (
                Policy::compile(&wide).unwrap_or_default(),
                OperatorExceptions::new(
                    ["0.0.0.0/0", "::/0"]
                        .iter()
                        .filter_map(|c| c.parse().ok())
                        .collect(),
                ),
            ),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: [count] [count x 17-byte answers (family byte + 16 bytes)] [target text].
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 5);
    let Some((answers, text)) = rest.split_at_checked(count * 17) else {
        return;
    };
    let resolved: Vec<IpAddr> = answers
        .chunks_exact(17)
        .map(|a| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&a[1..]);
            if a[0] & 1 == 0 {
                IpAddr::from([b[0], b[1], b[2], b[3]])
            } else {
                IpAddr::from(b)
            }
        })
        .collect();
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let targets = [
        parse_connect(text).ok(),
        parse_absolute(text).ok().map(|a| a.target),
    ];
    for target in targets.iter().flatten() {
        for (policy, ops) in policies() {
            let _ = precheck(policy, target);
            let _ = evaluate(policy, ops, &Infrastructure::none(), target, &resolved);
            let infra = infrastructure();
            if let Decision::Allow(allowed) = evaluate(policy, ops, infra, target, &resolved) {
                assert!(!allowed.addrs.is_empty());
                for addr in &allowed.addrs {
                    let class = classify(addr.ip());
                    assert!(
                        class.is_global() || allowed.rule.is_some(),
                        "{addr} {class:?}"
                    );
                    assert_eq!(addr.port(), target.port);
                    assert!(infra.contains(addr.ip()).is_none(), "{addr} is infrastructure");
                }
            }
        }
    }
});
