//! A delete's teardown, and what a failed create and a destroyed pool member release. Each
//! step runs as soon as what it depends on is gone: the proxy's entry (which depends on
//! nothing Docker holds) alongside the containers; the proxy's link to the sandbox's network
//! alongside the containers' removal; then the network and the CA volume the container used,
//! side by side. The container is killed, not stopped: a delete gives the workload no grace
//! (`StopSandbox` does).
//!
//! A delete answers once nothing runs for the sandbox any more (entry and containers gone, its
//! end recorded); the network, CA volume and row follow in the background. The row, hidden
//! from reads since [`Store::begin_delete`], holds the /29 until its network is gone; when the
//! background step is cut short (a restart), the reconciler finishes it.
//!
//! [`Store::begin_delete`]: crate::store::Store::begin_delete

use std::future::Future;
use std::time::Instant;

use futures_util::future::try_join_all;
use tracing::{debug, instrument, warn};

use super::{SandboxError, Sandboxes};
use crate::docker::spec::egress::EGRESS_CONTAINER;
use crate::docker::spec::LABEL_SANDBOX_ID;
use crate::docker::{DockerError, Removal};
use crate::sandbox::{names, EndReason, SandboxEvent, SandboxId};
use crate::store::{Sandbox, StoreError};

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

    /// A delete whose [`Store::begin_delete`](crate::store::Store::begin_delete) returned
    /// `sandbox`: the proxy's entry and the containers, then the end (its quota and volume
    /// mounts are free from then on); the networks, CA volume and row in the background.
    #[instrument(skip_all, fields(sandbox.id = %sandbox.id))]
    pub(super) async fn delete(&self, sandbox: Sandbox) -> Result<(), SandboxError> {
        let id = sandbox.id;
        let ((), removed) = tokio::join!(
            step("egress_entry", self.detach_egress(id)),
            step("kill", self.remove_containers(id))
        );
        removed?;
        let ended = SandboxEvent::Ended(EndReason::Stopped);
        match step(
            "end",
            self.store.record_transition(id, sandbox.generation, &ended),
        )
        .await
        {
            // Ended already, or it went on to another generation: its end was recorded then.
            Ok(_)
            | Err(
                StoreError::Transition(_)
                | StoreError::StaleGeneration { .. }
                | StoreError::NotFound,
            ) => {}
            Err(error) => return Err(error.into()),
        }
        self.sample_volumes_of(&sandbox.spec);
        self.peers.metrics.sandbox_deleted();
        let sandboxes = self.clone();
        tokio::spawn(async move { sandboxes.finish_delete(id).await });
        Ok(())
    }

    /// The rest of a delete: the Docker objects left, then the row with its /29.
    async fn finish_delete(&self, id: SandboxId) {
        let finished = async {
            self.remove_docker_objects(id).await?;
            step("row", self.store.finish_delete(id)).await?;
            Ok::<_, SandboxError>(())
        };
        if let Err(error) = finished.await {
            warn!(%error, sandbox.id = %id, "A delete's teardown is left to the reconciler");
        }
    }

    /// The containers and the proxy's link first, then the networks (a delete's, a failed
    /// create's and a destroyed pool member's). A trust volume an older controller made goes
    /// with the reconciler's sweep once the row is gone.
    pub(super) async fn remove_docker_objects(&self, id: SandboxId) -> Result<(), DockerError> {
        let network = names::network_name(id);
        let value = id.to_string();
        let (networks, (), ()) = tokio::try_join!(
            step(
                "list",
                self.docker.networks_labelled(LABEL_SANDBOX_ID, &value)
            ),
            step("containers", self.remove_containers(id)),
            step(
                "proxy_link",
                self.docker.disconnect_network(&network, EGRESS_CONTAINER)
            ),
        )?;
        let networks_gone = async {
            try_join_all(networks.iter().map(|n| self.docker.remove_network(n))).await?;
            self.docker.remove_network(&network).await
        };
        step("networks", networks_gone).await
    }

    /// Kills and removes every container labelled for the sandbox, then the one by its name
    /// (a container whose create raced the listing).
    async fn remove_containers(&self, id: SandboxId) -> Result<(), DockerError> {
        let value = id.to_string();
        let containers = self
            .docker
            .containers_labelled(LABEL_SANDBOX_ID, &value)
            .await?;
        try_join_all(
            containers
                .iter()
                .map(|container| self.docker.remove_container(container, Removal::Force)),
        )
        .await?;
        let name = names::container_name(id);
        self.docker.remove_container(&name, Removal::Force).await
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
