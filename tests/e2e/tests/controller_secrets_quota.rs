//! Secrets and quotas through the real `airlock serve` binary against a DinD over mTLS:
//!
//! - A canary secret stored with `"expose": "env"` reaches the sandbox's environment
//!   (`secret_env`, through the binding frame: not in the container's `Config.Env`), yet
//!   never appears in the controller's log (run at `RUST_LOG=debug`), in
//!   any API response after the `PUT`, in the audit trail, or in plaintext in the database
//!   files. A secret stored without `expose` is `egress_only`: naming it in `secret_env` is a
//!   400 `secret_not_exposable` and no container is made.
//! - 20 parallel creates against `AIRLOCK_QUOTA_MAX_SANDBOXES=5`: exactly 5 succeed and 15
//!   get a 403 naming the quota; exactly 5 containers exist.
//! - `airlock admin rotate-key` re-encrypts the secrets; the old key is then refused at boot
//!   with a clear error, and the rotated key file boots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use airlock::sandbox::names::container_name;
use bollard::query_parameters::InspectContainerOptions;
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve_with, DEADLINE};
use e2e::{dind_with_testbox, Timing};
use futures_util::future::join_all;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};
use tokio::process::{Child, Command};

const TOKEN: &str = "e2e-secrets-token-0123456789";

/// `airlock serve` as `e2e::serve::spawn_serve` starts it, at debug level, with a quota of 5
/// sandboxes and then `extra`.
fn spawn(binary: &Path, dind: &Dind, data: &Path, extra: &[(&str, &str)]) -> Child {
    let mut vars = vec![("AIRLOCK_QUOTA_MAX_SANDBOXES", "5"), ("RUST_LOG", "debug")];
    vars.extend_from_slice(extra);
    spawn_serve_with(binary, dind, data, TOKEN, &vars)
}

async fn stop(child: &mut Child) {
    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(kill.unwrap().success());
    let exit = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap();
    assert!(exit.unwrap().success());
}

