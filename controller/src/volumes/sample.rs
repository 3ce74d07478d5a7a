//! Soft quotas: how much each volume holds, measured by a sampler container with no network
//! ([`crate::docker::DockerClient::sample_volume`]), every `AIRLOCK_VOLUME_SAMPLE_INTERVAL`
//! and when a sandbox that mounted the volume ends. A volume sampled over its size refuses
//! new read-write mounts (the store's mount hold checks `used_bytes`).

use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;
use tracing::{debug, warn};

use super::{VolumeError, Volumes};
use crate::store::Scope;
use crate::volume::VolumeId;

// === impl Volumes ===

impl Volumes {
    /// Samples one volume now and records the result; returns the bytes used.
    pub async fn sample(&self, id: VolumeId) -> Result<u64, VolumeError> {
        let volume = self.store.get_volume(Scope::All, id).await?;
        let volume = volume.ok_or(VolumeError::NotFound)?;
        let image = &self.settings.config.helper_image;
        let used = self
            .docker
            .sample_volume(id, &volume.docker_name, image, &self.settings.node)
            .await?;
        self.store
            .set_volume_usage(id, used, OffsetDateTime::now_utc())
            .await?;
        debug!(volume.id = %id, used, "Volume sampled");
        Ok(used)
    }

    /// Samples `ids` (the volumes of a sandbox that ended or was deleted).
    pub async fn sample_each(&self, ids: Vec<VolumeId>) {
        for id in ids {
            if let Err(error) = self.sample(id).await {
                warn!(volume.id = %id, %error, "Volume sample failed");
            }
        }
    }

    /// One pass over every volume.
    pub async fn sample_all(&self) {
        let volumes = match self.store.list_volumes(Scope::All).await {
            Ok(volumes) => volumes,
            Err(error) => {
                warn!(%error, "Could not list volumes to sample");
                return;
            }
        };
        for volume in volumes {
            if let Err(error) = self.sample(volume.id).await {
                warn!(volume.id = %volume.id, %error, "Volume sample failed");
            }
        }
    }
}

/// Samples every volume each interval until `stopped` resolves.
pub async fn run_sampler(volumes: Volumes, stopped: Pin<Box<dyn Future<Output = ()> + Send>>) {
    let mut ticks = tokio::time::interval(volumes.settings.config.sample_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = ticks.tick() => volumes.sample_all().await,
        }
    }
}
