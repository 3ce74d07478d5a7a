//! Containment, attacked from inside real sandboxes (DESIGN.md invariants 9 and 10): whatever
//! egress policy a member writes, their sandbox never reaches another tenant's sandbox or any
//! part of the deployment through the proxy, and the refusals never tell it an address it did
//! not send.
//!
//! Member A runs a listener on 8080 whose every accepted connection is counted in a file (a
//! positive control proves the counter works). Member B then tries every policy shape a member
//! may submit:
//! - under the default member ceiling, each widening (a CIDR over the sandbox pool or the node
//!   network, report mode, metadata and loopback CIDRs), at create and on a running sandbox, is
//!   refused at the API (`403 policy_exceeds_ceiling` or `400` for an entry that can never
//!   take effect);
//! - after the operator raises B's ceiling to everything (every CIDR, every port, report mode),
//!   B's widest policy is accepted, and from inside B, with B's own credential, every address
//!   and name of the deployment is refused by the proxy as `infrastructure` (or does not
//!   resolve): A's listener, the sandbox gateway on the Docker ports, the proxy's admin port,
//!   the DinD, the controller, names the DNS resolves to those, and node container names.
//!
//! At the end A's listener has seen zero connections, B's self-test passes with its
//! through-proxy checks and names no neighbour, and the ledger shows the refusals with the
//! ceiling that applied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};

use airlock::accounts::user::{Role, Scopes};
use airlock::accounts::{CreateToken, CreateUser, TokenOwner};
use airlock::audit::Actor;
use airlock::sandbox::names::container_name;
use axum::http::{Method, StatusCode};
use e2e::plane::{error_code, poll, Plane, PlaneOptions, Proxied};
use e2e::Timing;
use serde_json::{json, Value};

/// The first /29 of the default pool: A, created first, lives at its `.3`.
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 3);
/// Where the proxy's admin API listens (the `.2` of the default egress bridge).
const PROXY_BRIDGE: &str = "10.212.0.2";
/// The listener in A: counts every accepted connection in /tmp/hits.
const LISTENER: &str =
    "while true; do echo A-SECRET | nc -l -p 8080 >/dev/null 2>&1; echo hit >>/tmp/hits; done";
/// Refusal codes that prove a name of the deployment got nowhere.
const NAME_REFUSALS: [&str; 3] = ["infrastructure", "dns_no_answer", "dns_failed"];

