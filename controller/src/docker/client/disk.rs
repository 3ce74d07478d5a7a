//! The disk-limit probe: does this node enforce `StorageOpt size` (a writable root's bound)?
//!
//! A never-started container asking for a size ([`crate::docker::spec::disk`]) is created
//! and removed at once. Docker refuses the create when its storage driver cannot enforce the
//! size (overlay2 needs XFS mounted with `pquota`), and says why. The answer is kept for the
//! client's life (one node per client, shared by its clones); a probe that failed for another
//! reason (no such image, the daemon unreachable) is not kept and is tried again next time.

use super::{DockerClient, DockerError, Removal};
use crate::docker::spec::disk::{disk_probe_body, disk_probe_name};

/// Whether the node enforces a per-container disk limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskLimit {
    /// A create with `StorageOpt size` succeeds.
    Enforced,
    /// The daemon refused it; its message says why.
    Unsupported(String),
}

// === impl DockerClient ===

impl DockerClient {
    /// Whether the node enforces a disk limit, probed once with `image` (one the node holds)
    /// and then answered from the cache.
    pub async fn disk_limit(&self, image: &str, node: &str) -> Result<DiskLimit, DockerError> {
        self.disk_limit
            .get_or_try_init(|| self.probe_disk_limit(image, node))
            .await
            .cloned()
    }

    /// The probe itself, uncached (`airlock doctor` runs it fresh).
    pub async fn probe_disk_limit(
        &self,
        image: &str,
        node: &str,
    ) -> Result<DiskLimit, DockerError> {
        let name = disk_probe_name(&uuid::Uuid::new_v4().simple().to_string());
        match self
            .create_container(&name, disk_probe_body(image, node))
            .await
        {
            Ok(id) => {
                self.remove_container(&id, Removal::Force).await?;
                Ok(DiskLimit::Enforced)
            }
            Err(DockerError::DockerStatus { status, message })
                if status != 404 && refuses_storage_opt(&message) =>
            {
                Ok(DiskLimit::Unsupported(message))
            }
            Err(error) => Err(error),
        }
    }
}

/// Whether a create's error message is the storage driver refusing the size option
/// (overlay2: "--storage-opt is supported only for overlay over xfs with 'pquota' mount
/// option"; other drivers word it differently but name the storage option or quotas).
fn refuses_storage_opt(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["storage-opt", "storage opt", "storageopt", "quota"]
        .iter()
        .any(|needle| message.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_refusals_are_told_from_other_errors() {
        let overlay =
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option";
        assert!(refuses_storage_opt(overlay));
        assert!(refuses_storage_opt("Storage Opt size not supported by vfs"));
        assert!(!refuses_storage_opt("No such image: airlock/testbox:dev"));
        assert!(!refuses_storage_opt(
            "Conflict. The container name is already in use"
        ));
    }
}
