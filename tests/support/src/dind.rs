//! DinD-over-mTLS fixture on a sealed outer network.
//!
//! [`Dind::start`] creates, in this order: a [`SealedNet`] (`--internal`, fixed `/24`), a
//! tempdir with certificates from `airlock-certs` (the DinD's static address in the server SAN),
//! a named volume for `/var/lib/docker` (overlay2 only works on a volume), and the
//! `airlock/dind:dev` container with the server certs bind-mounted read-only at
//! `/certs/server`. It then polls an mTLS `_ping` with a deadline and negotiates the API version
//! (the nested daemon speaks 1.41; bollard's default is newer).
//!
//! Two sides, two clients:
//! - the nested daemon is reached only with bollard over mTLS ([`Dind::docker`]);
//! - the outer objects are managed with the host `docker` CLI (see `host_docker`).
//!
//! Cleanup: `Drop` removes the container, the volume, every other container of the fixture, the
//! network and the tempdir, even while unwinding from a panic. `Drop` cannot be async, so it
//! uses blocking `std::process::Command` calls to the CLI, which work whatever runtime the test
//! is on (or none) and cannot deadlock a current-thread runtime the way `block_on` would. A test
//! process killed outright leaves its objects behind; the next process's sweep removes them
//! (see `sweep`).
//!
//! The DinD's default capability set (`privileged: false`) is the one that works on our build
//! machines, where `--privileged` fails: `SYS_ADMIN` + `NET_ADMIN` with seccomp unconfined.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use airlock_certs::{InitOptions, San};
use bollard::query_parameters::ImportImageOptions;
use bollard::{Docker, API_DEFAULT_VERSION};
use bytes::Bytes;
use futures_util::StreamExt;
use tempfile::TempDir;

use crate::host_docker::{
    docker, docker_output, remove_container_blocking, remove_volume_blocking,
};
use crate::sealed::{unique_name, SealedNet};
use crate::sweep::{label_args, tempdir_prefix};

/// The DinD image built by `make images`.
pub const DIND_IMAGE: &str = "airlock/dind:dev";
/// The tiny static-busybox image built by `make images`.
pub const TESTBOX_IMAGE: &str = "airlock/testbox:dev";
/// The isolation self-test probe (`airlock-probe` on scratch) built by `make images`; load it
/// with [`Dind::load_image`] like any other.
pub const PROBE_IMAGE: &str = "airlock/probe:dev";
/// The nested dockerd's TLS port.
pub const DIND_TLS_PORT: u16 = 2376;
/// Where the entrypoint expects the server certificate files.
pub const DIND_SERVER_CERTS: &str = "/certs/server";

