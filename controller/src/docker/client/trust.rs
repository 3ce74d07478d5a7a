//! The bollard calls for the per-sandbox trust volumes that controllers before stop 28 made
//! (bodies in [`crate::docker::spec::trust`]): listing the node's trust volumes for the
//! reconciler's sweep, which removes them once their sandbox is gone. Today init writes the
//! trust files into the sandbox's own tmpfs, so no new volume is made outside the tests.

use super::{DockerClient, DockerError};
use crate::docker::spec::trust::trust_volume_body;
use crate::docker::spec::LABEL_SANDBOX_ID;
use crate::sandbox::SandboxId;

// === impl DockerClient ===

impl DockerClient {
    /// Creates sandbox `id`'s (empty, legacy) trust volume: what an older controller left.
    pub async fn create_trust_volume(&self, id: SandboxId, node: &str) -> Result<(), DockerError> {
        self.create_volume(trust_volume_body(id, node)).await
    }

    /// The trust volumes on `node`: every volume labelled for the node and a sandbox, with
    /// that sandbox's id (volumes whose label does not parse are left out).
    pub async fn node_trust_volumes(
        &self,
        node: &str,
    ) -> Result<Vec<(String, SandboxId)>, DockerError> {
        let listed = self.node_volumes_with(node, LABEL_SANDBOX_ID).await?;
        Ok(listed
            .into_iter()
            .filter_map(|(name, id)| Some((name, id.parse().ok()?)))
            .collect())
    }
}
