//! Warm pools through the real controller on a DinD over mTLS, with the proxy: the pool fills
//! to its size (each member registered at the proxy as unbound); two creates are served by
//! members and each sees only what it asked for (env, command, working directory, policy),
//! with nothing per-run in the container's `Config.Env`; a claim with other limits gets them;
//! a create with labels goes cold (`pool_miss{reason="labels"}`); the pool refills; a claim
//! the controller died in the middle of is undone by the next start (sandbox `failed`, member
//! and container gone), and that second controller adopts the other ready members (same ids,
//! stdin attach re-opened) and serves a claim from one; a listener in an unclaimed member gets
//! no connection from that sandbox, directly or through the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use airlock::api::{AppState, Auth};
use airlock::pool::MemberState;
use airlock::reconcile::{Pass, ReconcileSettings, Reconciler};
use airlock::sandbox::{SandboxRequest, SandboxState};
use airlock::secrets::vault::{SecretKey, Vault};
use airlock::services::{Services, Settings};
use airlock::store::{Claim, ClaimOutcome, NewSandbox, Scope};
use axum::http::{Method, StatusCode};
use e2e::controller::{api_call, tend};
use e2e::plane::{error_code, poll, Plane, PlaneOptions, TOKEN};
use e2e::Timing;
use serde_json::{json, Value};
use test_support::dind::TESTBOX_IMAGE;

/// A listener counting every accepted connection in /tmp/hits.
const LISTENER: &str =
    "while true; do echo MEMBER-SECRET | nc -l -p 8080 >/dev/null 2>&1; echo hit >>/tmp/hits; done";
/// The listener's count.
const HITS: &str = "cat /tmp/hits 2>/dev/null; true";
/// A connection from inside the member itself: the listener works.
const SELF_CONNECT: &str = "nc -w 2 127.0.0.1 8080 </dev/null >/dev/null; true";

/// The pool the controller keeps: two members of the testbox.
fn pools() -> String {
    json!([{"image": TESTBOX_IMAGE, "size": 2, "max_idle_s": 600}]).to_string()
}

/// `GET /v1/pools`' only pool, once `ready` members are ready.
async fn ready(state: &AppState, ready: u64) -> Value {
    poll(|| async {
        let (status, body) = api_call(state, TOKEN, Method::GET, "/v1/pools", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let pool = body[0].clone();
        (pool["ready"] == ready).then_some(pool)
    })
    .await
}

async fn create(state: &AppState, body: Value) -> (String, std::time::Duration) {
    let started = Instant::now();
    let (status, made) = api_call(state, TOKEN, Method::POST, "/v1/sandboxes", Some(body)).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["state"], "running", "{made}");
    (made["id"].as_str().unwrap().to_owned(), took)
}

fn workload(value: &str) -> Value {
    json!([
        "sh",
        "-c",
        format!("echo \"$V|$(pwd)|{value}\" > /tmp/seen; exec sleep 300")
    ])
}

