//! The Docker client: the only module that calls bollard.
//!
//! It speaks to one DinD node, normally over mutual TLS ([`DockerClient::connect`]). Every
//! call maps bollard's errors into [`DockerError`], whose [`DockerError::DockerStatus`] keeps
//! the daemon's HTTP status for callers to branch on. Removals treat a 404 as success, so
//! deletes stay idempotent. Nothing here pulls an image: [`DockerClient::image_exists`] only
//! inspects what the node already has.

pub mod disk;
pub mod egress;
pub mod events;
pub mod exec;
pub mod files;
pub mod images;
pub mod listing;
pub mod probe;
pub mod runtime;
pub mod transport;
pub mod trust;
pub mod volumes;

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;

use crate::config::DockerConfig;

/// Read/write timeout of bollard's HTTP client, in seconds. Longer than any stop grace
/// period the controller asks Docker to wait out.
const CLIENT_TIMEOUT_S: u64 = 300;
/// Longest wait for the daemon's answer when connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time given to a `stop` request beyond the grace period.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// A client for one Docker daemon; cheap to clone.
#[derive(Clone, Debug)]
pub struct DockerClient {
    docker: Docker,
    /// Whether the node enforces a disk limit, once probed ([`DockerClient::disk_limit`]).
    disk_limit: std::sync::Arc<tokio::sync::OnceCell<disk::DiskLimit>>,
}

/// What Docker reports about a container's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Whether the process runs (or is paused or restarting).
    pub running: bool,
    /// The exit code, once it has exited.
    pub exit_code: Option<i64>,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
}

/// How hard [`DockerClient::remove_container`] tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Refuse to remove a running container.
    IfStopped,
    /// Kill it first if it runs.
    Force,
}

/// Why a Docker call failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The client could not be built (bad certificate files, bad address).
    #[error("cannot set up the Docker client: {0}")]
    Setup(#[source] BollardError),
    /// The daemon answered with an error status.
    #[error("Docker answered {status}: {message}")]
    DockerStatus {
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The daemon could not be reached, or the exchange failed.
    #[error("Docker request failed: {0}")]
    Transport(#[source] BollardError),
    /// The daemon did not answer in time.
    #[error("Docker did not answer within {0:?}")]
    Timeout(Duration),
    /// A response lacked a field the controller needs.
    #[error("unexpected Docker response: {0}")]
    Unexpected(&'static str),
}

// === impl DockerClient ===

impl DockerClient {
    /// Connects to the daemon and negotiates the API version (a DinD with dockerd 20.10
    /// speaks 1.41, older than bollard's default).
    pub async fn connect(config: &DockerConfig) -> Result<DockerClient, DockerError> {
        let client = Self::new(config)?;
        let negotiate = client.docker.negotiate_version();
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, negotiate)
            .await
            .map_err(|_elapsed| DockerError::Timeout(CONNECT_TIMEOUT))??;
        Ok(Self::from_bollard(docker))
    }

    /// Builds the client without any I/O: the first request connects. The API version stays
    /// bollard's default until [`DockerClient::connect`] negotiates it.
    pub fn new(config: &DockerConfig) -> Result<DockerClient, DockerError> {
        let docker = match config {
            DockerConfig::Tls {
                host,
                port,
                cert_dir,
            } => {
                install_crypto_provider();
                transport::pooled_tls(host, *port, cert_dir, CLIENT_TIMEOUT_S, API_DEFAULT_VERSION)
            }
            DockerConfig::InsecureTcp { host, port } => Docker::connect_with_http(
                &tcp_addr(host, *port),
                CLIENT_TIMEOUT_S,
                API_DEFAULT_VERSION,
            ),
            DockerConfig::InsecureUnix { path } => Docker::connect_with_unix(
                &path.to_string_lossy(),
                CLIENT_TIMEOUT_S,
                API_DEFAULT_VERSION,
            ),
        };
        let docker = docker.map_err(DockerError::Setup)?;
        Ok(Self::from_bollard(docker))
    }

    /// Wraps a bollard handle built by a sibling module (e.g. from `DOCKER_HOST`).
    fn from_bollard(docker: Docker) -> DockerClient {
        Self {
            docker,
            disk_limit: std::sync::Arc::default(),
        }
    }

    /// The bollard handle, for the sibling modules of [`crate::docker`].
    fn bollard(&self) -> &Docker {
        &self.docker
    }

    /// `GET /_ping`.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(DockerError::from)
    }

    /// Whether the node has `image` (a reference or an id). Never pulls.
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(error) => match DockerError::from(error) {
                error if error.is_not_found() => Ok(false),
                error => Err(error),
            },
        }
    }

    /// Creates a network and returns its id.
    pub async fn create_network(&self, body: NetworkCreateRequest) -> Result<String, DockerError> {
        let created = self.docker.create_network(body).await?;
        Ok(created.id)
    }

    /// Removes a network; one that does not exist counts as removed. The egress proxy, which
    /// joins every sandbox network, is detached first (Docker refuses to remove a network
    /// with endpoints).
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        self.disconnect_network(name, crate::docker::spec::egress::EGRESS_CONTAINER)
            .await?;
        not_found_ok(self.docker.remove_network(name).await)
    }

    /// Creates a container called `name` and returns its id.
    pub async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..CreateContainerOptions::default()
        };
        let created = self.docker.create_container(Some(options), body).await?;
        Ok(created.id)
    }

    /// Starts a container; one that already runs counts as started.
    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        Ok(self.docker.start_container(container, None).await?)
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns once the process is gone.
    pub async fn stop(&self, container: &str, grace: Duration) -> Result<(), DockerError> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            t: Some(secs),
            signal: None,
        };
        let stop = self.docker.stop_container(container, Some(options));
        match tokio::time::timeout(grace + STOP_SLACK, stop).await {
            Ok(result) => Ok(result?),
            Err(_elapsed) => self.kill(container, "SIGKILL").await,
        }
    }

    /// Sends `signal` (e.g. `SIGKILL`) to the container's main process.
    pub async fn kill(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        Ok(self.docker.kill_container(container, Some(options)).await?)
    }

    /// Removes a container (and its anonymous volumes); one that does not exist counts as
    /// removed.
    pub async fn remove_container(
        &self,
        container: &str,
        removal: Removal,
    ) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            v: true,
            force: removal == Removal::Force,
            link: false,
        };
        not_found_ok(self.docker.remove_container(container, Some(options)).await)
    }

    /// The container's process state; `None` when the container does not exist.
    pub async fn inspect(&self, container: &str) -> Result<Option<ContainerStatus>, DockerError> {
        let inspected = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await;
        let inspected = match inspected.map_err(DockerError::from) {
            Ok(inspected) => inspected,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let state = inspected
            .state
            .ok_or(DockerError::Unexpected("container inspect without State"))?;
        let running = state.running.unwrap_or(false)
            || state.restarting.unwrap_or(false)
            || state.paused.unwrap_or(false);
        Ok(Some(ContainerStatus {
            running,
            exit_code: (!running).then_some(state.exit_code).flatten(),
            oom_killed: state.oom_killed.unwrap_or(false),
        }))
    }

    /// Blocks until the container is not running, or `limit` passes (`None`). Returns the
    /// exit code Docker reports.
    pub async fn wait(&self, container: &str, limit: Duration) -> Result<Option<i64>, DockerError> {
        let mut stream = self
            .docker
            .wait_container(container, None::<WaitContainerOptions>);
        let next = match tokio::time::timeout(limit, stream.next()).await {
            Err(_elapsed) => return Ok(None),
            Ok(next) => next,
        };
        match next {
            Some(Ok(response)) => Ok(Some(response.status_code)),
            // bollard turns a non-zero exit into an error; it is a normal end here.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(Some(code)),
            Some(Err(error)) => Err(error.into()),
            None => Err(DockerError::Unexpected("empty container wait response")),
        }
    }

    /// Ids of every container (running or not) carrying `label=value`.
    pub async fn containers_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<String>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(label_filter(label, value)),
            ..ListContainersOptions::default()
        };
        let containers = self.docker.list_containers(Some(options)).await?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    /// Ids of every network carrying `label=value`.
    pub async fn networks_labelled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<String>, DockerError> {
        let options = ListNetworksOptions {
            filters: Some(label_filter(label, value)),
        };
        let networks = self.docker.list_networks(Some(options)).await?;
        Ok(networks.into_iter().filter_map(|n| n.id).collect())
    }

    /// The IPAM subnets of every network the daemon has (`bridge`, i.e. its `docker0`,
    /// included): part of the deployment's own address space. Unparsable ones are skipped.
    pub async fn network_subnets(&self) -> Result<Vec<ipnet::IpNet>, DockerError> {
        let networks = self.docker.list_networks(None).await?;
        let subnets = networks
            .into_iter()
            .filter_map(|n| n.ipam?.config)
            .flatten()
            .filter_map(|c| c.subnet?.parse().ok())
            .collect();
        Ok(subnets)
    }
}

