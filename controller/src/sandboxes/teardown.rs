//! A delete's teardown (also what a failed create and a destroyed pool member release), each
//! step as soon as what it depends on is gone: the proxy's entry (which depends on nothing
//! Docker holds) alongside the Docker objects; the proxy's link to the sandbox's network
//! alongside the container's removal; then the network and the CA volume the container used,
//! side by side. The container is killed, not stopped: a delete gives the workload no grace
//! (`StopSandbox` does).

use std::future::Future;
use std::time::Instant;

use futures_util::future::try_join_all;
use tracing::{debug, instrument};

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
        let ((), removed) = tokio::join!(
            step("egress_entry", self.detach_egress(id)),
            self.remove_docker_objects(id)
        );
        removed
    }

    /// The containers and the proxy's link first, then the networks and the CA volume (a
    /// delete's, a failed create's and a destroyed pool member's).
    pub(super) async fn remove_docker_objects(&self, id: SandboxId) -> Result<(), DockerError> {
        let value = id.to_string();
        let network = names::network_name(id);
        let (containers, networks) = step("list", async {
            tokio::try_join!(
                self.docker.containers_labelled(LABEL_SANDBOX_ID, &value),
                self.docker.networks_labelled(LABEL_SANDBOX_ID, &value),
            )
        })
        .await?;
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
        tokio::try_join!(
            step("containers", containers_gone),
            step("proxy_link", proxy_off)
        )?;
        let networks_gone = async {
            try_join_all(networks.iter().map(|n| self.docker.remove_network(n))).await?;
            self.docker.remove_network(&network).await
        };
        tokio::try_join!(
            step("networks", networks_gone),
            step("ca_volume", self.docker.remove_trust_volume(id))
        )?;
        Ok(())
    }
}

/// Runs one teardown step and logs how long it took (`Delete step done`, at debug).
async fn step<T>(name: &'static str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    debug!(delete.step = name, elapsed_us, "Delete step done");
    out
}
