//! The compose stack fixture of the deploy tests: `make up` / `make down-volumes` on this
//! repository with a project name, API port and state folder of its own, the node network
//! sealed (`AIRLOCK_COMPOSE_SEALED=1`) and images already built (`AIRLOCK_SKIP_IMAGES=1`), so
//! it runs beside other tests; plus curl against the API (verified against the stack CA),
//! `airlock doctor` on the stack and the project's leftovers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

/// One compose stack of this repository: its own project name, API port and state folder;
/// `make down-volumes` runs on drop unless the test already did it.
#[derive(Debug)]
pub struct Stack {
    /// The repository.
    pub root: PathBuf,
    /// `AIRLOCK_HOME`.
    pub home: tempfile::TempDir,
    /// The Compose project name.
    pub project: String,
    /// The API port on 127.0.0.1.
    pub port: u16,
    /// Set once the test ran `make down-volumes` itself.
    pub down: bool,
}

impl Stack {
    /// A stack whose project name starts with `prefix`.
    pub fn new(prefix: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let run = format!("{:x}{nanos:08x}", std::process::id());
        // Hold a free port only long enough to learn its number.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            root: root.canonicalize().unwrap(),
            home: tempfile::tempdir().unwrap(),
            project: format!("{prefix}-{run}"),
            port,
            down: false,
        }
    }

    /// `make TARGET` for this stack.
    pub fn make(&self, target: &str) -> Output {
        self.make_with(target, &[])
    }

    /// `make TARGET` with more variables.
    pub fn make_with(&self, target: &str, env: &[(&str, &str)]) -> Output {
        let output = Command::new("make")
            .arg("-C")
            .arg(&self.root)
            .arg(target)
            .env("AIRLOCK_HOME", self.home.path())
            .env("AIRLOCK_PROJECT", &self.project)
            .env("AIRLOCK_PORT", self.port.to_string())
            .env("AIRLOCK_COMPOSE_SEALED", "1")
            .env("AIRLOCK_SKIP_IMAGES", "1")
            // The probe image is in no bundle, so the pre-pull tries the registry: one on the
            // DinD's own loopback, where nothing listens.
            .env("AIRLOCK_IMAGES", "airlock/testbox:dev,airlock/probe:dev")
            .env("AIRLOCK_REGISTRY", "127.0.0.1:1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        eprintln!(
            "--- make {target}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The first-boot admin token (and its file is 0600).
    pub fn token(&self) -> String {
        let path = self.home.path().join("initial-admin.json");
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        let admin: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        admin["token"].as_str().unwrap().to_owned()
    }

    /// `airlock doctor` in a one-off controller container on the running stack.
    pub fn doctor(&self) -> Output {
        let output = Command::new(self.root.join("scripts/stack.sh"))
            .args(["run", "--rm", "--no-deps", "airlock", "doctor"])
            .env("AIRLOCK_HOME", self.home.path())
            .output()
            .unwrap();
        eprintln!(
            "--- doctor\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The stack CA's certificate `make up` copied out.
    pub fn ca(&self) -> PathBuf {
        self.home.path().join("ca.pem")
    }

    /// Polls the controller container's health check (`airlock health`, over HTTPS when the
    /// API serves it) until Docker calls it healthy; panics after 60 s.
    pub fn wait_healthy(&self) {
        let ps = Command::new(self.root.join("scripts/stack.sh"))
            .args(["ps", "-q", "airlock"])
            .env("AIRLOCK_HOME", self.home.path())
            .output()
            .unwrap();
        let container = String::from_utf8_lossy(&ps.stdout).trim().to_owned();
        assert!(!container.is_empty(), "no controller container");
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let inspect = Command::new("docker")
                .args(["inspect", "-f", "{{.State.Health.Status}}", &container])
                .output()
                .unwrap();
            let status = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
            if status == "healthy" {
                return;
            }
            assert!(Instant::now() < deadline, "controller health: {status}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `curl` the API over HTTPS, verifying it against the stack CA, with `Bearer token` (none
    /// when empty); returns the status and the JSON body.
    pub fn api(&self, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        let mut curl = Command::new("curl");
        curl.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--cacert")
            .arg(self.ca())
            .args(["-H", "Content-Type: application/json"]);
        if !token.is_empty() {
            curl.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            curl.args(["-d", body]);
        }
        let output = curl.arg(url).output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        let json = serde_json::from_str(body).unwrap_or(Value::Null);
        (status.trim().parse().unwrap(), json)
    }

    /// Names of the project's containers, volumes and networks still on the host.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut found = Vec::new();
        for kind in [
            ["ps", "-a", "--format", "{{.Names}}"],
            ["volume", "ls", "--format", "{{.Name}}"],
            ["network", "ls", "--format", "{{.Name}}"],
        ] {
            let output = Command::new("docker")
                .args(&kind[..kind.len() - 2])
                .args(["--filter", &label])
                .args(&kind[kind.len() - 2..])
                .output()
                .unwrap();
            found.extend(
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_owned),
            );
        }
        found
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.down {
            drop(self.make("down-volumes"));
        }
    }
}

/// Whether the images `make up` needs (with `AIRLOCK_SKIP_IMAGES=1`) are built.
pub fn images_exist() -> bool {
    [
        "airlock/controller:dev",
        "airlock/dind:dev",
        "airlock/testbox:dev",
    ]
    .iter()
    .all(|image| {
        Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}
