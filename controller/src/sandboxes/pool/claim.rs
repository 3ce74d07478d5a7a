//! The warm path of a create. [`Sandboxes::warm_key`] decides whether a validated request
//! can be served by a member (else it goes cold and counts a `pool_miss{reason}`); the store
//! claims one in the create's transaction (`Store::claim_member`); then
//! [`Sandboxes::finish_claim`] binds it: the sandbox's inspection CA when it binds
//! credentials (stored before the entry that needs it), then the sandbox's entry at the proxy
//! (replacing the member's unbound registration) ‖ the limits update, then the frame (with
//! the CA, which init writes into the member's `/run/airlock` tmpfs) on the member's kept
//! stdin attach, then `claimed` and `running`.
//!
//! A claim that fails after the store took the member (its container died with the node's
//! daemon, the limits update was refused, the frame did not reach init) destroys the member,
//! which is never handed out again, and makes the same sandbox cold: the member's objects
//! carry the sandbox's names and are gone before the cold path makes its own, and the row,
//! its /29, its audit row and its idempotency key stay as the claim wrote them. At most one
//! workload runs: the member's container is removed (killed) before the cold one starts.
//! A failed cold path ends the sandbox `failed` like any cold create.

use std::time::Instant;

use tracing::{instrument, warn};
use uuid::Uuid;

use super::Resolved;
use crate::docker::spec::pool::limits_update;
use crate::docker::spec::Placement;
use crate::pool::PoolKey;
use crate::sandbox::{Home, SandboxEvent, SandboxSpec, HOME_DIR};
use crate::sandboxes::launch;
use crate::sandboxes::provision::{step, Provision};
use crate::sandboxes::{SandboxError, Sandboxes};
use crate::store::{PoolMember, Sandbox};

crate::sandbox::string_enum! {
    /// Why a create went cold although pools are configured.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum MissReason as "pool miss reason" {
        /// It mounts volumes or host folders (Docker cannot add mounts to a running
        /// container), or asks for a volume as its home.
        Mounts = "mounts",
        /// It sets container labels (immutable after create).
        Labels = "labels",
        /// It asks for a disk limit (fixed at create).
        DiskLimit = "disk_limit",
        /// Its working directory may not exist in a member (only the image's, `/`, `/tmp`
        /// and the home are served warm).
        Workdir = "workdir",
        /// No pool has its key (image digest, user, TTY, root filesystem).
        NoPool = "no_pool",
        /// Its pool had no ready member.
        Empty = "empty",
        /// It claimed a member that could not be bound (the member was destroyed).
        ClaimFailed = "claim_failed",
    }
}

// === impl Sandboxes ===

impl Sandboxes {
    /// The key of the pool that can serve `spec` warm (its image resolved to `digest`, with
    /// `image_workdir` as the image's `WORKDIR`), or why none can. A miss is counted.
    pub(in crate::sandboxes) fn warm_key(
        &self,
        spec: &SandboxSpec,
        digest: Option<&str>,
        image_workdir: &str,
    ) -> Option<PoolKey> {
        if self.pools.is_empty() {
            return None;
        }
        let key = match warm_fit(spec, image_workdir) {
            Err(reason) => Err(reason),
            Ok(()) => {
                let key = PoolKey {
                    image_digest: digest.unwrap_or_default().to_owned(),
                    user: spec.run_as(),
                    tty: false,
                    rootfs: spec.rootfs(),
                };
                match self.pools.by_hash(&key.hash()) {
                    Some(_) => Ok(key),
                    None => Err(MissReason::NoPool),
                }
            }
        };
        key.map_err(|reason| self.peers.metrics.pool_miss(reason.as_str()))
            .ok()
    }

    /// Counts a create whose pool (`key`) had no ready member.
    pub(in crate::sandboxes) fn warm_missed(&self, key: &PoolKey) {
        self.pools.missed(&key.hash());
        self.peers.metrics.pool_miss(MissReason::Empty.as_str());
    }