#[tokio::test]
async fn no_policy_a_member_writes_reaches_another_tenant_or_the_control_plane() {
    let mut timing = Timing::start("containment");
    let mut opts = PlaneOptions::new("containment", env!("CARGO_BIN_EXE_fake-dns"));
    opts.names = vec![
        format!("neighbour.test={A_ADDR}"),
        "dind.test={dind}".to_owned(),
        "controller.test={gateway}".to_owned(),
        "mixed.test={upstream},{dind}".to_owned(),
        "public.test={upstream}".to_owned(),
    ];
    let f = Plane::start(opts, &mut timing).await;
    let alice = member(&f, "alice@containment.test").await;
    let bob = member(&f, "bob@containment.test").await;

    // A's listener, with a positive control: a local connection is counted.
    let a = created(
        f.try_create(&alice, Value::Null, &["sh", "-c", LISTENER])
            .await,
    );
    assert_eq!(f.address(&a).await, A_ADDR, "A holds the first /29");
    poll(|| async {
        f.exec(&a, &["netstat", "-ltn"])
            .await
            .contains(":8080")
            .then_some(())
    })
    .await;
    f.exec(
        &a,
        &["sh", "-c", "nc -w 2 127.0.0.1 8080 </dev/null >/dev/null"],
    )
    .await;
    let baseline = poll(|| async { Some(hits(&f, &a).await).filter(|n| *n >= 1) }).await;
    timing.phase("listener");

    // 1. Under the default member ceiling every widening is refused at the API.
    let plain = created(f.try_create(&bob, Value::Null, &["sleep", "300"]).await);
    for policy in widening_policies() {
        let reply = f.try_create(&bob, policy.clone(), &["sleep", "300"]).await;
        assert_refused_at_api(&reply, &policy);
        let uri = format!("/v1/sandboxes/{plain}/policy");
        let reply = f
            .call_as(&bob, Method::PUT, &uri, Some(policy.clone()))
            .await;
        assert_refused_at_api(&reply, &policy);
    }
    timing.phase("api-refusals");

    // 2. The operator raises B's ceiling to everything; B's widest policy is now accepted.
    let ceilings = json!({"users": {"bob@containment.test": {
        "allow_cidrs": ["0.0.0.0/0", "::/0"], "ports": ["1-65535"], "report_mode": true}}});
    let put = f
        .call(Method::PUT, "/v1/policy/ceilings", Some(ceilings))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let widest = json!({"mode": "report", "allow_public": true,
        "allow_cidrs": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"],
        "allow_ports": [22, 80, 443, 2375, 2376, 2377, 3128, 3129, 8080]});
    let b = created(f.try_create(&bob, widest.clone(), &["sleep", "300"]).await);
    let uri = format!("/v1/sandboxes/{plain}/policy");
    let widened = f.call_as(&bob, Method::PUT, &uri, Some(widest)).await;
    assert_eq!(widened.status, StatusCode::OK, "{}", widened.body);
    timing.phase("ceiling-raised");

    // The proxy path works (a refusal from a dead proxy would prove nothing).
    let (b_proxy, b_cred) = f.credential(&b).await;
    let up = f.upstream;
    let ok = f
        .fetch(&b, b_proxy, &format!("http://{up}/"), Some(&b_cred))
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");

    // 3. Every address and name of the deployment, from both of B's sandboxes.
    for sandbox in [&b, &plain] {
        let (proxy, cred) = f.credential(sandbox).await;
        for (target, codes) in attack_targets(&f, &a, proxy) {
            let answer = f.connect(sandbox, proxy, &target, &cred).await;
            assert_infrastructure(&answer, &target, codes);
        }
        let get = f
            .fetch(
                sandbox,
                proxy,
                &format!("http://{A_ADDR}:8080/"),
                Some(&cred),
            )
            .await;
        assert_infrastructure(&get, &format!("{A_ADDR}:8080"), &["infrastructure"]);
    }
    timing.phase("attacks");

    // 4. A's listener saw nothing.
    assert_eq!(
        hits(&f, &a).await,
        baseline,
        "a connection reached A's listener"
    );

    // 5. B's self-test passes, and its report names no neighbour.
    let selftest = f
        .call_as(
            &bob,
            Method::POST,
            &format!("/v1/sandboxes/{b}/selftest"),
            None,
        )
        .await;
    assert_eq!(selftest.status, StatusCode::OK, "{}", selftest.body);
    let checks = selftest.body["report"]["checks"]
        .as_array()
        .unwrap()
        .clone();
    for check in checks.iter().filter(|c| c["result"] != "pass") {
        eprintln!("selftest failure: {check}");
    }
    assert_eq!(selftest.body["status"], "passed", "{:#}", selftest.body);
    let text = selftest.body.to_string();
    assert!(
        !text.contains(&A_ADDR.to_string()),
        "the report names A's address: {text}"
    );
    assert!(!text.contains(&a), "the report names A's sandbox: {text}");
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "proxy_to_neighbour" && c["result"] == "pass"),
        "{text}"
    );
    timing.phase("selftest");

    // 6. The ledger keeps the refusals, the resolved addresses and the ceiling for the operator.
    let ledger = f.ledger(&b, 10).await;
    let refused: Vec<&Value> = ledger
        .iter()
        .filter(|e| e["reason"] == "infrastructure")
        .collect();
    assert!(!refused.is_empty(), "{ledger:?}");
    assert!(
        refused.iter().all(|e| e["ceiling"]
            .as_str()
            .is_some_and(|c| c.starts_with("user:"))),
        "each decision records the ceiling that applied: {refused:?}"
    );
    let named = refused
        .iter()
        .find(|e| e["host"] == "neighbour.test")
        .unwrap();
    assert_eq!(named["addr"], format!("{A_ADDR}:8080"), "{named}");
    timing.phase("ledger");
}

/// A member with a `sandboxes:write` API token; returns the token.
async fn member(f: &Plane, email: &str) -> String {
    let accounts = &f.state.services.accounts;
    let create = CreateUser {
        email: email.to_owned(),
        display_name: String::new(),
        role: Role::Member,
        password: None,
    };
    accounts.run(&Actor::boot(), create).await.unwrap();
    let scopes = Scopes::from_stored("sandboxes:write").unwrap();
    let create = CreateToken {
        owner: TokenOwner::Email(email.to_owned()),
        name: "containment".to_owned(),
        scopes,
        expires_in: None,
    };
    accounts.run(&Actor::boot(), create).await.unwrap().text
}

