//! Backup and restore at the compose level: on a `make up` stack (project `h14-backup-…`),
//! an invited user, their API token, an `env` secret and a sandbox's ledger (a request the
//! egress proxy refused) are backed up with `airlock admin backup` in the running controller;
//! `make down-volumes` wipes everything and a fresh `make up` starts over (a new first-boot
//! admin, a new secret key); `airlock admin restore --force` with the controller stopped puts
//! the backup back, `airlock doctor` passes, and after the start: the old admin token and the
//! user's token work again (the fresh admin's does not), the user is listed, the ledger rows
//! are the same, and the secret decrypts into a new sandbox's environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::stack::{images_exist, Stack};
use serde_json::{json, Value};

const PASSPHRASE: &str = "h14 backup passphrase, long enough";
const SECRET: &str = "h14-secret-value-7f3a";

/// `scripts/stack.sh ARGS…` on `stack`; panics when it fails.
fn stack_sh(stack: &Stack, args: &[&str]) -> Output {
    let output = Command::new(stack.root.join("scripts/stack.sh"))
        .args(args)
        .env("AIRLOCK_HOME", stack.home.path())
        .output()
        .unwrap();
    eprintln!(
        "--- stack.sh {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "stack.sh {args:?} failed");
    output
}

fn post(stack: &Stack, token: &str, path: &str, body: &Value) -> (u16, Value) {
    stack.api(token, "POST", path, Some(&body.to_string()))
}

/// Polls the ledger of sandbox `id` until it holds a refusal; returns the page.
fn ledger_with_deny(stack: &Stack, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, page) = stack.api(token, "GET", &format!("/v1/sandboxes/{id}/egress"), None);
        assert_eq!(status, 200, "{page}");
        let denied = page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|e| e["decision"] == "deny"));
        if denied {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal in the ledger: {page}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn users_tokens_secrets_and_ledger_survive_down_volumes_and_restore() {
    assert!(images_exist(), "run `make images` first");
    let mut stack = Stack::new("h14-backup");
    let started = Instant::now();
    assert!(stack.make("up").status.success(), "make up failed");
    let admin = stack.token();

    // A user (invited, then accepting), their API token and an `env` secret.
    let invite = json!({"email": "ana@example.org", "role": "member"});
    let (status, invite) = post(&stack, &admin, "/v1/users/invites", &invite);
    assert_eq!(status, 201, "{invite}");
    let accept = json!({
        "token": invite["token"], "password": "ana's own long password", "display_name": "Ana"
    });
    let (status, accepted) = post(&stack, "", "/v1/auth/accept-invite", &accept);
    assert_eq!(status, 201, "{accepted}");
    let session = accepted["token"].as_str().unwrap().to_owned();
    let scopes = json!({"name": "ci", "scopes": ["sandboxes:read", "sandboxes:write"]});
    let (status, minted) = post(&stack, &session, "/v1/tokens", &scopes);
    assert_eq!(status, 201, "{minted}");
    let ana = minted["token"].as_str().unwrap().to_owned();
    let secret = json!({"value": SECRET, "expose": "env"}).to_string();
    let (status, reply) = stack.api(&session, "PUT", "/v1/secrets/greeting", Some(&secret));
    assert!(status == 200 || status == 201, "{status} {reply}");

    // A ledger: the user's sandbox asks the proxy for http://localhost/, which it refuses.
    let script = r#"p=${HTTP_PROXY#http://}; auth=$(printf %s "${p%@*}" | base64 | tr -d "\n"); hp=${p##*@}
printf "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\nProxy-Authorization: Basic %s\r\nConnection: close\r\n\r\n" "$auth" | nc -w 10 "${hp%:*}" "${hp##*:}""#;
    let create =
        json!({"image": "airlock/testbox:dev", "cmd": ["sh", "-c", script], "timeout_s": 120});
    let (status, created) = post(&stack, &ana, "/v1/sandboxes", &create);
    assert_eq!(status, 201, "{created}");
    let sandbox = created["id"].as_str().unwrap().to_owned();
    let ledger = ledger_with_deny(&stack, &ana, &sandbox);

    // The backup, in the running controller, copied out of the data volume.
    let out = tempfile::tempdir().unwrap();
    let env = format!("AIRLOCK_BACKUP_PASSPHRASE={PASSPHRASE}");
    let file = "/var/lib/airlock/h14-backup.airlock";
    stack_sh(
        &stack,
        &[
            "exec", "-T", "-e", &env, "airlock", "/airlock", "admin", "backup", "--out", file,
        ],
    );
    let ps = stack_sh(&stack, &["ps", "-q", "airlock"]);
    let container = String::from_utf8_lossy(&ps.stdout).trim().to_owned();
    let copy = out.path().join("backup.airlock");
    let cp = Command::new("docker")
        .args(["cp", &format!("{container}:{file}")])
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success(), "docker cp");
    // The restoring container runs as the image's user: let it read the copy.
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let backed_up = started.elapsed();

    // Everything goes; a fresh stack has a new admin and knows nothing of the old one.
    assert!(stack.make("down-volumes").status.success());
    assert!(stack.make("up").status.success(), "second make up failed");
    let fresh = stack.token();
    assert_ne!(fresh, admin);
    let (status, _) = stack.api(&admin, "GET", "/v1/me", None);
    assert_eq!(status, 401, "the old admin is gone before the restore");

    // Restore with the controller stopped, then doctor, then start.
    stack_sh(&stack, &["stop", "airlock"]);
    let mount = format!("{}:/restore:ro", out.path().display());
    stack_sh(
        &stack,
        &[
            "run",
            "--rm",
            "--no-deps",
            "-e",
            &env,
            "-v",
            &mount,
            "airlock",
            "admin",
            "restore",
            "--force",
            "/restore/backup.airlock",
        ],
    );
    let doctor = stack.doctor();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.status.success(),
        "doctor after the restore:\n{report}"
    );
    assert!(report.contains(" 0 failed"), "{report}");
    stack_sh(&stack, &["start", "airlock"]);
    stack.wait_healthy();

    // Users, tokens, the ledger and the secret are back; the fresh admin is not.
    let (status, me) = stack.api(&admin, "GET", "/v1/me", None);
    assert_eq!(status, 200, "the old admin token works again: {me}");
    let (status, _) = stack.api(&fresh, "GET", "/v1/me", None);
    assert_eq!(status, 401, "the fresh stack's admin was replaced");
    let (status, users) = stack.api(&admin, "GET", "/v1/users", None);
    assert_eq!(status, 200, "{users}");
    assert!(users.to_string().contains("ana@example.org"), "{users}");
    let (status, me) = stack.api(&ana, "GET", "/v1/me", None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"], "ana@example.org", "{me}");
    let (status, after) = stack.api(
        &ana,
        "GET",
        &format!("/v1/sandboxes/{sandbox}/egress"),
        None,
    );
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["items"], ledger["items"], "the same ledger rows");

    let create = json!({
        "image": "airlock/testbox:dev", "cmd": ["sleep", "120"],
        "secret_env": {"GREETING": "greeting"}
    });
    let (status, created) = post(&stack, &ana, "/v1/sandboxes", &create);
    assert_eq!(
        status, 201,
        "the secret opens with the restored key: {created}"
    );
    let id = created["id"].as_str().unwrap();
    let exec = json!({"cmd": ["sh", "-c", "echo \"$GREETING\""]});
    let (status, ran) = post(&stack, &ana, &format!("/v1/sandboxes/{id}/exec"), &exec);
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["stdout"].as_str().unwrap().trim(), SECRET, "{ran}");

    assert!(stack.make("down-volumes").status.success());
    stack.down = true;
    assert_eq!(stack.leftovers(), Vec::<String>::new());
    eprintln!(
        "deploy_backup: up and backup {:.1}s, whole round trip {:.1}s",
        backed_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
