//! Image transfer and node facts: `/images/load`, `/images/get`, image ids, `/info`.
//!
//! Nothing here verifies an archive: [`crate::images`] does that before it calls
//! [`DockerClient::load_archive`], and feeds it a stream that fails rather than ending cleanly
//! when the bytes on disk changed after verification.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, InspectNetworkOptions, TagImageOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{DockerClient, DockerError, Removal};

/// What an image's config says about how it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRun {
    /// Its id (`sha256:…`), when the daemon reports one.
    pub id: Option<String>,
    /// Its `USER` (empty when unset).
    pub user: String,
    /// Its `VOLUME` paths, sorted (Docker would back each with an anonymous volume).
    pub volumes: Vec<String>,
    /// Its `ENTRYPOINT` and `CMD`: the workload's argv when a create names no `cmd`.
    pub argv: Vec<String>,
    /// Its `WORKDIR` (empty when unset).
    pub working_dir: String,
}

/// The facts `airlock doctor` reads from `/info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The daemon's version.
    pub server_version: String,
    /// The storage driver (`overlay2`, `vfs`, …).
    pub storage_driver: String,
}

// === impl DockerClient ===

impl DockerClient {
    /// A client for the daemon that `DOCKER_HOST` / `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH`
    /// name (the local socket when unset), as the `docker` CLI would pick it. For `airlock
    /// images bundle` on a connected machine; the controller itself never uses it.
    pub fn from_docker_env() -> Result<DockerClient, DockerError> {
        drop(rustls::crypto::ring::default_provider().install_default());
        let docker = Docker::connect_with_defaults().map_err(DockerError::Setup)?;
        Ok(DockerClient::from_bollard(docker))
    }

    /// Negotiates the API version with the daemon (older daemons speak older versions).
    pub async fn negotiated(self) -> Result<DockerClient, DockerError> {
        let docker = self.bollard().clone().negotiate_version().await?;
        Ok(DockerClient::from_bollard(docker))
    }

    /// `POST /images/load` with `body` (a verified `docker save` tar). Returns the daemon's
    /// messages (`Loaded image: …`). An error in `body` aborts the upload, so the daemon sees
    /// a truncated tar and loads nothing.
    pub async fn load_archive<S>(&self, body: S) -> Result<Vec<String>, DockerError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let options = ImportImageOptions {
            quiet: true,
            ..ImportImageOptions::default()
        };
        let mut progress = self.bollard().import_image_stream(options, body, None);
        let mut messages = Vec::new();
        while let Some(step) = progress.next().await {
            let step = step?;
            if let Some(detail) = step.error_detail.and_then(|d| d.message) {
                return Err(DockerError::DockerStatus {
                    status: 500,
                    message: detail,
                });
            }
            if let Some(line) = step.stream.or(step.status) {
                let line = line.trim();
                if !line.is_empty() {
                    messages.push(line.to_owned());
                }
            }
        }
        Ok(messages)
    }

    /// `GET /images/get?names=…`: a `docker save` tar of `images`, streamed.
    pub fn export_images(
        &self,
        images: &[&str],
    ) -> impl Stream<Item = Result<Bytes, DockerError>> + use<'_> {
        self.bollard()
            .export_images(images)
            .map(|chunk| chunk.map_err(DockerError::from))
    }

    /// The image id (`sha256:…`) `reference` resolves to, or `None` when the node lacks it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, DockerError> {
        match self.bollard().inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(error) => match DockerError::from(error) {
                error if error.is_not_found() => Ok(None),
                error => Err(error),
            },
        }
    }

    /// The image's id, configured `USER` (empty when unset), `VOLUME` paths, `ENTRYPOINT` +
    /// `CMD` and `WORKDIR`, from one inspect, or `None` when the node lacks it.
    pub async fn image_run(&self, reference: &str) -> Result<Option<ImageRun>, DockerError> {
        match self.bollard().inspect_image(reference).await {
            Ok(image) => {
                let config = image.config.unwrap_or_default();
                let mut volumes = config.volumes.unwrap_or_default();
                volumes.sort();
                let mut argv = config.entrypoint.unwrap_or_default();
                argv.extend(config.cmd.unwrap_or_default());
                Ok(Some(ImageRun {
                    id: image.id,
                    user: config.user.unwrap_or_default(),
                    volumes,
                    argv,
                    working_dir: config.working_dir.unwrap_or_default(),
                }))
            }
            Err(error) => match DockerError::from(error) {
                error if error.is_not_found() => Ok(None),
                error => Err(error),
            },
        }
    }

    /// Pulls `remote` (`registry/name:tag`) and tags it `local`. Only the start-up pre-pull
    /// calls this, and only when the operator configured a registry.
    pub async fn pull_and_tag(&self, remote: &str, local: &str) -> Result<(), DockerError> {
        let options = CreateImageOptions {
            from_image: Some(remote.to_owned()),
            ..CreateImageOptions::default()
        };
        let mut progress = self.bollard().create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Some(detail) = step?.error_detail.and_then(|d| d.message) {
                return Err(DockerError::DockerStatus {
                    status: 500,
                    message: detail,
                });
            }
        }
        let (repo, tag) = split_tag(local);
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.bollard().tag_image(remote, Some(options)).await?;
        Ok(())
    }

    /// `GET /info`: version and storage driver.
    pub async fn node_info(&self) -> Result<NodeInfo, DockerError> {
        let info = self.bollard().info().await?;
        let version = self.bollard().version().await?;
        Ok(NodeInfo {
            server_version: version.version.unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
        })
    }

    /// Runs `cmd` in a throwaway container of `image` on a fresh `internal` network named
    /// `name`, as a sandbox would sit (no capabilities, non-root), and returns its exit code
    /// with the network's gateway address. Everything is removed afterwards.
    pub async fn run_bridge_probe(
        &self,
        name: &str,
        image: &str,
        cmd: impl Fn(&str) -> Vec<String>,
        limit: Duration,
    ) -> Result<(i64, String), DockerError> {
        let network = NetworkCreateRequest {
            name: name.to_owned(),
            internal: Some(true),
            ..NetworkCreateRequest::default()
        };
        self.create_network(network).await?;
        let result = self.probe_on(name, image, &cmd, limit).await;
        drop(self.remove_container(name, Removal::Force).await);
        drop(self.remove_network(name).await);
        result
    }

    async fn probe_on(
        &self,
        name: &str,
        image: &str,
        cmd: &dyn Fn(&str) -> Vec<String>,
        limit: Duration,
    ) -> Result<(i64, String), DockerError> {
        let options = InspectNetworkOptions::default();
        let inspected = self.bollard().inspect_network(name, Some(options)).await?;
        let gateway = inspected
            .ipam
            .and_then(|ipam| ipam.config)
            .and_then(|configs| configs.into_iter().find_map(|c| c.gateway))
            .ok_or(DockerError::Unexpected("network without a gateway"))?;
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(cmd(&gateway)),
            user: Some("65534:65534".to_owned()),
            network_disabled: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some(name.to_owned()),
                cap_drop: Some(vec!["ALL".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let id = self.create_container(name, body).await?;
        self.start(&id).await?;
        let code = self
            .wait(&id, limit)
            .await?
            .ok_or(DockerError::Timeout(limit))?;
        Ok((code, gateway))
    }
}

/// `name` and `tag` of `name:tag` (`latest` when there is no tag).
fn split_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => (&reference[..slash + colon], &reference[slash + colon + 1..]),
        None => (reference, "latest"),
    }
}
