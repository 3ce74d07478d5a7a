//! The real `airlock serve` binary against a DinD over mTLS: it starts from `AIRLOCK_*`
//! variables, serves the API on a real socket, creates a sandbox, and on SIGTERM exits 0
//! while the sandbox keeps running (it belongs to the reconciler next time).
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::sandbox::names::container_name;
use bollard::query_parameters::InspectContainerOptions;
use e2e::serve::{airlock_binary, http, listen_addr, spawn_serve, DEADLINE};
use e2e::{dind_with_testbox, Timing};
use serde_json::json;
use test_support::dind::{DindOptions, TESTBOX_IMAGE};
use tokio::process::Command;

const TOKEN: &str = "e2e-serve-token-0123456789";

#[tokio::test]
async fn controller_serve_binary_runs_and_shuts_down_gracefully() {
    let mut timing = Timing::start("controller_serve_binary");
    let binary = airlock_binary().await;
    timing.phase("build");
    let dind = dind_with_testbox(DindOptions::new("controller_serve"), &mut timing)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&binary, &dind, data.path(), TOKEN);
    let (addr, log) = listen_addr(&mut child).await;
    timing.phase("serve-up");

    let (status, body) = http(addr, TOKEN, "GET", "/readyz", None).await;
    assert_eq!((status, &body), (200, &json!({"status": "ready"})));
    let create = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"]});
    let (status, body) = http(addr, TOKEN, "POST", "/v1/sandboxes", Some(create)).await;
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