/// Every byte of every file under `dir` (the SQLite database, its WAL, the key file).
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_quotas_hold_under_parallel_creates() {
    let mut timing = Timing::start("controller_secrets_quota");
    let binary = airlock_binary().await;
    timing.phase("build");
    let dind = dind_with_testbox(DindOptions::new("secrets_quota"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = spawn(&binary, &dind, data.path(), &[]);
    let (addr, log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let mut seen = Vec::new();
    let put = json!({"value": canary, "expose": "env"});
    let (status, body) = http(addr, TOKEN, "PUT", "/v1/secrets/db", Some(put)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expose"], "env", "{body}");
    seen.push(body);
    let put = json!({"value": canary});
    let (status, body) = http(addr, TOKEN, "PUT", "/v1/secrets/held", Some(put)).await;
    assert_eq!(
        (status, &body["expose"]),
        (201, &json!("egress_only")),
        "{body}"
    );
    seen.push(body);
    let create = json!({
        "image": TESTBOX_IMAGE,
        "cmd": ["sleep", "300"],
        "secret_env": {"HELD": "held"},
    });
    let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "secret_not_exposable", "{body}");
    assert_eq!(body["fields"][0]["field"], "secret_env.HELD", "{body}");
    seen.push(body);
    let (status, body) = http(addr, TOKEN, "GET", "/v1/sandboxes", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], json!([]), "nothing was created: {body}");
    let (status, _) = http(addr, TOKEN, "DELETE", "/v1/secrets/held", None).await;
    assert_eq!(status, 204);
    let create = json!({
        "image": TESTBOX_IMAGE,
        "cmd": ["sleep", "300"],
        "secret_env": {"DB_PASSWORD": "db"},
    });
    let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    seen.push(body);
    let inspected = dind
        .docker()
        .inspect_container(
            &container_name(id.parse().unwrap()),
            None::<InspectContainerOptions>,
        )
        .await
        .unwrap();
    // The secret travels in the binding frame, never in the container's configuration.
    let env = inspected.config.unwrap().env.unwrap_or_default();
    assert!(!env.iter().any(|e| e.contains(&canary)), "{env:?}");
    let exec = json!({"cmd": ["sh", "-c", "echo \"$DB_PASSWORD\""]});
    let uri = format!("/v1/sandboxes/{id}/exec");
    let (status, ran) = http(addr, TOKEN, "POST", &uri, Some(exec)).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(
        ran["stdout"].as_str().map(str::trim),
        Some(canary.as_str()),
        "the secret reached the sandbox"
    );
    for path in [
        "/v1/sandboxes",
        &format!("/v1/sandboxes/{id}"),
        "/v1/secrets",
    ] {
        seen.push(http(addr, TOKEN, "GET", path, None).await.1);
    }
    let (status, body) = http(
        addr,
        TOKEN,
        "POST",
        &format!("/v1/sandboxes/{id}/stop"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    seen.push(body);
    let (status, _) = http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204);
    timing.phase("secret");

    // 20 parallel creates against a quota of 5.
    let creates = (0..20).map(|_| {
        let create = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
        http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create))
    });
    let results = join_all(creates).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 403)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((created.len(), refused.len()), (5, 15), "{results:?}");
    for body in &refused {
        assert_eq!(body["error"], "quota_exceeded", "{body}");
        assert_eq!(body["quota"], "max_sandboxes", "{body}");
        assert_eq!(body["limit"], 5, "{body}");
    }
    let running = dind
        .docker()
        .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        .await
        .unwrap();
    let sandboxes = running
        .iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(airlock::docker::spec::LABEL_SANDBOX_ID))
        })
        .count();
    assert_eq!(sandboxes, 5);
    for body in &created {
        let id = body["id"].as_str().unwrap();
        let (status, _) = http(addr, TOKEN, "DELETE", &format!("/v1/sandboxes/{id}"), None).await;
        assert_eq!(status, 204);
    }
    timing.phase("quota");

    let (status, audit) = http(addr, TOKEN, "GET", "/v1/audit?limit=500", None).await;
    assert_eq!(status, 200);
    assert!(audit["items"].as_array().unwrap().len() >= 24, "{audit}");
    seen.push(audit);
    stop(&mut child).await;
    let log = log.await.unwrap();
    assert!(log.contains("\"DEBUG\""), "the log ran at debug level");
    assert!(
        !log.contains(&canary),
        "the canary is in the controller log"
    );
    for body in &seen {
        assert!(!body.to_string().contains(&canary), "{body}");
    }
    let files = all_bytes(data.path());
    assert!(!files.windows(canary.len()).any(|w| w == canary.as_bytes()));
    timing.phase("checks");

    // Rotate the key offline; the old key is then refused at boot, the rotated file boots.
    let old_key = std::fs::read_to_string(data.path().join("secret.key")).unwrap();
    let new_key_file = data.path().join("new.key");
    let new_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    std::fs::write(&new_key_file, new_key).unwrap();
    let rotate = Command::new(&binary)
        .args(["admin", "rotate-key", "--new-key-file"])
        .arg(&new_key_file)
        .env_clear()
        .env("AIRLOCK_DATA_DIR", data.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&rotate.stdout);
    assert!(
        rotate.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(stdout.contains("re-encrypted 1 secret(s)"), "{stdout}");
    let old = [("AIRLOCK_SECRET_KEY", old_key.trim())];
    let refused = spawn(&binary, &dind, data.path(), &old).wait_with_output();
    let refused = tokio::time::timeout(DEADLINE, refused)
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("does not match the key the stored secrets"),
        "{stderr}"
    );
    let mut child = spawn(&binary, &dind, data.path(), &[]);
    let (addr, _log) = listen_addr(&mut child).await;
    let (status, body) = http(addr, TOKEN, "GET", "/v1/secrets", None).await;
    assert_eq!((status, body[0]["name"].as_str()), (200, Some("db")));
    assert_eq!(
        body[0]["expose"], "env",
        "rotation keeps the exposure: {body}"
    );
    stop(&mut child).await;
    timing.phase("rotate");
}