    /// Binds the member the store claimed for `sandbox` and starts its workload; on failure
    /// the member is destroyed and the sandbox is provisioned cold.
    pub(in crate::sandboxes) async fn finish_claim(
        &self,
        sandbox: Sandbox,
        member: PoolMember,
        provision: Provision,
        started: Instant,
    ) -> Result<Sandbox, SandboxError> {
        let result = self.try_finish_claim(&sandbox, &member, &provision).await;
        self.pools.wake();
        match result {
            Ok(running) => {
                let took = started.elapsed();
                self.pools.claimed(&member.pool_key, took);
                self.peers.metrics.pool_claimed(took);
                Ok(running)
            }
            Err(error) => {
                warn!(
                    %error,
                    sandbox.id = %sandbox.id,
                    "A warm claim failed; its member is destroyed and the sandbox made cold"
                );
                self.peers
                    .metrics
                    .pool_miss(MissReason::ClaimFailed.as_str());
                step("destroy_member", self.destroy_member(member.id)).await;
                // The claim may have bound the sandbox's entry; the cold path pushes its own.
                self.detach_egress(sandbox.id).await;
                self.provision(sandbox, provision).await
            }
        }
    }

    #[instrument(skip_all, fields(sandbox.id = %sandbox.id, member.id = %member.id))]
    async fn try_finish_claim(
        &self,
        sandbox: &Sandbox,
        member: &PoolMember,
        provision: &Provision,
    ) -> Result<Sandbox, SandboxError> {
        let Provision {
            secret_env,
            bound,
            policy,
            ceiling,
            image,
        } = provision;
        let id = sandbox.id;
        let (Some(subnet), Some(container)) = (sandbox.subnet, sandbox.container_id.as_deref())
        else {
            return Err(SandboxError::Internal(
                "a claimed member without a subnet or container",
            ));
        };
        let stdin = self.pools.take(member.id).ok_or(SandboxError::Internal(
            "a claimed member without its stdin attach",
        ))?;
        // 128 random bits, hex: URL-safe, as the proxy URL's userinfo needs.
        let token = Uuid::new_v4().simple().to_string();
        let placement = Placement {
            id,
            generation: sandbox.generation,
            node: &self.settings.node,
            subnet,
            proxy_token: &token,
        };
        // The CA is stored before the entry that needs it is pushed.
        let bound = async {
            let ca = match bound {
                Some(bound) => Some(
                    step(
                        "arm_inspection",
                        self.arm_inspection(sandbox, bound, policy),
                    )
                    .await?,
                ),
                None => None,
            };
            if let Some(plane) = &self.egress {
                let bind = plane.bind(id, Some(member.id), subnet, &token, policy, ceiling);
                step("bind_member", bind).await?;
            }
            Ok::<_, SandboxError>(ca)
        };
        let shape = self
            .pools
            .by_hash(&member.pool_key)
            .map(|p: Resolved| *p.spec.limits());
        let limits = async {
            if shape.as_ref() != Some(sandbox.spec.limits()) {
                let update = limits_update(sandbox.spec.limits());
                step(
                    "update_limits",
                    self.docker.update_limits(container, update),
                )
                .await?;
            }
            Ok::<(), SandboxError>(())
        };
        let (ca, ()) = tokio::try_join!(bound, limits)?;
        let frame = launch::encoded_frame(
            &sandbox.spec,
            &placement,
            image,
            secret_env.0.clone(),
            ca.as_deref(),
        )?;
        step("write_frame", stdin.send(&frame)).await?;
        step("mark_claimed", self.store.mark_member_claimed(member.id)).await?;
        let event = SandboxEvent::Started;
        Ok(step(
            "record_running",
            self.store.record_transition(id, sandbox.generation, &event),
        )
        .await?)
    }
}

/// Whether `spec` can run in a member at all.
fn warm_fit(spec: &SandboxSpec, image_workdir: &str) -> Result<(), MissReason> {
    if !spec.mounts().is_empty()
        || !spec.folders().is_empty()
        || !matches!(spec.home(), None | Some(Home::Tmpfs { .. }))
    {
        return Err(MissReason::Mounts);
    }
    if !spec.labels().is_empty() {
        return Err(MissReason::Labels);
    }
    if spec.limits().disk_mb.is_some() {
        return Err(MissReason::DiskLimit);
    }
    // Docker makes a missing working directory at create; in a member, only these exist.
    let workdir_ok = spec
        .workdir()
        .is_none_or(|dir| [image_workdir, "/", "/tmp", HOME_DIR].contains(&dir.as_str()));
    if !workdir_ok {
        return Err(MissReason::Workdir);
    }
    Ok(())
}
