//! A create's volume mounts: binding the checked mounts to the owner's volumes (another
//! user's volume is missing like an unknown one), the holds the store takes with the row, and
//! handing each read-write volume's root to the sandbox user before the container starts.
//! Host folders are bound by [`crate::folders::Folders::bind_mounts`] (grant, realpath
//! checked again, mode) and held with the row too.

use std::collections::BTreeMap;

use super::{SandboxError, Sandboxes};
use crate::accounts::user::UserId;
use crate::sandbox::mounts::BoundVolume;
use crate::sandbox::{SandboxId, SandboxSpec};
use crate::store::{FolderHold, MountHold};

// === impl Sandboxes ===

impl Sandboxes {
    /// Binds every mount of `spec` to `owner`'s volume of that name.
    pub(super) async fn bind_mounts(
        &self,
        owner: UserId,
        spec: SandboxSpec,
    ) -> Result<SandboxSpec, SandboxError> {
        if spec.mounts().is_empty() {
            return Ok(spec);
        }
        let mut found = BTreeMap::new();
        for mount in spec.mounts() {
            if let Some(volume) = self.store.volume_by_name(owner, &mount.volume).await? {
                let bound = BoundVolume {
                    id: volume.id,
                    docker_name: volume.docker_name,
                };
                found.insert(mount.volume.clone(), bound);
            }
        }
        spec.bind_volumes(&found)
            .map_err(|name| SandboxError::VolumeNotFound(name.to_string()))
    }

    /// Gives the root of every read-write volume of `spec` to its user (`chown`, not
    /// recursive), by a helper with no network and only `CAP_CHOWN`, removed with the
    /// sandbox's objects.
    pub(super) async fn own_volume_roots(
        &self,
        id: SandboxId,
        spec: &SandboxSpec,
    ) -> Result<(), SandboxError> {
        let image = &self.peers.volumes.settings().config.helper_image;
        for mount in spec.mounts().iter().filter(|m| !m.read_only) {
            let Some(bound) = &mount.bound else {
                continue;
            };
            self.docker
                .chown_volume_root(
                    id,
                    &bound.docker_name,
                    spec.run_as(),
                    image,
                    &self.settings.node,
                )
                .await?;
        }
        Ok(())
    }

    /// Samples the volumes of a sandbox that ended or was deleted, in the background (soft
    /// quotas).
    pub(super) fn sample_volumes_of(&self, spec: &SandboxSpec) {
        let ids: Vec<_> = spec
            .mounts()
            .iter()
            .filter_map(|m| m.bound.as_ref().map(|b| b.id))
            .collect();
        if ids.is_empty() {
            return;
        }
        let volumes = self.peers.volumes.clone();
        tokio::spawn(async move { volumes.sample_each(ids).await });
    }
}

/// The store holds of a bound spec's folder mounts.
pub(super) fn folder_holds(spec: &SandboxSpec) -> Vec<FolderHold> {
    spec.folders()
        .iter()
        .filter_map(|mount| {
            let bound = mount.bound.as_ref()?;
            Some(FolderHold {
                folder: bound.id,
                target: mount.target.to_string(),
                read_only: bound.read_only,
            })
        })
        .collect()
}

/// The store holds of a bound spec's mounts.
pub(super) fn holds(spec: &SandboxSpec) -> Vec<MountHold> {
    spec.mounts()
        .iter()
        .filter_map(|mount| {
            let bound = mount.bound.as_ref()?;
            Some(MountHold {
                volume: bound.id,
                target: mount.target.to_string(),
                read_only: mount.read_only,
            })
        })
        .collect()
}
