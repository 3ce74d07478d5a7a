//! Credentials at egress, from inside real sandboxes on a DinD over mTLS, through the real
//! proxy, to a fake Anthropic upstream (a TLS server with a test CA on the sealed test
//! internet, its name served by the test DNS):
//! - a sandbox created with `credentials: [{provider: anthropic, secret}]` holds only a
//!   placeholder: the canary value is in no process environment, no file under `/run`, its
//!   home, or `docker inspect`, and not in the API's answers;
//! - curl and Python `requests` reach the upstream through the proxy's TLS termination and
//!   trust the sandbox's own CA (`/run/airlock/tls`, written by init from the frame, via the
//!   trust variables); the upstream sees the real key even though the client sent its own;
//! - a create with credentials served warm by a pool member gets the same trust files and
//!   reaches the upstream the same way;
//! - with `gateway: true`, httpx reaches the upstream through the proxy's origin-form gateway
//!   (`ANTHROPIC_BASE_URL`, plain HTTP, no CA) and the upstream sees the real key; sandbox A
//!   sending B's placeholder, or none, gets a 401 and nothing reaches the upstream;
//! - Claude Code itself, from the `claude-code` preset with only a secret named, reaches the
//!   upstream with the real key;
//! - `git clone` and `git push` of a private repository work with a `github` binding (the
//!   server sees `Basic x-access-token:<token>`), and get 401 without one;
//! - a policy change keeps the binding, and one that drops the bound host is refused;
//! - after a proxy restart the binding and the CA come back (the old trust file still works);
//! - a new value of the secret reaches the proxy at once, and a bound secret cannot be
//!   deleted (409 `secret_in_use`);
//! - an unknown secret is a 404 and an unknown provider a 400; no trust volume is made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock_certs::mitm::{InspectionCa, LeafIssuer};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use e2e::controller::tend;
use e2e::plane::{poll, Plane, PlaneOptions, AGENT_IMAGE};
use e2e::Timing;
use serde_json::{json, Value};

/// The canary key: it must reach the upstream and nothing else.
const CANARY: &str = "sk-ant-canary-7d1f0c2e9b";
/// The key after a rotation.
const ROTATED: &str = "sk-ant-rotated-40c9a1e355";
/// The upstream's name (served by the fake DNS, at the TLS upstream's address).
const HOST: &str = "api.anthropic.com";
/// The Git host's name (the same upstream, by SNI).
const GITHUB: &str = "github.com";
/// The GitHub token canary.
const GH_CANARY: &str = "ghp_canary3f9e2d7c11";

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A test CA and server certificates for [`HOST`] and [`GITHUB`] under it, written to `dir`
/// (`cert.pem`, `key.pem`, `github-cert.pem`, `github-key.pem`, `ca.pem`).
fn upstream_certs(dir: &std::path::Path) {
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let hosts = [HOST.to_owned(), GITHUB.to_owned()];
    let ca = InspectionCa::generate("test-upstream", &hosts, deadline).unwrap();
    let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    for (host, prefix) in [(HOST, ""), (GITHUB, "github-")] {
        let leaf = issuer.issue(host).unwrap();
        let chain: String = leaf
            .chain
            .iter()
            .map(|c| pem("CERTIFICATE", c.as_ref()))
            .collect();
        std::fs::write(dir.join(format!("{prefix}cert.pem")), chain).unwrap();
        let key = pem("PRIVATE KEY", leaf.key.secret_der());
        std::fs::write(dir.join(format!("{prefix}key.pem")), key).unwrap();
    }
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    // The upstream runs as root but the bind keeps host modes; make them readable.
    for name in [
        "cert.pem",
        "key.pem",
        "github-cert.pem",
        "github-key.pem",
        "ca.pem",
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        let perms = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(dir.join(name), perms).unwrap();
    }
}

/// The CA and the bundle (system roots plus the CA) are where the trust variables say, and
/// the workload cannot add to their directory.
async fn assert_trust_files(f: &Plane, id: &str) {
    let ca = sh(
        f,
        id,
        "head -1 /run/airlock/tls/ca.pem; grep -c BEGIN /run/airlock/tls/bundle.pem",
    )
    .await;
    let mut lines = ca.lines();
    assert_eq!(lines.next(), Some("-----BEGIN CERTIFICATE-----"), "{ca}");
    let in_bundle: u32 = lines.next().unwrap().parse().unwrap();
    assert!(in_bundle > 100, "the system roots plus the CA: {in_bundle}");
    let writable = sh(f, id, "touch /run/airlock/tls/x 2>&1; echo $?").await;
    assert!(
        !writable.ends_with("0\n"),
        "the trust directory takes no new file: {writable}"
    );
}

