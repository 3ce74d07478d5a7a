//! The bollard calls the network plane needs: a volume for the proxy's admin TLS files,
//! uploading them, watching the proxy container, and attaching it to sandbox networks.

use std::net::Ipv4Addr;

use bollard::models::{
    EndpointIpamConfig, EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{InspectContainerOptions, UploadToContainerOptions};

use super::{DockerClient, DockerError};
use crate::docker::spec::egress::role_labels;

// === impl DockerClient ===

impl DockerClient {
    /// Whether a network called `name` exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.bollard().inspect_network(name, None).await {
            Ok(_) => Ok(true),
            Err(error) => match DockerError::from(error) {
                error if error.is_not_found() => Ok(false),
                error => Err(error),
            },
        }
    }

    /// Creates a named volume (an existing one is kept).
    pub async fn ensure_volume(&self, name: &str) -> Result<(), DockerError> {
        let body = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(role_labels()),
            ..VolumeCreateRequest::default()
        };
        self.bollard().create_volume(body).await?;
        Ok(())
    }

    /// Extracts the tar archive `tar` into `path` of a (created, not necessarily started)
    /// container.
    pub async fn upload_tar(
        &self,
        container: &str,
        path: &str,
        tar: Vec<u8>,
    ) -> Result<(), DockerError> {
        let options = UploadToContainerOptions {
            path: path.to_owned(),
            ..UploadToContainerOptions::default()
        };
        self.bollard()
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await?;
        Ok(())
    }

    /// Whether `container` exists and runs, and its image id.
    pub async fn container_running(
        &self,
        container: &str,
    ) -> Result<Option<(bool, String)>, DockerError> {
        match self
            .bollard()
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspected) => {
                let running = inspected.state.and_then(|s| s.running).unwrap_or(false);
                Ok(Some((running, inspected.image.unwrap_or_default())))
            }
            Err(error) => match DockerError::from(error) {
                error if error.is_not_found() => Ok(None),
                error => Err(error),
            },
        }
    }

    /// Connects `container` to `network` at the static address `ip`.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        ip: Ipv4Addr,
    ) -> Result<(), DockerError> {
        let request = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: Some(ip.to_string()),
                    ..EndpointIpamConfig::default()
                }),
                ..EndpointSettings::default()
            }),
        };
        Ok(self.bollard().connect_network(network, request).await?)
    }

    /// Disconnects `container` from `network` (forced); a missing network or container, or
    /// one not connected, counts as disconnected.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
    ) -> Result<(), DockerError> {
        let request = NetworkDisconnectRequest {
            container: container.to_owned(),
            force: Some(true),
        };
        match self.bollard().disconnect_network(network, request).await {
            Ok(()) => Ok(()),
            Err(error) => match DockerError::from(error) {
                error if error.is_not_found() => Ok(()),
                DockerError::DockerStatus { message, .. } if message.contains("not connected") => {
                    Ok(())
                }
                error => Err(error),
            },
        }
    }

    /// Restarts a container (a stopped one is started).
    pub async fn restart(&self, container: &str) -> Result<(), DockerError> {
        Ok(self.bollard().restart_container(container, None).await?)
    }
}
