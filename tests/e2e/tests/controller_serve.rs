//! The real `airlock serve` binary against a DinD over mTLS: it starts from `AIRLOCK_*`
//! variables, serves the API on a real socket, creates a sandbox, and on SIGTERM exits 0
//! while the sandbox keeps running (it belongs to the reconciler next time).
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use airlock::docker::spec::container_name;
use bollard::query_parameters::InspectContainerOptions;
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, DIND_TLS_PORT, TESTBOX_IMAGE};
use test_support::upstream::connect;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "e2e-serve-token-0123456789";
const DEADLINE: Duration = Duration::from_secs(60);

/// Builds the `airlock` binary (a no-op when it is fresh) and returns its path: the e2e crate
/// cannot name another package's binary with `CARGO_BIN_EXE_*`.
async fn airlock_binary() -> PathBuf {
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

/// Reads the JSON log until the "API listening" event and returns its address.
async fn listen_addr(child: &mut Child) -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "API listening" {
                let addr = event["fields"]["listen.addr"].as_str().unwrap();
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("airlock serve exited before listening");
    };
    let addr = tokio::time::timeout(DEADLINE, find).await.unwrap();
    // Keep draining the log so the child never blocks on a full pipe.
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    (addr, rest)
}

/// One HTTP/1.1 exchange on a fresh connection; returns the status and the JSON body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\n\
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

#[tokio::test]
async fn controller_serve_binary_runs_and_shuts_down_gracefully() {
    let mut timing = Timing::start("controller_serve_binary");
    let binary = airlock_binary().await;
    timing.phase("build");
    let dind = dind_with_testbox(DindOptions::new("controller_serve"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let docker_host = format!("tcp://{}:{DIND_TLS_PORT}", dind.ip());
    let cert_path = dind.cert_dir().join("client");
    let mut child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("AIRLOCK_LISTEN", "127.0.0.1:0")
        .env("AIRLOCK_DATA_DIR", data.path())
        .env("AIRLOCK_DOCKER_HOST", &docker_host)
        .env("AIRLOCK_DOCKER_CERT_PATH", &cert_path)
        .env("AIRLOCK_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (addr, log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let (status, body) = http(addr, "GET", "/readyz", None).await;
    assert_eq!((status, &body), (200, &json!({"status": "ready"})));
    let create = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let (status, body) = http(addr, "POST", "/v1/sandboxes", Some(create)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "running");
    let id = body["id"].as_str().unwrap().to_owned();
    timing.phase("create");

    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = log.await.unwrap();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(log.contains("Shutdown signal received"), "{log}");
    timing.phase("shutdown");

    // The sandbox outlives the controller.
    let inspected = dind
        .docker()
        .inspect_container(
            &container_name(id.parse().unwrap()),
            None::<InspectContainerOptions>,
        )
        .await
        .unwrap();
    assert_eq!(inspected.state.unwrap().running, Some(true));
}