/// Creates a sandbox from `body`, expecting `201`; prints how long it took as `what` and
/// returns the answer's body.
async fn create(f: &Plane, what: &str, body: Value) -> Value {
    let started = std::time::Instant::now();
    let made = f.call(Method::POST, "/v1/sandboxes", Some(body)).await;
    eprintln!("{what}: {:?}", started.elapsed());
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    made.body
}

async fn sh(f: &Plane, id: &str, script: &str) -> String {
    f.exec(id, &["sh", "-c", script]).await
}

/// What the upstream saw for one request made in sandbox `id` with `client`.
async fn seen_by_upstream(f: &Plane, id: &str, client: &str) -> Value {
    let out = sh(f, id, client).await;
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("not the upstream's JSON: {out:?}"))
}

const CURL: &str = "curl -sS --max-time 10 -H 'x-api-key: my-own-key' \
    -d '{\"model\":\"x\"}' https://api.anthropic.com/v1/messages 2>&1";
const PYTHON: &str = "python3 -c \"import requests; \
    print(requests.post('https://api.anthropic.com/v1/messages', timeout=10, \
    headers={'x-api-key': 'my-own-key'}, json={}).text)\" 2>&1";

/// httpx through the gateway: plain HTTP to the base URL, the placeholder as the key.
const HTTPX: &str = "python3 -c \"import os, httpx; \
    print(httpx.post(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', timeout=10, \
    headers={'x-api-key': os.environ['ANTHROPIC_API_KEY']}, json={}).text)\" 2>&1";