fn created(reply: e2e::plane::Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["state"], "running", "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn hits(f: &Plane, a: &str) -> usize {
    let out = f
        .exec(a, &["sh", "-c", "cat /tmp/hits 2>/dev/null; true"])
        .await;
    out.lines().count()
}

/// Every widening a member might try: CIDRs over the pool, the node network and everything
/// private, ports, report mode, and entries that can never take effect.
fn widening_policies() -> Vec<Value> {
    vec![
        json!({"allow_cidrs": ["10.213.0.0/16"], "allow_ports": [8080]}),
        json!({"allow_cidrs": ["10.0.0.0/8"], "allow_ports": [8080]}),
        json!({"allow_cidrs": ["10.231.0.0/16"]}),
        json!({"allow_cidrs": ["0.0.0.0/0"]}),
        json!({"allow_cidrs": [format!("{A_ADDR}/32")], "allow_ports": [8080]}),
        json!({"mode": "report"}),
        json!({"mode": "report", "allow_cidrs": ["10.0.0.0/8"]}),
        json!({"allow_cidrs": ["169.254.169.254/32"]}),
        json!({"allow_cidrs": ["127.0.0.0/8"]}),
    ]
}

fn assert_refused_at_api(reply: &e2e::plane::Reply, policy: &Value) {
    match reply.status {
        StatusCode::FORBIDDEN => {
            assert_eq!(
                reply.body["error"], "policy_exceeds_ceiling",
                "{policy}: {}",
                reply.body
            );
            assert!(reply.body["field"].is_string(), "{policy}: {}", reply.body);
        }
        StatusCode::BAD_REQUEST => {
            let text = reply.body.to_string();
            assert!(
                text.contains("policy"),
                "{policy}: the field is named: {text}"
            );
        }
        other => panic!("{policy} was not refused: {other} {}", reply.body),
    }
}

/// What B asks the proxy for, with the refusal codes that count: the deployment's addresses
/// must be `infrastructure`; names may also fail to resolve.
fn attack_targets(f: &Plane, a: &str, proxy: SocketAddr) -> Vec<(String, &'static [&'static str])> {
    const INFRA: &[&str] = &["infrastructure"];
    let gateway = Ipv4Addr::from(
        u32::from(match proxy.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => panic!("IPv6 proxy"),
        }) - 1,
    );
    let dind = f.dind.ip();
    let controller = f.controller_ip();
    let mut targets: Vec<(String, &'static [&'static str])> = vec![
        (format!("{A_ADDR}:8080"), INFRA),
        (format!("{A_ADDR}:22"), INFRA),
        (format!("{}:3129", proxy.ip()), INFRA),
        (format!("{}:3128", proxy.ip()), INFRA),
        (format!("{PROXY_BRIDGE}:3129"), INFRA),
        (format!("{controller}:8080"), INFRA),
        ("neighbour.test:8080".to_owned(), INFRA),
        ("dind.test:2376".to_owned(), INFRA),
        ("controller.test:8080".to_owned(), INFRA),
        ("mixed.test:80".to_owned(), INFRA),
        (
            format!("{}:8080", container_name(a.parse().unwrap())),
            &NAME_REFUSALS,
        ),
        ("airlock-egress:3129".to_owned(), &NAME_REFUSALS),
        ("dind:2376".to_owned(), &NAME_REFUSALS),
    ];
    for port in [2375, 2376, 2377, 3129] {
        targets.push((format!("{gateway}:{port}"), INFRA));
        targets.push((format!("{dind}:{port}"), INFRA));
    }
    targets
}

/// The proxy refused `target` with one of `codes`, and named no address it was not sent.
fn assert_infrastructure(answer: &Proxied, target: &str, codes: &[&str]) {
    assert_eq!(answer.status, 403, "{target}: {answer:?}");
    let code = error_code(answer);
    assert!(
        codes.contains(&code.as_str()),
        "{target}: {code} {answer:?}"
    );
    let sent = target.rsplit_once(':').map_or(target, |(host, _)| host);
    let leaked = answer
        .body
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|run| run.parse::<Ipv4Addr>().is_ok())
        .find(|ip| *ip != sent);
    assert_eq!(
        leaked, None,
        "{target}: the refusal names an address: {answer:?}"
    );
}
