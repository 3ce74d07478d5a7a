//! The one-host deploy end to end, through Compose v1 (or v2 where installed): `make up`
//! (images already built by `make images`, so `AIRLOCK_SKIP_IMAGES=1`; the testbox goes
//! through the bundle folder and the start-up pre-pull; one smoke sandbox runs), then the
//! API works over HTTPS with the first-boot admin token (curl verifies the certificate against
//! the stack CA `make up` copied out; plain HTTP gets no answer; the container's health check
//! passes over HTTPS) and the allow list refuses other images, a second `make up` is
//! idempotent, a third with `AIRLOCK_API_TLS=off` serves plain HTTP and a fourth without it
//! keeps plain HTTP (the choice is kept in `compose.state`), and `make down-volumes`
//! leaves no container, volume or network of the project behind.
//!
//! Each run has its own Compose project name, API port and state folder, and the node network
//! is sealed (`AIRLOCK_COMPOSE_SEALED=1`), so it runs beside other tests. A guard runs
//! `make down-volumes` when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Instant;

use e2e::stack::{images_exist, Stack};

#[test]
fn make_up_serves_the_api_and_down_volumes_leaves_nothing() {
    assert!(
        images_exist(),
        "the controller, dind and testbox images are needed: run `make images` first"
    );
    let mut stack = Stack::new("e2e-deploy");
    // The operator's settings file: a default quota set there reaches the controller.
    std::fs::write(
        stack.home.path().join(".env"),
        "AIRLOCK_QUOTA_MAX_LIFETIME_S=300   # five minutes per sandbox\n",
    )
    .unwrap();
    let cold = Instant::now();
    let up = stack.make("up");
    assert!(up.status.success(), "make up failed (output above)");
    let cold = cold.elapsed();
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(stdout.contains("smoke test passed"), "{stdout}");
    let url = format!("https://127.0.0.1:{}", stack.port);
    assert!(stdout.contains(&url), "{stdout}");
    let ca = stack.ca();
    assert!(
        stdout.contains(&format!("curl --cacert {} {url}/healthz", ca.display())),
        "{stdout}"
    );
    // curl verifies the API's certificate against the stack CA (no -k), by IP and by name;
    // without the CA it refuses, and plain HTTP to the port gets no HTTP answer.
    for host in ["127.0.0.1", "localhost"] {
        let health = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", stack.port)])
            .arg(format!("https://{host}:{}/healthz", stack.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&health.stdout);
        assert!(health.status.success(), "{host}: {text}");
    }
    let untrusted = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", "/dev/null"])
        .arg(format!("{url}/healthz"))
        .output()
        .unwrap();
    assert!(!untrusted.status.success(), "curl trusted an unknown CA");
    let plain = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{}/healthz", stack.port))
        .output()
        .unwrap();
    assert!(!plain.status.success(), "plain HTTP was answered");
    // The compose health check speaks HTTPS too.
    stack.wait_healthy();

    let token = stack.token();
    let (status, images) = stack.api(&token, "GET", "/v1/images", None);
    assert_eq!(status, 200, "{images}");
    assert_eq!(images["restricted"], true);
    let testbox = &images["images"][0];
    assert_eq!(testbox["image"], "airlock/testbox:dev", "{images}");
    assert_eq!(testbox["status"], "ready", "{images}");
    assert_eq!(testbox["source"], "bundle", "{images}");
    assert!(testbox["digest"].as_str().unwrap().starts_with("sha256:"));
    let body = r#"{"image":"busybox:latest","cmd":["true"]}"#;
    let (status, refused) = stack.api(&token, "POST", "/v1/sandboxes", Some(body));
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"], "image_not_allowed");
    let body = r#"{"image":"airlock/testbox:dev","cmd":["true"],"timeout_s":600}"#;
    let (status, refused) = stack.api(&token, "POST", "/v1/sandboxes", Some(body));
    assert_eq!(status, 403, "the .env quota is enforced: {refused}");
    assert_eq!(refused["error"], "quota_exceeded", "{refused}");
    let (status, _) = stack.api("alt_wrong", "GET", "/v1/images", None);
    assert_eq!(status, 401);
    // The probe entry: no bundle has it and the registry is unreachable, so it failed, and
    // a create naming it is refused (nothing pins the tag).
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let probe = loop {
        let (_, images) = stack.api(&token, "GET", "/v1/images", None);
        let probe = images["images"][1].clone();
        if probe["status"] != "pending" && probe["status"] != "loading" {
            break probe;
        }
        assert!(Instant::now() < deadline, "pre-pull stuck: {images}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(probe["image"], "airlock/probe:dev", "{probe}");
    assert_eq!(probe["status"], "failed", "{probe}");
    assert_eq!(probe["source"], "registry", "{probe}");
    let body = r#"{"image":"airlock/probe:dev","cmd":["true"]}"#;
    let (status, refused) = stack.api(&token, "POST", "/v1/sandboxes", Some(body));
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"], "image_unpinned");

    let doctor = stack.doctor();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "doctor failed:\n{report}");
    assert!(report.contains(" 0 failed"), "{report}");
    // The proxy the controller runs in the node is healthy and holds every live entry.
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("PASS") && l.contains("egress-proxy")),
        "{report}"
    );

    // A second run changes nothing and passes its smoke test again.
    let warm = Instant::now();
    let again = stack.make("up");
    assert!(again.status.success(), "second make up failed");
    let warm = warm.elapsed();
    assert_eq!(stack.token(), token, "the first-boot admin is made once");

    // The opt-out for operators behind a reverse proxy, on the same stack: plain HTTP (and
    // `make up` says so), and the health check follows.
    let off = [("AIRLOCK_API_TLS", "off")];
    let plain_up = stack.make_with("up", &off);
    assert!(plain_up.status.success(), "make up with TLS off failed");
    let stdout = String::from_utf8_lossy(&plain_up.stdout);
    let url = format!("http://127.0.0.1:{}", stack.port);
    assert!(stdout.contains(&format!("curl {url}/healthz")), "{stdout}");
    assert!(stdout.contains("AIRLOCK_API_TLS=off"), "{stdout}");
    let health = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .arg(format!("{url}/healthz"))
        .output()
        .unwrap();
    assert!(health.status.success(), "plain HTTP is served");
    stack.wait_healthy();
    // The opt-out is kept in compose.state: a later `make up` without it stays plain HTTP.
    let state = std::fs::read_to_string(stack.home.path().join("compose.state")).unwrap();
    assert!(state.contains("SAVED_API_TLS=off"), "{state}");
    let kept = stack.make("up");
    assert!(kept.status.success(), "make up after the opt-out failed");
    let stdout = String::from_utf8_lossy(&kept.stdout);
    assert!(stdout.contains(&format!("curl {url}/healthz")), "{stdout}");
    let health = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .arg(format!("{url}/healthz"))
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "still plain HTTP after a second make up"
    );
    stack.wait_healthy();

    let down = stack.make("down-volumes");
    stack.down = true;
    assert!(down.status.success(), "make down-volumes failed");
    assert_eq!(stack.leftovers(), Vec::<String>::new());
    eprintln!(
        "deploy: make up cold {:.1}s, warm {:.1}s",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );
}