/// Read/write timeout (seconds) of bollard's HTTP client.
const CLIENT_TIMEOUT_S: u64 = 120;
/// Per-attempt limit of a readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval between readiness polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Why a fixture operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DindError {
    /// The `docker` CLI could not be started.
    #[error("cannot run the docker CLI: {0}")]
    Spawn(#[source] std::io::Error),
    /// A `docker` CLI call exited non-zero.
    #[error("`docker {args}` failed ({status}): {stderr}")]
    Cli {
        /// The arguments, space-joined.
        args: String,
        /// The exit status.
        status: String,
        /// The CLI's stderr.
        stderr: String,
    },
    /// A call to the nested daemon over mTLS failed.
    #[error("nested docker API: {0}")]
    Nested(#[from] bollard::errors::Error),
    /// Certificate generation failed.
    #[error("certificates: {0}")]
    Certs(#[from] airlock_certs::CertsError),
    /// A local file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An image the fixture needs is not on the host daemon.
    #[error("image {tag} is not on the host daemon; build it with `make images`")]
    MissingImage {
        /// The missing tag.
        tag: String,
    },
    /// Something did not become ready before its deadline.
    #[error("{what} not ready after {after:?}: {detail}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The deadline.
        after: Duration,
        /// The last error seen, plus diagnostics.
        detail: String,
    },
    /// Every random subnet tried was taken.
    #[error("no free /24 in 10.231.0.0/16 after {tries} tries: {last}")]
    NoFreeSubnet {
        /// Attempts made.
        tries: u32,
        /// The last overlap error.
        last: String,
    },
    /// The daemon returned something the harness cannot use.
    #[error("unexpected {what}: {detail}")]
    Unexpected {
        /// What was being read.
        what: &'static str,
        /// The raw value.
        detail: String,
    },
}

/// How to start a [`Dind`].
#[derive(Debug, Clone)]
pub struct DindOptions {
    /// Test name, used in object names (`e2e-<test>-<uuid>`).
    pub test: String,
    /// Run with `--privileged` instead of the capability set that works on our build machines.
    /// `--privileged` fails on those machines (CAP_SYS_RESOURCE is missing from the bounding set);
    /// production compose uses it.
    pub privileged: bool,
    /// Nameserver written into the DinD's `/etc/resolv.conf`. The file is always bind-mounted,
    /// so neither the host daemon's embedded DNS (whose upstreams are the host's real resolvers)
    /// nor the nested daemon's 8.8.8.8 fallback ever gets involved. `None` means the sealed
    /// network's DNS address ([`SealedNet::DNS_HOST`]), where nothing answers unless a test runs
    /// a server there: DNS stays hermetic either way.
    pub dns: Option<IpAddr>,
    /// Deadline for the first successful mTLS ping.
    pub ready_timeout: Duration,
    /// Extra dockerd arguments appended after `--storage-driver=overlay2`.
    pub dockerd_args: Vec<String>,
    /// Extra `-v` binds of the DinD container (`HOST:CONTAINER[:OPTS]`), e.g. a host folders
    /// root at the same path the in-process controller sees it.
    pub binds: Vec<String>,
}

/// Exit code and output of a command run in the DinD's namespaces.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// A running DinD on its own sealed network, reached over mTLS. Removed on drop.
#[derive(Debug)]
pub struct Dind {
    docker: Docker,
    name: String,
    volume: String,
    ip: Ipv4Addr,
    dir: TempDir,
    // Dropped last: its Drop removes leftover fixture containers, then the network.
    net: SealedNet,
}

// === impl DindOptions ===

impl DindOptions {
    /// Defaults for a test called `test`.
    pub fn new(test: &str) -> Self {
        Self {
            test: test.to_owned(),
            ..Self::default()
        }
    }
}

impl Default for DindOptions {
    fn default() -> Self {
        Self {
            test: "dind".to_owned(),
            privileged: false,
            dns: None,
            ready_timeout: Duration::from_secs(30),
            dockerd_args: Vec::new(),
            binds: Vec::new(),
        }
    }
}

// === impl ExecOutput ===

impl ExecOutput {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

// === impl Dind ===

impl Dind {
    /// Creates a sealed network and starts a DinD on it; see the module docs.
    pub async fn start(opts: DindOptions) -> Result<Self, DindError> {
        let net = SealedNet::create(&opts.test).await?;
        Self::start_on(net, opts).await
    }

    /// Starts a DinD on an existing sealed network (e.g. one where a fake DNS server already
    /// runs), taking ownership of it. The DinD gets [`SealedNet::DIND_HOST`].
    pub async fn start_on(net: SealedNet, opts: DindOptions) -> Result<Self, DindError> {
        install_crypto_provider();
        let started = Instant::now();
        require_image(DIND_IMAGE).await?;
        let ip = net.host(SealedNet::DIND_HOST);
        let dir = tempfile::Builder::new()
            .prefix(&tempdir_prefix())
            .tempdir()?;
        let certs = dir.path().join("certs");
        airlock_certs::init(&InitOptions::new(&certs).san(San::Ip(IpAddr::V4(ip))))?;
        let endpoint = SocketAddr::new(IpAddr::V4(ip), DIND_TLS_PORT);
        let client = certs.join("client");
        let docker = connect_mtls(
            endpoint,
            &client.join("ca.pem"),
            &client.join("cert.pem"),
            &client.join("key.pem"),
        )?;
        let name = unique_name(&opts.test);
        // From here on, dropping `dind` removes whatever part of the fixture exists.
        let mut dind = Self {
            docker,
            volume: format!("{name}-var-lib-docker"),
            name,
            ip,
            dir,
            net,
        };
        dind.create_volume().await?;
        dind.run_container(&opts).await?;
        dind.wait_ready(opts.ready_timeout).await?;
        dind.docker = dind.docker.clone().negotiate_version().await?;
        tracing::info!(
            dind.name = %dind.name,
            dind.addr = %endpoint,
            duration_ms = started.elapsed().as_millis(),
            "DinD ready over mTLS"
        );
        Ok(dind)
    }

    /// Restarts the DinD container, as an operator restarting the node's daemon would: its
    /// dockerd stops (and every container it ran with it), then starts again on the same
    /// address, data root and certificates. Returns once it answers over mTLS again.
    pub async fn restart(&self) -> Result<(), DindError> {
        docker(&["restart", "--time", "5", &self.name]).await?;
        self.wait_ready(DindOptions::default().ready_timeout).await
    }

    /// The bollard client for the nested daemon (mTLS, version negotiated).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The DinD's static address on the sealed network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `ip:2376`.
    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), DIND_TLS_PORT)
    }

    /// Root of the `airlock certs init` layout: `ca/`, `server/`, `client/`.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The sealed outer network the DinD sits on.
    pub fn outer_network(&self) -> &SealedNet {
        &self.net
    }

    /// The DinD container's name on the host daemon.
    pub fn container_name(&self) -> &str {
        &self.name
    }

    /// Copies `tag` from the host daemon into the nested one (`docker save` on the host, then the
    /// nested `/images/load` over mTLS). The saved tarball is cached for the process.
    pub async fn load_image(&self, tag: &str) -> Result<(), DindError> {
        let tarball = saved_image(tag).await?;
        let mut progress = self.docker.import_image(
            ImportImageOptions::default(),
            bollard::body_full(tarball),
            None,
        );
        while let Some(step) = progress.next().await {
            step?;
        }
        self.docker.inspect_image(tag).await?;
        Ok(())
    }

    /// Runs `cmd` in the DinD container's namespaces (through the host daemon) and waits for it.
    pub async fn exec_in_dind(&self, cmd: &[&str]) -> Result<ExecOutput, DindError> {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(cmd);
        let output = docker_output(&args).await?;
        Ok(ExecOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Starts `cmd` detached in the DinD container's namespaces (e.g. a listener). It dies with
    /// the DinD.
    pub async fn spawn_in_dind(&self, cmd: &[&str]) -> Result<(), DindError> {
        let mut args = vec!["exec", "-d", self.name.as_str()];
        args.extend_from_slice(cmd);
        docker(&args).await.map(drop)
    }

    /// Copies a host file into the DinD container's filesystem (`docker cp`), e.g. a helper
    /// binary to run in its namespaces with [`Dind::spawn_in_dind`].
    pub async fn copy_into_dind(&self, src: &Path, dst: &str) -> Result<(), DindError> {
        let src = src.display().to_string();
        let dst = format!("{}:{dst}", self.name);
        docker(&["cp", &src, &dst]).await.map(drop)
    }

    /// The last lines of the DinD's own log (dockerd and entrypoint), for diagnostics.
    pub async fn logs_tail(&self) -> String {
        match docker_output(&["logs", "--tail", "40", &self.name]).await {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(error) => error.to_string(),
        }
    }

    async fn create_volume(&self) -> Result<(), DindError> {
        let labels = label_args(self.net.fixture());
        let mut args = vec!["volume", "create"];
        args.extend(labels.iter().map(String::as_str));
        args.push(&self.volume);
        docker(&args).await.map(drop)
    }

    async fn run_container(&self, opts: &DindOptions) -> Result<(), DindError> {
        let ip = self.ip.to_string();
        let volume = format!("{}:/var/lib/docker", self.volume);
        let server = format!(
            "{}:{DIND_SERVER_CERTS}:ro",
            self.cert_dir().join("server").display()
        );
        let labels = label_args(self.net.fixture());
        let mut args = vec!["run", "-d", "--pull=never", "--name", &self.name];
        args.extend([
            "--hostname",
            "dind",
            "--network",
            self.net.name(),
            "--ip",
            &ip,
        ]);
        if opts.privileged {
            args.push("--privileged");
        } else {
            // SYS_PTRACE: runc needs it to join a sandbox's namespaces for `exec`.
            args.extend(["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN"]);
            args.extend(["--cap-add", "SYS_PTRACE"]);
            args.extend(["--security-opt", "seccomp=unconfined"]);
        }
        args.extend(["-v", &volume, "-v", &server]);
        let dns = opts
            .dns
            .unwrap_or(IpAddr::V4(self.net.host(SealedNet::DNS_HOST)));
        let resolv = self.write_resolv_conf(dns)?;
        args.extend(["-v", &resolv]);
        for bind in &opts.binds {
            args.extend(["-v", bind.as_str()]);
        }
        args.extend(labels.iter().map(String::as_str));
        args.extend([DIND_IMAGE, "--storage-driver=overlay2"]);
        args.extend(opts.dockerd_args.iter().map(String::as_str));
        docker(&args).await.map(drop)
    }

    /// Writes `resolv.conf` for `dns` and returns the bind-mount argument.
    fn write_resolv_conf(&self, dns: IpAddr) -> Result<String, DindError> {
        let path = self.dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            format!("nameserver {dns}\noptions attempts:1 timeout:2\n"),
        )?;
        Ok(format!("{}:/etc/resolv.conf:ro", path.display()))
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), DindError> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0u32;
        loop {
            let last = match tokio::time::timeout(PING_TIMEOUT, self.docker.ping()).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("ping took over {PING_TIMEOUT:?}"),
            };
            attempt += 1;
            let exited = attempt.is_multiple_of(10) && !self.running().await;
            if exited || Instant::now() >= deadline {
                let state = if exited { "DinD exited" } else { "deadline" };
                return Err(DindError::Timeout {
                    what: "DinD mTLS ping",
                    after: timeout,
                    detail: format!("{state}; last: {last}; logs:\n{}", self.logs_tail().await),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn running(&self) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.name])
            .await
            .is_ok_and(|state| state == "true")
    }
}

