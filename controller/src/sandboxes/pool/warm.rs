//! Making and destroying members. A member is made in the order a sandbox is (row, /29,
//! network, proxy, container, stdin attach, start), so a failure at any step is undone the
//! same way: [`Sandboxes::destroy_member`] removes whatever exists and the row.

use std::time::Duration;

use tracing::{debug, warn};

use super::{Pools, Resolved};
use crate::docker::spec::pool::{member_container_body, member_network_body, MemberTag};
use crate::docker::spec::Placement;
use crate::pool::{MemberId, PoolSpec};
use crate::sandbox::{names, user, Home, LimitsRequest, SandboxRequest};
use crate::sandboxes::{SandboxError, Sandboxes};
use crate::store::{NewMember, Scope, StoreError};

/// Init waits this much longer than the pool's `max_idle` before it gives up on a frame: the
/// tend task replaces an idle member first, so init's own exit (75) is only the backstop.
const IDLE_MARGIN: Duration = Duration::from_secs(60);

// === impl Sandboxes ===

impl Sandboxes {
    /// What the configured pool `spec` is on this node now: its image's digest and user,
    /// and the spec its members are made from. Refused like a create would be: an image
    /// that is not allowed or present, a root user, `VOLUME` paths.
    pub(super) async fn resolve_pool(&self, spec: &PoolSpec) -> Result<Resolved, SandboxError> {
        let image = spec.image.as_str();
        let run = self.peers.images.admit(image).await?;
        if !run.volumes.is_empty() {
            return Err(SandboxError::ImageDeclaresVolume {
                image: image.to_owned(),
                paths: run.volumes,
            });
        }
        let digest = run
            .id
            .clone()
            .ok_or_else(|| crate::images::ImageError::NotFound(image.to_owned()))?;
        let settings = &self.settings.run;
        let user = match spec.user {
            Some(user) => user,
            None => user::resolve(
                image,
                Some(&run.user),
                &settings.allowed_uids,
                settings.root_images,
            )?,
        };
        let shape = spec.shape;
        let request = SandboxRequest {
            image: image.to_owned(),
            limits: LimitsRequest {
                cpus: Some(shape.cpus.as_f64()),
                memory_mb: Some(shape.memory_mb),
                pids: Some(shape.pids),
                disk_mb: None,
            },
            ..SandboxRequest::default()
        };
        let home = Home::Tmpfs {
            size_mb: settings.home_tmpfs_mb,
        };
        let member_spec = request
            .validate(&self.settings.maximums)
            .map_err(SandboxError::Invalid)?
            .run_with(user, home)
            .map_err(|error| SandboxError::Invalid(vec![error]))?;
        let key = spec.key(&digest, user);
        Ok(Resolved {
            hash: key.hash(),
            key,
            spec: member_spec,
            max_idle: spec.max_idle,
            size: spec.size,
        })
    }

    /// Makes one ready member of `pool`; on failure, whatever was made is removed.
    pub(super) async fn warm_member(&self, pool: &Resolved) -> Result<MemberId, SandboxError> {
        let node = &self.settings.node;
        let runtime = self
            .runtime
            .volume(&self.docker, node, &pool.key.image_digest)
            .await?
            .to_owned();
        let id = MemberId::new();
        let new = NewMember {
            id,
            key: pool.key.clone(),
            node: node.clone(),
            runtime_sha: runtime.clone(),
        };
        self.store.insert_member(new).await?;
        match self.make_member(id, pool, &runtime).await {
            Ok(()) => Ok(id),
            Err(error) => {
                warn!(%error, member.id = %id, "A pool member could not be made");
                self.destroy_member(id).await;
                Err(error)
            }
        }
    }

    async fn make_member(
        &self,
        id: MemberId,
        pool: &Resolved,
        runtime: &str,
    ) -> Result<(), SandboxError> {
        let subnet = self
            .store
            .allocate_member_subnet(id, &self.settings.pools)
            .await?;
        let placement = Placement {
            id: id.sandbox_id(),
            generation: 1,
            node: &self.settings.node,
            subnet,
            // The proxy credential is the claim's, in the frame; the container has none.
            proxy_token: "",
        };
        let tag = MemberTag {
            id,
            pool: &pool.hash,
            idle: pool.max_idle + IDLE_MARGIN,
        };
        self.docker
            .create_network(member_network_body(&placement, tag))
            .await?;
        let attached = async {
            if let Some(plane) = &self.egress {
                plane.attach_member(id, subnet).await?;
            }
            Ok::<(), SandboxError>(())
        };
        let body = member_container_body(&pool.spec, &placement, runtime, tag);
        let name = names::container_name(id.sandbox_id());
        let created = self.docker.create_container(&name, body);
        let (attached, created) = tokio::join!(attached, created);
        attached?;
        let container = created?;
        let stdin = self.docker.attach_stdin(&container).await?;
        self.docker.start(&container).await?;
        // Kept before the row says ready, so a claim never finds a ready member without it.
        self.pools.keep(id, stdin);
        self.store.mark_member_ready(id, &container).await?;
        debug!(member.id = %id, pool = %pool.hash, "Pool member ready");
        Ok(())
    }

    /// Destroys a member that no claim holds: it is never handed out again (`destroying`),
    /// then its proxy registration, container and network go, then its row (and /29). A
    /// claimed member is its sandbox's and is left alone, and so is whatever carries the id
    /// of a member whose row is gone once a sandbox row has that id. Failures are logged; the tend
    /// task's reconcile retries a `destroying` member.
    pub(super) async fn destroy_member(&self, id: MemberId) {
        // Whoever comes second (the tend reconcile or a failed claim) waits, then finds the
        // row gone: the objects under the id may by then be the cold sandbox's.
        let _one_at_a_time = self.pools.inner.destroying.lock(id).await;
        drop(self.pools.take(id));
        match self.store.mark_member_destroying(id).await {
            Ok(_) => {}
            // A leftover without a row. Once its sandbox id has a row, the objects under that
            // id are the sandbox's (a failed claim makes the same sandbox cold): left alone.
            Err(StoreError::NotFound) => {
                match self.store.get_sandbox(Scope::All, id.sandbox_id()).await {
                    Ok(None) => {}
                    Ok(Some(_)) => return,
                    Err(error) => {
                        debug!(%error, member.id = %id, "Member not destroyed");
                        return;
                    }
                }
            }
            Err(error) => {
                debug!(%error, member.id = %id, "Member not destroyed");
                return;
            }
        }
        if let Some(plane) = &self.egress {
            if let Err(error) = plane.forget_member(id).await {
                warn!(%error, member.id = %id, "Could not forget a member at the proxy");
            }
        }
        if let Err(error) = self.remove_docker_objects(id.sandbox_id()).await {
            warn!(%error, member.id = %id, "A member's Docker objects were not removed");
            return;
        }
        if let Err(error) = self.store.remove_member(id).await {
            warn!(%error, member.id = %id, "A member's row was not removed");
        }
    }

    /// The node's pools.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }
}