#[tokio::test]
async fn warm_claims_bind_late_and_survive_a_controller_restart() {
    let mut timing = Timing::start("pool_claim");
    let mut opts = PlaneOptions::new("pool_claim", env!("CARGO_BIN_EXE_fake-dns"));
    opts.names = vec!["allowed.test={upstream}".to_owned()];
    opts.env = vec![("AIRLOCK_POOLS".to_owned(), pools())];
    let f = Plane::start(opts, &mut timing).await;
    let (stop, task) = tend(&f.state);
    let filled = Instant::now();
    let pool = ready(&f.state, 2).await;
    eprintln!("pool filled (2 members) in {:?}: {pool}", filled.elapsed());
    timing.phase("fill");
    let registered = f.plane.admin().list_members().await.unwrap();
    assert_eq!(registered.members.len(), 2, "{registered:?}");

    // Two claims, each with its own env, command, working directory and policy.
    let policy = json!({"allow_domains": ["allowed.test"]});
    let body_a = json!({"image": TESTBOX_IMAGE, "cmd": workload("a"), "env": {"V": "alpha"},
                        "workdir": "/tmp", "policy": policy});
    let (a, took_a) = create(&f.state, body_a).await;
    let body_b = json!({"image": TESTBOX_IMAGE, "cmd": workload("b"), "env": {"V": "beta"}});
    let (b, took_b) = create(&f.state, body_b).await;
    eprintln!("warm claims: {took_a:?}, {took_b:?}");
    let (_, pools) = api_call(&f.state, TOKEN, Method::GET, "/v1/pools", None).await;
    assert_eq!(
        pools[0]["claims"], 2,
        "both creates were served warm: {pools}"
    );
    assert_eq!(pools[0]["misses"], 0, "{pools}");
    timing.phase("claims");

    let seen = |id: String| {
        let f = &f;
        async move {
            poll(|| async {
                let out = f.exec(&id, &["cat", "/tmp/seen"]).await;
                (!out.is_empty()).then_some(out)
            })
            .await
        }
    };
    assert_eq!(seen(a.clone()).await.trim(), "alpha|/tmp|a");
    assert_eq!(seen(b.clone()).await.trim(), "beta|/|b");
    let inspect = f
        .dind
        .docker()
        .inspect_container(&format!("airlock-{a}"), None)
        .await
        .unwrap();
    let env = inspect.config.unwrap().env.unwrap_or_default().join("\n");
    assert!(!env.contains("alpha"), "per-run env in Config.Env: {env}");
    assert!(
        !env.contains("HTTP_PROXY"),
        "the proxy credential in Config.Env: {env}"
    );

    // Each claim's policy is its own: a may reach only allowed.test, b the upstream by IP.
    let (a_proxy, a_cred) = f.credential(&a).await;
    let (b_proxy, b_cred) = f.credential(&b).await;
    let allowed = f
        .fetch(&a, a_proxy, "http://allowed.test/", Some(&a_cred))
        .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let by_ip = format!("http://{}/", f.upstream);
    let denied = f.fetch(&a, a_proxy, &by_ip, Some(&a_cred)).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    let open = f.fetch(&b, b_proxy, &by_ip, Some(&b_cred)).await;
    assert_eq!(open.status, 200, "{open:?}");
    let stolen = f
        .fetch(&a, a_proxy, "http://allowed.test/", Some(&b_cred))
        .await;
    assert_eq!(error_code(&stolen), "bad_credential", "{stolen:?}");
    timing.phase("late-binding");

    // Limits other than the pool's shape are applied to the member at claim.
    ready(&f.state, 2).await;
    let body_c = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"],
                        "limits": {"memory_mb": 96, "pids": 48}});
    let (c, _) = create(&f.state, body_c).await;
    let host = f
        .dind
        .docker()
        .inspect_container(&format!("airlock-{c}"), None)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(host.memory, Some(96 * 1024 * 1024));
    assert_eq!(host.pids_limit, Some(48));

    // Labels are fixed at create: that request goes cold, and says why.
    let body_d = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "labels": {"team": "x"}});
    let (d, took_d) = create(&f.state, body_d).await;
    eprintln!("cold create (labels): {took_d:?}");
    let misses = f.state.services.metrics().render(&Default::default());
    assert!(
        misses.contains("airlock_pool_miss_total{reason=\"labels\"} 1"),
        "{misses}"
    );
    let (_, pools) = api_call(&f.state, TOKEN, Method::GET, "/v1/pools", None).await;
    assert_eq!(pools[0]["claims"], 3, "{pools}");
    timing.phase("shape-and-cold");

    // The controller dies mid-claim: the store took a member (its sandbox row is `creating`)
    // and nothing else happened. Pool tending stops with it.
    ready(&f.state, 2).await;
    drop(stop);
    task.await.unwrap();
    let members: Vec<_> = f.store.list_members("local").await.unwrap();
    let ready_now: Vec<_> = members
        .iter()
        .filter(|m| m.state == MemberState::Ready)
        .collect();
    assert_eq!(ready_now.len(), 2);
    let spec = SandboxRequest {
        image: TESTBOX_IMAGE.to_owned(),
        ..SandboxRequest::default()
    }
    .validate(&f.config.maximums)
    .unwrap();
    let claim = Claim {
        key: &ready_now[0].key,
        new: NewSandbox {
            owner: f.admin,
            spec,
            idempotency_key: None,
            node: Some("local".to_owned()),
        },
        quota: f.config.quota,
        subnet_cap: 64,
        audit: None,
    };
    let ClaimOutcome::Claimed(interrupted) = f.store.claim_member(claim).await.unwrap() else {
        panic!("no member claimed");
    };
    let (lost, lost_member) = (interrupted.sandbox.id, interrupted.member.id);
    let ready_ids: Vec<_> = ready_now
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != lost_member)
        .collect();
    assert_eq!(ready_ids.len(), 1);

    // A second controller over the same store: its start pass fails the interrupted sandbox,
    // its pools destroy that member and adopt the others.
    let services = Services::builder(
        f.store.clone(),
        f.docker.clone(),
        Settings::from_config(&f.config),
    )
    .egress(f.plane.clone())
    .vault(Vault::new(&SecretKey::generate()))
    .build();
    let token = Some(airlock::config::Secret::new(TOKEN));
    let second = AppState::new(services, Auth::new(token, f.admin));
    let converged = Instant::now();
    let mut settings = ReconcileSettings::new("local", Duration::from_secs(1));
    settings.in_flight_deadline = Duration::from_secs(120);
    let reconciler = Reconciler::new(f.store.clone(), f.docker.clone(), settings);
    reconciler.pass_logged(Pass::Startup).await;
    let (stop, task) = tend(&second);
    poll(|| async {
        let gone = f.store.get_member(lost_member).await.unwrap().is_none();
        let failed = f
            .store
            .get_sandbox(Scope::All, lost)
            .await
            .unwrap()
            .unwrap();
        (gone && failed.state == SandboxState::Failed).then_some(())
    })
    .await;
    eprintln!("interrupted claim converged in {:?}", converged.elapsed());
    let leftover = f
        .dind
        .docker()
        .inspect_container(&format!("airlock-{lost}"), None)
        .await;
    assert!(
        leftover.is_err(),
        "the interrupted claim's container is gone"
    );
    ready(&second, 2).await;
    let after: Vec<_> = f.store.list_members("local").await.unwrap();
    for id in &ready_ids {
        let member = after
            .iter()
            .find(|m| m.id == *id)
            .expect("the member survived");
        assert_eq!(member.state, MemberState::Ready);
    }
    let body_e = json!({"image": TESTBOX_IMAGE, "cmd": workload("e"), "env": {"V": "epsilon"}});
    let (e, took_e) = create(&second, body_e).await;
    eprintln!("claim after a restart: {took_e:?}");
    assert!(
        ready_ids.iter().any(|m| m.to_string() == e),
        "served by an adopted member"
    );
    let out = poll(|| async {
        let (status, out) = api_call(
            &second,
            TOKEN,
            Method::POST,
            &format!("/v1/sandboxes/{e}/exec"),
            Some(json!({"cmd": ["cat", "/tmp/seen"]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        let text = out["stdout"].as_str().unwrap_or_default().to_owned();
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert_eq!(out.trim(), "epsilon|/|e");
    timing.phase("restart");

    // An unclaimed member is out of a sandbox's reach: a listener in it (started by the test
    // through the node) gets no connection from sandbox e, directly or through the proxy.
    ready(&second, 2).await;
    let members = f.store.list_members("local").await.unwrap();
    let idle = members
        .iter()
        .find(|m| m.state == MemberState::Ready)
        .expect("a ready member");
    let target = format!("airlock-{}", idle.id.sandbox_id());
    let member_ip = idle.subnet.expect("a ready member holds its /29").sandbox();
    let in_member = |script: &'static str| {
        let dind = &f.dind;
        let target = target.clone();
        async move {
            let cmd = ["docker", "exec", target.as_str(), "sh", "-c", script];
            dind.exec_in_dind(&cmd).await.unwrap()
        }
    };
    let spawn = [
        "docker",
        "exec",
        "-d",
        target.as_str(),
        "sh",
        "-c",
        LISTENER,
    ];
    f.dind.exec_in_dind(&spawn).await.unwrap();
    let hits = || async { in_member(HITS).await.stdout.lines().count() };
    let baseline = poll(|| async {
        in_member(SELF_CONNECT).await;
        Some(hits().await).filter(|n| *n >= 1)
    })
    .await;
    let direct = format!("nc -w 2 {member_ip} 8080 </dev/null; echo rc=$?");
    let (status, out) = api_call(
        &second,
        TOKEN,
        Method::POST,
        &format!("/v1/sandboxes/{e}/exec"),
        Some(json!({"cmd": ["sh", "-c", direct]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(
        !out["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("SECRET"),
        "{out}"
    );
    let (e_proxy, e_cred) = f.credential(&e).await;
    let proxied = f
        .fetch(
            &e,
            e_proxy,
            &format!("http://{member_ip}:8080/"),
            Some(&e_cred),
        )
        .await;
    assert_eq!(proxied.status, 403, "{proxied:?}");
    assert_eq!(
        hits().await,
        baseline,
        "a connection reached the unclaimed member"
    );
    timing.phase("member-unreachable");

    for id in [&a, &b, &c, &d, &e] {
        let (status, body) = api_call(
            &second,
            TOKEN,
            Method::DELETE,
            &format!("/v1/sandboxes/{id}"),
            None,
        )
        .await;
        assert!(status.is_success(), "{body}");
    }
    drop(stop);
    task.await.unwrap();
}
