//! Helpers for objects inside the nested daemon, always through bollard over mTLS.
//!
//! Containers run sandbox-like: every capability dropped, `no-new-privileges`, user
//! `65534:65534`. Nested networks use explicit `/24`s from `10.213.0.0/16` (the controller's
//! sandbox pool) so tests know gateway and addresses up front; they live only inside one DinD, so
//! fixtures never collide.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::dind::DindError;
use crate::sealed::unique_name;
use crate::sweep::{run, LABEL_RUN};

/// Whether a nested network is `internal` (no route out) or a plain bridge (NAT to the DinD's
/// outer interface, which on a sealed network still leads nowhere else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// `internal: true`, like every sandbox network.
    Internal,
    /// A regular bridge with a default route via the DinD.
    Bridge,
}

/// A nested network `10.213.<octet>.0/24` with gateway `.1`.
#[derive(Debug, Clone)]
pub struct NestedNet {
    /// Network name in the nested daemon.
    pub name: String,
    octet: u8,
}

/// A container to run in the nested daemon.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Short label for the name (`e2e-<hint>-<uuid>`).
    pub hint: String,
    /// Image (must already be loaded; see `Dind::load_image`).
    pub image: String,
    /// Command.
    pub cmd: Vec<String>,
    /// Network to attach, with an optional static address.
    pub network: Option<(String, Option<Ipv4Addr>)>,
}

/// What a finished container left behind.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Container exit code.
    pub exit_code: i64,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

// === impl NestedNet ===

impl NestedNet {
    /// The subnet in CIDR notation.
    pub fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.octet)
    }

    /// The gateway: the bridge's address in the DinD's own network namespace.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// Address of host number `n`.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.octet, n)
    }
}

// === impl ContainerSpec ===

impl ContainerSpec {
    /// `image` running `cmd`, not attached to any network yet (Docker's default bridge).
    pub fn new(hint: &str, image: &str, cmd: &[&str]) -> Self {
        Self {
            hint: hint.to_owned(),
            image: image.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            network: None,
        }
    }

    /// Attaches to `net`, optionally at a static address.
    pub fn on(mut self, net: &NestedNet, ip: Option<Ipv4Addr>) -> Self {
        self.network = Some((net.name.clone(), ip));
        self
    }
}

/// Creates `10.213.<octet>.0/24` named `e2e-<hint>-<uuid>`.
pub async fn create_network(
    docker: &Docker,
    hint: &str,
    octet: u8,
    kind: NetKind,
) -> Result<NestedNet, DindError> {
    let net = NestedNet {
        name: unique_name(hint),
        octet,
    };
    docker
        .create_network(NetworkCreateRequest {
            name: net.name.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(kind == NetKind::Internal),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(net.subnet()),
                    gateway: Some(net.gateway().to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(labels()),
            ..Default::default()
        })
        .await?;
    Ok(net)
}

/// Creates and starts a detached container; returns its name.
pub async fn start(docker: &Docker, spec: &ContainerSpec) -> Result<String, DindError> {
    let name = unique_name(&spec.hint);
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    docker.create_container(Some(options), body(spec)).await?;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await?;
    Ok(name)
}

/// Runs a container to completion (bounded by `limit`), collects its output and removes it.
pub async fn run_to_exit(
    docker: &Docker,
    spec: &ContainerSpec,
    limit: Duration,
) -> Result<RunOutput, DindError> {
    let name = start(docker, spec).await?;
    let waited = tokio::time::timeout(limit, wait(docker, &name)).await;
    let output = match waited {
        Ok(Ok(exit_code)) => logs(docker, &name).await.map(|(stdout, stderr)| RunOutput {
            exit_code,
            stdout,
            stderr,
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(DindError::Timeout {
            what: "nested container exit",
            after: limit,
            detail: name.clone(),
        }),
    };
    remove(docker, &name).await?;
    output
}

/// Force-removes a container (missing is fine).
pub async fn remove(docker: &Docker, name: &str) -> Result<(), DindError> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Waits for a container to stop and returns its exit code.
pub async fn wait(docker: &Docker, name: &str) -> Result<i64, DindError> {
    let mut stream = docker.wait_container(name, None::<WaitContainerOptions>);
    match stream.next().await {
        Some(Ok(response)) => Ok(response.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(error)) => Err(error.into()),
        None => Err(DindError::Unexpected {
            what: "wait stream",
            detail: format!("ended without a status for {name}"),
        }),
    }
}

/// Everything a container wrote so far: (stdout, stderr).
pub async fn logs(docker: &Docker, name: &str) -> Result<(String, String), DindError> {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut stream = docker.logs(name, Some(options));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(chunk) = stream.next().await {
        match chunk? {
            bollard::container::LogOutput::StdErr { message } => {
                stderr.push_str(&String::from_utf8_lossy(&message));
            }
            other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
        }
    }
    Ok((stdout, stderr))
}

fn body(spec: &ContainerSpec) -> ContainerCreateBody {
    let networking_config = spec.network.as_ref().map(|(net, ip)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            net.clone(),
            EndpointSettings {
                ipam_config: ip.map(|ip| EndpointIpamConfig {
                    ipv4_address: Some(ip.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )])),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.cmd.clone()),
        user: Some("65534:65534".to_owned()),
        labels: Some(labels()),
        host_config: Some(HostConfig {
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            network_mode: spec.network.as_ref().map(|(net, _)| net.clone()),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

fn labels() -> HashMap<String, String> {
    HashMap::from([(LABEL_RUN.to_owned(), run().id.clone())])
}
