//! End-to-end tests against a real DinD daemon over mutual TLS; they live under `tests/` and
//! need a Docker daemon plus the images from `make images`.
//!
//! This library holds what every e2e test shares: per-test timing lines for the report, a DinD
//! with the testbox image already loaded, (`plane`) the network plane wired to a DinD with a
//! sealed test internet, and (`serve`) the real `airlock serve` binary. The `dns-sink` binary (`src/bin/dns_sink.rs`) is
//! the fake DNS server the DNS test runs on the sealed outer network.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

pub mod agents;
pub mod controller;
pub mod plane;
pub mod serve;
pub mod stack;
pub mod stats;

use test_support::dind::{Dind, DindError, DindOptions, TESTBOX_IMAGE};

/// Prints `e2e-timing <test> <phase> <seconds>` lines to stderr, and the total on drop (also when
/// the test panics), so the lead can report time per e2e test.
#[derive(Debug)]
pub struct Timing {
    test: &'static str,
    start: Instant,
    last: Instant,
}

/// Where [`init_binary`] takes the static `airlock-init` from when set (a path), instead of
/// the `airlock/init:dev` image.
pub const INIT_BINARY_VAR: &str = "AIRLOCK_E2E_INIT_BINARY";
/// The image holding the static `airlock-init` at `/init` (`make images`).
pub const INIT_IMAGE: &str = "airlock/init:dev";

/// The static `airlock-init` every sandbox the controller starts runs as PID 1 (the
/// controller's `AIRLOCK_INIT_BINARY`): [`INIT_BINARY_VAR`], or copied once per test process
/// out of [`INIT_IMAGE`].
#[allow(clippy::expect_used, clippy::panic)]
pub fn init_binary() -> &'static Path {
    static BINARY: OnceLock<(Option<tempfile::TempDir>, PathBuf)> = OnceLock::new();
    &BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os(INIT_BINARY_VAR) {
                return (None, PathBuf::from(path));
            }
            let docker = |args: &[&str]| {
                std::process::Command::new("docker")
                    .args(args)
                    .output()
                    .expect("docker CLI")
            };
            let dir = tempfile::tempdir().expect("tempdir");
            let name = format!("e2e-init-extract-{}", std::process::id());
            let created = docker(&["create", "--name", &name, INIT_IMAGE, "/init"]);
            if !created.status.success() {
                panic!(
                    "{INIT_IMAGE} is missing (make images): {}",
                    String::from_utf8_lossy(&created.stderr)
                );
            }
            let path = dir.path().join("airlock-init");
            let target = path.to_string_lossy().into_owned();
            let copied = docker(&["cp", &format!("{name}:/init"), &target]);
            docker(&["rm", "-f", &name]);
            if !copied.status.success() {
                panic!("{}", String::from_utf8_lossy(&copied.stderr));
            }
            (Some(dir), path)
        })
        .1
}

// === impl Timing ===

impl Timing {
    /// Starts the clock for `test`.
    pub fn start(test: &'static str) -> Self {
        let now = Instant::now();
        Self {
            test,
            start: now,
            last: now,
        }
    }

    /// Prints the time since the previous phase (or the start).
    pub fn phase(&mut self, phase: &str) {
        let now = Instant::now();
        eprintln!(
            "e2e-timing {} {phase} {:.2}s",
            self.test,
            now.duration_since(self.last).as_secs_f64()
        );
        self.last = now;
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        let verdict = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        eprintln!(
            "e2e-timing {} TOTAL {:.2}s {verdict}",
            self.test,
            self.start.elapsed().as_secs_f64()
        );
    }
}

/// Starts a DinD for `opts` and loads the testbox image into it, recording both phases.
pub async fn dind_with_testbox(opts: DindOptions, timing: &mut Timing) -> Result<Dind, DindError> {
    let dind = Dind::start(opts).await?;
    timing.phase("dind-start");
    dind.load_image(TESTBOX_IMAGE).await?;
    timing.phase("load-testbox");
    Ok(dind)
}

/// The containers (stopped ones included) and networks in `docker` carrying `label` (a
/// `key` or `key=value` filter).
#[allow(clippy::unwrap_used)]
pub async fn labelled(
    docker: &bollard::Docker,
    label: &str,
) -> (
    Vec<bollard::models::ContainerSummary>,
    Vec<bollard::models::Network>,
) {
    use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
    use std::collections::HashMap;
    let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .unwrap();
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap();
    (containers, networks)
}

/// How many containers (stopped ones included) and networks in `dind` are labelled for
/// sandbox `id`.
pub async fn sandbox_objects(dind: &Dind, id: &str) -> (usize, usize) {
    let label = format!("{}={id}", airlock::docker::spec::LABEL_SANDBOX_ID);
    let (containers, networks) = labelled(dind.docker(), &label).await;
    (containers.len(), networks.len())
}

/// [`sandbox_objects`] once a delete's background teardown has had its time: polls (for at
/// most 30 s) until nothing is left, and returns what is left then. A delete answers once
/// the containers are gone; the network and the CA volume follow.
pub async fn objects_after_delete(dind: &Dind, id: &str) -> (usize, usize) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = sandbox_objects(dind, id).await;
        if left == (0, 0) || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