impl Drop for Dind {
    fn drop(&mut self) {
        remove_container_blocking(&self.name);
        remove_volume_blocking(&self.volume);
        // Then the fields drop: the tempdir, and the sealed network (which also force-removes
        // any outer container of this fixture still attached).
    }
}

/// Installs ring as the process-wide rustls provider; a second call is a no-op. bollard panics
/// on TLS use when no provider is installed and more than one is linked.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    drop(rustls::crypto::ring::default_provider().install_default());
}

/// A bollard client for `endpoint` over mTLS with explicit files, e.g. a foreign client cert.
/// Does not connect; the first request does.
pub fn connect_mtls(
    endpoint: SocketAddr,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Docker, DindError> {
    install_crypto_provider();
    let addr = format!("tcp://{endpoint}");
    Ok(Docker::connect_with_ssl(
        &addr,
        key,
        cert,
        ca,
        CLIENT_TIMEOUT_S,
        API_DEFAULT_VERSION,
    )?)
}

/// Fails with [`DindError::MissingImage`] unless `tag` is on the host daemon.
pub async fn require_image(tag: &str) -> Result<(), DindError> {
    let output = docker_output(&["image", "inspect", "--format", "{{.Id}}", tag]).await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DindError::MissingImage {
            tag: tag.to_owned(),
        })
    }
}

/// `docker save <tag>` from the host daemon, cached per process.
async fn saved_image(tag: &str) -> Result<Bytes, DindError> {
    static SAVED: Mutex<Option<HashMap<String, Bytes>>> = Mutex::new(None);
    if let Some(tarball) = cached(&SAVED, tag) {
        return Ok(tarball);
    }
    require_image(tag).await?;
    let output = docker_output(&["save", tag]).await?;
    if !output.status.success() {
        return Err(DindError::Cli {
            args: format!("save {tag}"),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let tarball = Bytes::from(output.stdout);
    if let Ok(mut saved) = SAVED.lock() {
        saved
            .get_or_insert_with(HashMap::new)
            .insert(tag.to_owned(), tarball.clone());
    }
    Ok(tarball)
}

fn cached(saved: &Mutex<Option<HashMap<String, Bytes>>>, tag: &str) -> Option<Bytes> {
    saved.lock().ok()?.as_ref()?.get(tag).cloned()
}
