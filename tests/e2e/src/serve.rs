//! The real `airlock serve` binary, for the e2e tests that kill, restart or signal it: build it,
//! start it against a DinD over mTLS, find the address it listens on, and talk HTTP/1.1 to it.
// This is test harness code: a failed step must fail the calling test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use test_support::dind::{Dind, DIND_TLS_PORT};
use test_support::upstream::connect;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long any one step (start-up, one HTTP exchange) may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Builds the `airlock` binary (a no-op when it is fresh) and returns its path: the e2e crate
/// cannot name another package's binary with `CARGO_BIN_EXE_*`.
pub async fn airlock_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["build", "-p", "airlock", "--bin", "airlock"])
        .arg("--message-format=json")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "cargo build failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "airlock")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("an airlock executable")
}

/// Starts `airlock serve` on `127.0.0.1:0` with a clean environment: the DinD over mTLS, a data
/// dir, an admin token, no default quotas and JSON logs on stderr (piped; read them with
/// [`listen_addr`]).
pub fn spawn_serve(binary: &Path, dind: &Dind, data: &Path, token: &str) -> Child {
    spawn_serve_with(binary, dind, data, token, &[])
}

/// [`spawn_serve`] with `extra` variables set after the defaults (so they override them, e.g.
/// `AIRLOCK_EGRESS=true`).
pub fn spawn_serve_with(
    binary: &Path,
    dind: &Dind,
    data: &Path,
    token: &str,
    extra: &[(&str, &str)],
) -> Child {
    Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("AIRLOCK_LISTEN", "127.0.0.1:0")
        .env("AIRLOCK_DATA_DIR", data)
        .env(
            "AIRLOCK_DOCKER_HOST",
            format!("tcp://{}:{DIND_TLS_PORT}", dind.ip()),
        )
        .env("AIRLOCK_DOCKER_CERT_PATH", dind.cert_dir().join("client"))
        .env("AIRLOCK_ADMIN_TOKEN", token)
        .env("AIRLOCK_STOP_GRACE", "1s")
        .env("AIRLOCK_INIT_BINARY", crate::init_binary())
        // These tests do not need the network plane (tests/e2e/tests/network_plane.rs does).
        .env("AIRLOCK_EGRESS", "false")
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .envs(crate::controller::UNLIMITED_QUOTAS)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads the JSON log until the "API listening" event and returns its address; the whole log
/// keeps draining into the returned task, so the child never blocks on a full pipe.
pub async fn listen_addr(child: &mut Child) -> (SocketAddr, JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "API listening" {
                let addr = event["fields"]["listen.addr"].as_str().unwrap();
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("airlock serve exited before listening:\n{seen}");
    };
    let addr = tokio::time::timeout(DEADLINE, find).await.unwrap();
    let rest = tokio::spawn(async move {
        let mut rest = seen;
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    (addr, rest)
}

/// One HTTP/1.1 exchange on a fresh connection with `Bearer token`; the status and JSON body
/// (`Null` when the body is not JSON).
pub async fn http(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