/// Installs ring as the process-wide rustls provider. bollard panics on TLS use when several
/// providers are linked and none is installed.
fn install_crypto_provider() {
    // An error means a provider is already installed, which is all that is needed.
    drop(rustls::crypto::ring::default_provider().install_default());
}

fn tcp_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("tcp://[{host}]:{port}")
    } else {
        format!("tcp://{host}:{port}")
    }
}

fn label_filter(label: &str, value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])])
}

fn not_found_ok(result: Result<(), BollardError>) -> Result<(), DockerError> {
    match result.map_err(DockerError::from) {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}

// === impl DockerError ===

impl DockerError {
    /// Whether the daemon answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::DockerStatus { status: 404, .. })
    }

    /// Whether the daemon answered 409 (e.g. a name already in use).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::DockerStatus { status: 409, .. })
    }
}

impl From<BollardError> for DockerError {
    fn from(error: BollardError) -> Self {
        match error {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => Self::DockerStatus {
                status: status_code,
                message,
            },
            other => Self::Transport(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_bracket_ipv6() {
        assert_eq!(tcp_addr("10.231.0.2", 2376), "tcp://10.231.0.2:2376");
        assert_eq!(tcp_addr("dind", 2376), "tcp://dind:2376");
        assert_eq!(tcp_addr("fd00::2", 2376), "tcp://[fd00::2]:2376");
    }

    #[test]
    fn daemon_statuses_are_kept_for_callers() {
        let status = |status_code| {
            DockerError::from(BollardError::DockerResponseServerError {
                status_code,
                message: "m".to_owned(),
            })
        };
        assert!(status(404).is_not_found());
        assert!(!status(404).is_conflict());
        assert!(status(409).is_conflict());
        assert!(!status(500).is_not_found());
        let timeout = DockerError::from(BollardError::RequestTimeoutError);
        assert!(matches!(timeout, DockerError::Transport(_)));
        assert!(not_found_ok(Err(BollardError::DockerResponseServerError {
            status_code: 404,
            message: "no such container".to_owned(),
        }))
        .is_ok());
        assert!(not_found_ok(Err(BollardError::DockerResponseServerError {
            status_code: 500,
            message: "boom".to_owned(),
        }))
        .is_err());
    }
}
