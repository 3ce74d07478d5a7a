//! The bollard calls of volumes: create, remove, list the managed ones, probe whether the node
//! enforces a volume's size, and run the usage sampler (its body is
//! [`crate::docker::spec::volume`]); and the doctor's stat of the host folders root on the node
//! ([`crate::docker::spec::folder`]).

use std::time::Duration;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};

use super::{label_filter, not_found_ok, DockerClient, DockerError, Removal};
use crate::docker::spec::volume::{
    chown_body, parse_sample, sampler_body, sampler_name, volume_body, LABEL_VOLUME_ID,
};
use crate::docker::spec::LABEL_NODE;
use crate::sandbox::{RunAs, SandboxId};
use crate::volume::{QuotaMode, VolumeId};

/// Longest a usage sample may take.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(120);

/// A managed Docker volume found on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedVolume {
    /// The Docker name.
    pub name: String,
    /// Its `airlock.volume.id` label, when it parses.
    pub id: Option<VolumeId>,
}

/// Whether the node enforces a volume's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaProbe {
    /// The local driver took the `size` option (an XFS volume root mounted with `prjquota`).
    Hard,
    /// The daemon refused it; its message says why.
    Soft(String),
}

// === impl DockerClient ===

impl DockerClient {
    /// Whether the node's local volume driver enforces a volume's size: a 1 MiB volume is
    /// created with the `size` option and removed at once. A daemon refusal naming quotas
    /// ("quota size requested but no quota support") is [`QuotaProbe::Soft`].
    pub async fn probe_volume_quota(&self, node: &str) -> Result<QuotaProbe, DockerError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("airlock-quotaprobe-{}", &run[..12]);
        let body = volume_body(VolumeId::new(), &name, node, 1, QuotaMode::Hard);
        match self.create_volume(body).await {
            Ok(()) => {
                self.remove_volume(&name).await?;
                Ok(QuotaProbe::Hard)
            }
            Err(DockerError::DockerStatus { status, message })
                if status != 404 && message.to_ascii_lowercase().contains("quota") =>
            {
                Ok(QuotaProbe::Soft(message))
            }
            Err(error) => Err(error),
        }
    }

    /// The device and inode of `root` as the node sees it, by a short helper (no network,
    /// read-only bind); the helper is removed whatever happens.
    pub async fn stat_folders_root(
        &self,
        root: &str,
        image: &str,
        node: &str,
    ) -> Result<(u64, u64), DockerError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("airlock-folderstat-{}", &run[..12]);
        let body = crate::docker::spec::folder::root_stat_body(root, image, node);
        let output = self.run_to_end(&name, body, SAMPLE_DEADLINE, 4096).await;
        self.remove_container(&name, Removal::Force).await?;
        let output = output?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut fields = stdout.split_whitespace().map(str::parse::<u64>);
        match (output.exit_code, fields.next(), fields.next()) {
            (Some(0), Some(Ok(dev)), Some(Ok(ino))) => Ok((dev, ino)),
            _ => Err(DockerError::Unexpected(
                "the folders root stat helper failed",
            )),
        }
    }
}

impl DockerClient {
    /// Creates a Docker volume.
    pub async fn create_volume(&self, body: VolumeCreateRequest) -> Result<(), DockerError> {
        self.bollard().create_volume(body).await?;
        Ok(())
    }

    /// Removes a Docker volume; a missing one counts as removed.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveVolumeOptions { force: false };
        not_found_ok(self.bollard().remove_volume(name, Some(options)).await)
    }

    /// Every Docker volume carrying `airlock.node=<node>` and an `airlock.volume.id` label.
    pub async fn node_volumes(&self, node: &str) -> Result<Vec<ListedVolume>, DockerError> {
        let listed = self.node_volumes_with(node, LABEL_VOLUME_ID).await?;
        Ok(listed
            .into_iter()
            .map(|(name, value)| ListedVolume {
                id: value.parse().ok(),
                name,
            })
            .collect())
    }

    /// The name and `label` value of every Docker volume carrying `airlock.node=<node>` and
    /// `label`.
    pub(super) async fn node_volumes_with(
        &self,
        node: &str,
        label: &str,
    ) -> Result<Vec<(String, String)>, DockerError> {
        let mut filters = label_filter(LABEL_NODE, node);
        if let Some(labels) = filters.get_mut("label") {
            labels.push(label.to_owned());
        }
        let options = ListVolumesOptions {
            filters: Some(filters),
        };
        let listed = self.bollard().list_volumes(Some(options)).await?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut volume| {
                let value = volume.labels.remove(label)?;
                Some((volume.name, value))
            })
            .collect())
    }

    /// Gives the root of Docker volume `docker_name` to `user` (see
    /// [`crate::docker::spec::volume::chown_body`]); the helper is removed at once.
    pub async fn chown_volume_root(
        &self,
        sandbox: SandboxId,
        docker_name: &str,
        user: RunAs,
        image: &str,
        node: &str,
    ) -> Result<(), DockerError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("airlock-volown-{sandbox}-{}", &run[..8]);
        let body = chown_body(sandbox, docker_name, user, image, node);
        let output = self.run_to_end(&name, body, SAMPLE_DEADLINE, 4096).await;
        self.remove_container(&name, Removal::Force).await?;
        match output?.exit_code {
            Some(0) => Ok(()),
            _ => Err(DockerError::Unexpected("the volume owner helper failed")),
        }
    }

    /// The bytes used in Docker volume `docker_name`, measured by a sampler container with
    /// no network (`image` needs `du`). The sampler is removed whatever happens.
    pub async fn sample_volume(
        &self,
        id: VolumeId,
        docker_name: &str,
        image: &str,
        node: &str,
    ) -> Result<u64, DockerError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let name = sampler_name(id, &run[..8]);
        let body = sampler_body(id, docker_name, image, node);
        let output = self.run_to_end(&name, body, SAMPLE_DEADLINE, 4096).await;
        self.remove_container(&name, Removal::Force).await?;
        let output = output?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match output.exit_code {
            Some(0) => parse_sample(&stdout).ok_or(DockerError::Unexpected("sampler output")),
            _ => Err(DockerError::Unexpected("the volume sampler failed")),
        }
    }
}
