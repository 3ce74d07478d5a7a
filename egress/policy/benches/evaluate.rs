//! Policy evaluation cost with 10,000 domain rules (target: under 2 µs per decision).
//!
//! Run with `cargo bench -p airlock-egress-policy --bench evaluate`. Criterion reports its own
//! statistics; a plain timing loop at the end prints one `ns/op` line per case for the
//! benchmark table.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use airlock_egress_policy::{
    evaluate, parse_connect, Decision, Infrastructure, OperatorExceptions, Policy, PolicySpec,
    Target,
};
use criterion::Criterion;

/// 5,000 exact names, 5,000 wildcards and 100 deny rules.
fn big_policy() -> Policy {
    let exact = (0..5_000).map(|i| format!("host{i}.example{}.com", i % 97));
    let wildcard = (0..5_000).map(|i| format!("*.svc{i}.example.org"));
    let spec = PolicySpec {
        allow_domains: Some(exact.chain(wildcard).collect()),
        deny_domains: Some(
            (0..100)
                .map(|i| format!("blocked{i}.example.net"))
                .collect(),
        ),
        allow_ports: Some(vec![80, 443, 8080]),
        ..PolicySpec::default()
    };
    Policy::compile(&spec).unwrap()
}

struct Case {
    name: &'static str,
    target: Target,
    resolved: Vec<IpAddr>,
}

fn cases() -> Vec<Case> {
    let case = |name, target: &str, resolved: &[&str]| Case {
        name,
        target: parse_connect(target).unwrap(),
        resolved: resolved.iter().map(|s| s.parse().unwrap()).collect(),
    };
    vec![
        case(
            "exact_allow",
            "host4321.example53.com:443",
            &["93.184.215.14"],
        ),
        case(
            "wildcard_allow_deep",
            "a.b.c.svc4999.example.org:443",
            &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        ),
        case(
            "not_allowed",
            "x.y.z.unlisted.example.io:443",
            &["93.184.215.14"],
        ),
        case(
            "private_answer",
            "host1.example1.com:443",
            &["93.184.215.14", "10.0.0.1"],
        ),
    ]
}

/// A deployment's infrastructure set: two pools, the egress bridge, the node network and a
/// dozen host routes, as the controller pushes it.
fn infrastructure() -> Infrastructure {
    let mut cidrs: Vec<String> = [
        "10.213.0.0/16",
        "10.214.0.0/16",
        "10.212.0.0/24",
        "172.30.0.0/24",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    cidrs.extend((1..=12).map(|i| format!("192.168.77.{i}/32")));
    Infrastructure::new(cidrs.iter().map(|c| c.parse().unwrap()).collect())
}

fn run(policy: &Policy, ops: &OperatorExceptions, infra: &Infrastructure, case: &Case) -> Decision {
    evaluate(
        black_box(policy),
        black_box(ops),
        black_box(infra),
        black_box(&case.target),
        black_box(&case.resolved),
    )
}

fn main() {
    let policy = big_policy();
    let ops = OperatorExceptions::new(vec!["127.0.0.1/32".parse().unwrap()]);
    let infra = infrastructure();
    let cases = cases();
    let mut criterion = Criterion::default().configure_from_args();
    for case in &cases {
        criterion.bench_function(&format!("evaluate_10k_rules/{}", case.name), |b| {
            b.iter(|| run(&policy, &ops, &infra, case))
        });
    }
    criterion.final_summary();

    // `cargo test --benches` runs this binary without `--bench`: skip the timing loop there.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    const ITERS: u32 = 200_000;
    for case in &cases {
        let start = Instant::now();
        for _ in 0..ITERS {
            black_box(run(&policy, &ops, &infra, case));
        }
        let ns = start.elapsed().as_nanos() / u128::from(ITERS);
        println!(
            "evaluate 10k rules {:<20} {ns} ns/op ({})",
            case.name,
            run(&policy, &ops, &infra, case).as_str()
        );
    }
}
