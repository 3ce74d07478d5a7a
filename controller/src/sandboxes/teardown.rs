//! A delete's teardown, each step as soon as what it depends on is gone: the proxy's entry
//! (which depends on nothing Docker holds) alongside the Docker objects; the proxy's link to
//! the sandbox's network alongside the container's removal; then the network and the CA volume
//! the container used, side by side. The container is killed, not stopped: a delete gives the
//! workload no grace (`StopSandbox` does).

use futures_util::future::try_join_all;
use tracing::instrument;

use super::Sandboxes;
use crate::docker::spec::egress::EGRESS_CONTAINER;
use crate::docker::spec::LABEL_SANDBOX_ID;
use crate::docker::{DockerError, Removal};
use crate::sandbox::{names, SandboxId};

// === impl Sandboxes ===

impl Sandboxes {
    /// Removes the sandbox's proxy entry, its containers, networks and CA volume. A failed
    /// entry removal is logged, not returned (the reconciler and a proxy restart drop it).
    #[instrument(skip_all, fields(sandbox.id = %id))]
    pub(super) async fn tear_down(&self, id: SandboxId) -> Result<(), DockerError> {
        let ((), removed) = tokio::join!(self.detach_egress(id), self.remove_docker_objects(id));
        removed
    }

    /// The containers and the proxy's link first, then the networks and the CA volume.
    async fn remove_docker_objects(&self, id: SandboxId) -> Result<(), DockerError> {
        let value = id.to_string();
        let network = names::network_name(id);
        let (containers, networks) = tokio::try_join!(
            self.docker.containers_labelled(LABEL_SANDBOX_ID, &value),
            self.docker.networks_labelled(LABEL_SANDBOX_ID, &value),
        )?;
        let containers_gone = async {
            try_join_all(
                containers
                    .iter()
                    .map(|container| self.docker.remove_container(container, Removal::Force)),
            )
            .await?;
            // By name as well, after the ids: a container whose create raced the listing.
            let name = names::container_name(id);
            self.docker.remove_container(&name, Removal::Force).await
        };
        let proxy_off = self.docker.disconnect_network(&network, EGRESS_CONTAINER);
        tokio::try_join!(containers_gone, proxy_off)?;
        let networks_gone = async {
            try_join_all(networks.iter().map(|n| self.docker.remove_network(n))).await?;
            self.docker.remove_network(&network).await
        };
        tokio::try_join!(networks_gone, self.docker.remove_trust_volume(id))?;
        Ok(())
    }
}