#[tokio::test]
async fn credentials_at_egress_never_enter_the_sandbox() {
    let mut timing = Timing::start("credentials_at_egress");
    let certs = tempfile::tempdir().unwrap();
    upstream_certs(certs.path());
    let mut opts = PlaneOptions::new("credentials", env!("CARGO_BIN_EXE_fake-dns"));
    opts.names = vec![
        format!("{HOST}={{tls_upstream}}"),
        format!("{GITHUB}={{tls_upstream}}"),
    ];
    opts.tls_upstream = Some(certs.path().to_owned());
    let ca = certs.path().join("ca.pem").display().to_string();
    // One member of the agent image, made only once the warm phase tends the pool: every
    // create before it is cold.
    let pools = json!([{"image": AGENT_IMAGE, "size": 1, "max_idle_s": 600}]).to_string();
    opts.env = vec![
        ("AIRLOCK_EGRESS_UPSTREAM_CA".to_owned(), ca),
        ("AIRLOCK_POOLS".to_owned(), pools),
    ];
    let f = Plane::start(opts, &mut timing).await;
    f.dind.load_image(AGENT_IMAGE).await.unwrap();
    timing.phase("load-agent");

    let put = f
        .call(
            Method::PUT,
            "/v1/secrets/anthropic",
            Some(json!({"value": CANARY})),
        )
        .await;
    assert!(put.status.is_success(), "{:?} {}", put.status, put.body);
    let policy = json!({"allow_domains": [HOST]});
    let body = |credentials: Value| {
        json!({"image": AGENT_IMAGE, "cmd": ["sleep", "300"], "policy": policy,
               "limits": {"memory_mb": 512}, "credentials": credentials})
    };

    // Refusals first: nothing is made for them.
    let unknown = json!([{"provider": "anthropic", "secret": "nope"}]);
    let refused = f
        .call(Method::POST, "/v1/sandboxes", Some(body(unknown)))
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    let bad = json!([{"provider": "acme", "secret": "anthropic"}]);
    let refused = f.call(Method::POST, "/v1/sandboxes", Some(body(bad))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("credentials[0]"),
        "{}",
        refused.body
    );

    let bound = json!([{"provider": "anthropic", "secret": "anthropic"}]);
    let made = create(&f, "cold create with credentials", body(bound.clone())).await;
    assert!(!made.to_string().contains(CANARY));
    let id = made["id"].as_str().unwrap().to_owned();
    timing.phase("create");

    // Only a placeholder inside; the trust files and variables are there.
    let env = sh(
        &f,
        &id,
        "printenv ANTHROPIC_API_KEY SSL_CERT_FILE NODE_EXTRA_CA_CERTS",
    )
    .await;
    assert!(env.starts_with("airlock-placeholder-anthropic-"), "{env}");
    assert!(
        env.contains("/run/airlock/tls/bundle.pem\n/run/airlock/tls/ca.pem"),
        "{env}"
    );
    let leaks = sh(
        &f,
        &id,
        &format!(
            "grep -ls {CANARY} /proc/*/environ /run/airlock/tls/* $HOME/* 2>/dev/null; echo done"
        ),
    )
    .await;
    assert_eq!(leaks, "done\n", "the canary is inside the sandbox");
    assert_trust_files(&f, &id).await;
    let volume = f
        .dind
        .docker()
        .inspect_volume(&format!("airlock-tls-{id}"))
        .await;
    assert!(volume.is_err(), "no trust volume is made any more");
    let inspected = f
        .dind
        .docker()
        .inspect_container(
            &airlock::sandbox::names::container_name(id.parse().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert!(
        !format!("{inspected:?}").contains(CANARY),
        "docker inspect shows the canary"
    );

    // curl and Python requests reach the upstream; it sees the real key, not theirs.
    for client in [CURL, PYTHON] {
        let seen = seen_by_upstream(&f, &id, client).await;
        assert_eq!(seen["x-api-key"], CANARY, "{client}: {seen}");
        assert_eq!(seen["path"], "/v1/messages", "{client}: {seen}");
    }
    timing.phase("clients");

    // A policy change keeps the binding; dropping the bound host is refused.
    let uri = format!("/v1/sandboxes/{id}/policy");
    let wider = json!({"allow_domains": [HOST, "example.org"]});
    let changed = f.call(Method::PUT, &uri, Some(wider)).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(seen_by_upstream(&f, &id, CURL).await["x-api-key"], CANARY);
    let without = json!({"allow_domains": ["example.org"]});
    let refused = f.call(Method::PUT, &uri, Some(without)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    timing.phase("policy");

    // Proxy restart: the binding and the CA come back with the re-push.
    f.restart_proxy().await;
    f.plane.ensure().await.unwrap();
    assert_eq!(seen_by_upstream(&f, &id, PYTHON).await["x-api-key"], CANARY);
    timing.phase("proxy-restart");

    // A new value reaches the proxy at once; a bound secret cannot be deleted.
    let rotated = f
        .call(
            Method::PUT,
            "/v1/secrets/anthropic",
            Some(json!({"value": ROTATED})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(seen_by_upstream(&f, &id, CURL).await["x-api-key"], ROTATED);
    let in_use = f.call(Method::DELETE, "/v1/secrets/anthropic", None).await;
    assert_eq!(in_use.status, StatusCode::CONFLICT, "{}", in_use.body);
    assert_eq!(in_use.body["error"], "secret_in_use", "{}", in_use.body);
    timing.phase("rotation");

    // Gateway mode (no CA): httpx posts to ANTHROPIC_BASE_URL, the proxy itself, in plain
    // HTTP; the upstream sees the real key. Sandbox A sending B's placeholder, or none, is a
    // 401, and nothing reaches the upstream for those.
    let gw = json!([{"provider": "anthropic", "secret": "anthropic", "gateway": true}]);
    let mut gateway_ids = Vec::new();
    for _ in 0..2 {
        let made = create(&f, "create with a gateway binding", body(gw.clone())).await;
        gateway_ids.push(made["id"].as_str().unwrap().to_owned());
    }
    let (a, b) = (&gateway_ids[0], &gateway_ids[1]);
    let base = sh(&f, a, "printenv ANTHROPIC_BASE_URL").await;
    assert_eq!(base.trim(), "http://airlock.internal:3128/gw/anthropic");
    let seen = seen_by_upstream(&f, a, HTTPX).await;
    assert_eq!(seen["x-api-key"], ROTATED, "{seen}");
    assert_eq!(seen["path"], "/v1/messages", "{seen}");
    let b_key = sh(&f, b, "printenv ANTHROPIC_API_KEY").await;
    let before = f.tls_upstream_log().await.lines().count();
    for header in [format!("-H 'x-api-key: {}'", b_key.trim()), String::new()] {
        let status = sh(
            &f,
            a,
            &format!(
                "curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 {header} \
                 -d '{{}}' \"$ANTHROPIC_BASE_URL/v1/messages\""
            ),
        )
        .await;
        assert_eq!(status.trim(), "401", "{header:?}");
    }
    let after = f.tls_upstream_log().await.lines().count();
    assert_eq!(
        before, after,
        "a refused gateway request reached the upstream"
    );
    for id in &gateway_ids {
        let deleted = f
            .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
            .await;
        assert!(deleted.status.is_success(), "{}", deleted.body);
    }
    timing.phase("gateway");

    // A real agent CLI: the claude-code preset binds its provider to the named secret;
    // Claude Code (which trusts the CA through NODE_EXTRA_CA_CERTS) reaches the upstream,
    // which sees the real key.
    let agent = json!({"preset": "claude-code", "cmd": ["sleep", "300"],
        "limits": {"memory_mb": 1024}, "credentials": [{"secret": "anthropic"}]});
    let made = create(&f, "claude-code create", agent).await;
    let agent_id = made["id"].as_str().unwrap().to_owned();
    let before = f.tls_upstream_log().await.lines().count();
    let out = sh(
        &f,
        &agent_id,
        "timeout 60 claude -p 'say hi' 2>&1 | tail -3; echo exit=$?",
    )
    .await;
    let log = f.tls_upstream_log().await;
    let from_claude: Vec<Value> = log
        .lines()
        .skip(before)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        from_claude.iter().any(
            |r| r["path"].as_str().unwrap_or("").starts_with("/v1/messages")
                && r["x-api-key"] == ROTATED
        ),
        "claude never reached the upstream with the key: {from_claude:?}\n{out}"
    );
    let deleted = f
        .call(Method::DELETE, &format!("/v1/sandboxes/{agent_id}"), None)
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    timing.phase("claude-code");

    // GitHub: clone and push a private repository with the binding; the server sees the
    // token as `Basic x-access-token:…`. Without a binding it answers 401.
    let put = f
        .call(
            Method::PUT,
            "/v1/secrets/github",
            Some(json!({"value": GH_CANARY})),
        )
        .await;
    assert!(put.status.is_success(), "{}", put.body);
    let git = json!({"image": AGENT_IMAGE, "cmd": ["sleep", "300"],
        "policy": {"allow_domains": [GITHUB, "api.github.com"]}, "limits": {"memory_mb": 512},
        "credentials": [{"provider": "github", "secret": "github"}]});
    let made = create(&f, "github create", git).await;
    let git_id = made["id"].as_str().unwrap().to_owned();
    let script = "cd $HOME && git clone -q https://github.com/org/repo.git r 2>&1 && cat r/README \
        && cd r && echo two > two && git add two \
        && git -c user.name=a -c user.email=a@a commit -qm two && git push -q origin HEAD:main 2>&1; \
        echo exit=$?";
    let out = sh(&f, &git_id, script).await;
    assert!(
        out.contains("seeded\n") && out.ends_with("exit=0\n"),
        "{out}"
    );
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{GH_CANARY}"));
    let log = f.tls_upstream_log().await;
    let pushes = log
        .lines()
        .filter(|l| l.contains("git-receive-pack"))
        .count();
    assert!(pushes >= 1, "no push reached the server: {log}");
    assert!(
        log.contains(&format!("Basic {basic}")),
        "the server never saw the token: {log}"
    );
    let env = sh(&f, &git_id, "printenv GH_TOKEN").await;
    assert!(env.starts_with("airlock-placeholder-github-"), "{env}");
    let uri = format!("/v1/sandboxes/{id}/policy");
    let to_github = json!({"allow_domains": [HOST, GITHUB]});
    assert_eq!(
        f.call(Method::PUT, &uri, Some(to_github)).await.status,
        StatusCode::OK
    );
    let unbound = "cd $HOME && GIT_SSL_NO_VERIFY=1 GIT_TERMINAL_PROMPT=0 \
        git clone -q https://github.com/org/repo.git u 2>&1; echo exit=$?";
    let out = sh(&f, &id, unbound).await;
    // Git's answer to a 401 with prompts off.
    let refused = out.contains("could not read Username") && !out.ends_with("exit=0\n");
    assert!(refused, "{out}");
    let deleted = f
        .call(Method::DELETE, &format!("/v1/sandboxes/{git_id}"), None)
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    timing.phase("github");

    // Warm: a pool member serves a create with credentials. The claim makes the CA and sends
    // it in the frame; init writes the same trust files into the member's tmpfs.
    let (stop, task) = tend(&f.state);
    poll(|| async {
        let pools = f.call(Method::GET, "/v1/pools", None).await.body;
        (pools[0]["ready"] == 1).then_some(())
    })
    .await;
    let made = create(&f, "warm create with credentials", body(bound.clone())).await;
    let warm_id = made["id"].as_str().unwrap().to_owned();
    let pools = f.call(Method::GET, "/v1/pools", None).await.body;
    assert_eq!(pools[0]["claims"], 1, "served warm: {pools}");
    drop(stop);
    task.await.unwrap();
    assert_trust_files(&f, &warm_id).await;
    assert_eq!(
        seen_by_upstream(&f, &warm_id, CURL).await["x-api-key"],
        ROTATED
    );
    assert_eq!(
        seen_by_upstream(&f, &warm_id, PYTHON).await["x-api-key"],
        ROTATED
    );
    let deleted = f
        .call(Method::DELETE, &format!("/v1/sandboxes/{warm_id}"), None)
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    timing.phase("warm");

    // Nothing the API shows holds the value.
    for uri in [format!("/v1/sandboxes/{id}"), "/v1/secrets".to_owned()] {
        let reply = f.call(Method::GET, &uri, None).await;
        assert!(
            !reply.body.to_string().contains(CANARY),
            "{uri}: {}",
            reply.body
        );
    }

    // Once the last binding sandbox is deleted, the secret can go.
    let deleted = f
        .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    let freed = f.call(Method::DELETE, "/v1/secrets/anthropic", None).await;
    assert_eq!(freed.status, StatusCode::NO_CONTENT, "{}", freed.body);
    timing.phase("delete");
}
