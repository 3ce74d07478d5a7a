//! Provisioning a reserved sandbox (its /29, network, proxy entry, container, start through
//! `airlock-init`: attach its stdin, start, write the binding frame) and undoing it: after a
//! failed step, after a failed required self-test, and at delete.
//!
//! Invariant: a create that fails at any step leaves nothing in Docker and no subnet
//! allocated, and the sandbox ends `failed` with reason `error`.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tracing::{debug, instrument, warn, Instrument};
use uuid::Uuid;

use super::create::SecretEnv;
use super::credentials::Bound;
use super::launch::{self, ImageDefaults};
use super::{SandboxError, Sandboxes};
use crate::docker::spec::{self, Placement};
use crate::egress::EgressPolicy;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::{names, EndReason, SandboxEvent, SandboxId};
use crate::store::{Sandbox, StoreError};

/// How long a create waits for /29s that deletes are releasing when none is free.
const SUBNET_RELEASE_WAIT: Duration = Duration::from_secs(5);
/// How often it looks again meanwhile.
const SUBNET_RELEASE_POLL: Duration = Duration::from_millis(25);

/// Runs one create step under a `create_step` span and logs how long it took at DEBUG
/// (`create.step`, `elapsed_us`); `bench/controller` summarises these lines per step. Boxed, so
/// the create future does not grow by every step's state.
pub(super) fn step<'a, T: 'a>(
    name: &'static str,
    fut: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(async move {
        let started = Instant::now();
        let out = fut
            .instrument(tracing::debug_span!("create_step", create.step = name))
            .await;
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        debug!(create.step = name, elapsed_us, "Create step done");
        out
    })
}

/// The end message of a sandbox whose create failed (the detail goes to the log).
const CREATE_FAILED: &str = "the sandbox could not be created; see the controller log";

/// What provisioning a reserved sandbox needs besides its row.
#[derive(Debug)]
pub(super) struct Provision {
    /// `NAME=value` entries resolved from the owner's secrets.
    pub(super) secret_env: SecretEnv,
    /// Its bound credentials, when it has any.
    pub(super) bound: Option<Bound>,
    /// Its effective egress policy.
    pub(super) policy: EgressPolicy,
    /// The label of the ceiling the policy was checked against.
    pub(super) ceiling: String,
    /// The image's argv and working directory defaults.
    pub(super) image: ImageDefaults,
}

// === impl Sandboxes ===

impl Sandboxes {
    /// Makes the network and the container and starts it; on failure, rolls back.
    pub(super) async fn provision(
        &self,
        sandbox: Sandbox,
        provision: Provision,
    ) -> Result<Sandbox, SandboxError> {
        match self.try_provision(&sandbox, provision).await {
            Ok(running) => Ok(running),
            Err(error) => {
                self.roll_back(&sandbox).await;
                Err(error)
            }
        }
    }

    #[instrument(skip_all, fields(sandbox.id = %sandbox.id))]
    async fn try_provision(
        &self,
        sandbox: &Sandbox,
        provision: Provision,
    ) -> Result<Sandbox, SandboxError> {
        let Provision {
            secret_env,
            bound,
            policy,
            ceiling,
            image,
        } = provision;
        let id = sandbox.id;
        let subnet = step("allocate_subnet", self.allocate_subnet(id)).await?;
        // 128 random bits, hex: URL-safe, as the proxy URL's userinfo needs.
        let token = Uuid::new_v4().simple().to_string();
        let placement = Placement {
            id,
            generation: sandbox.generation,
            node: &self.settings.node,
            subnet,
            proxy_token: &token,
        };
        // Independent, so concurrent: the network, the runtime volume (filled once per node),
        // and the CA (stored before the entry that needs it is pushed, which waits for all).
        let network = async {
            let runtime = step(
                "runtime_volume",
                self.runtime.volume(
                    &self.docker,
                    &self.settings.node,
                    sandbox.spec.image().as_str(),
                ),
            );
            let network = step(
                "create_network",
                self.docker.create_network(spec::network_body(&placement)),
            );
            let (runtime, network) = tokio::join!(runtime, network);
            network?;
            runtime
        };
        let armed = async {
            match &bound {
                Some(bound) => step(
                    "arm_inspection",
                    self.arm_inspection(sandbox, bound, &policy),
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        };
        let (runtime, ca) = tokio::join!(network, armed);
        let runtime = runtime?;
        let ca = ca?;
        let frame = launch::encoded_frame(
            &sandbox.spec,
            &placement,
            &image,
            secret_env.0,
            ca.as_deref(),
        )?;
        // The proxy joins the network while the container is made; both finish (neither is
        // cancelled half-way, so the rollback sees every object) before the start.
        let attached = async {
            if let Some(plane) = &self.egress {
                step(
                    "attach_proxy",
                    plane.attach(id, subnet, &token, &policy, &ceiling),
                )
                .await?;
            }
            Ok::<(), SandboxError>(())
        };
        let container = self.make_container(sandbox, &placement, runtime);
        let (attached, container) = tokio::join!(attached, container);
        attached?;
        let container = container?;
        // Init blocks on stdin until the frame; the attach comes first so nothing is lost.
        let stdin = step("attach", self.docker.attach_stdin(&container)).await?;
        step("start", self.docker.start(&container)).await?;
        step("write_frame", stdin.send(&frame)).await?;
        let event = SandboxEvent::Started;
        Ok(step(
            "record_running",
            self.store.record_transition(id, sandbox.generation, &event),
        )
        .await?)
    }

    /// The sandbox's container, created with its volume roots owned, not started; `runtime`
    /// is the runtime volume's hash.
    async fn make_container(
        &self,
        sandbox: &Sandbox,
        placement: &Placement<'_>,
        runtime: &str,
    ) -> Result<String, SandboxError> {
        let id = sandbox.id;
        self.own_volume_roots(id, &sandbox.spec).await?;
        let body = spec::container_body(&sandbox.spec, placement, runtime);
        let name = names::container_name(id);
        let container = step(
            "create_container",
            self.docker.create_container(&name, body),
        )
        .await?;
        step(
            "store_container",
            self.store.set_container(id, sandbox.generation, &container),
        )
        .await?;
        Ok(container)
    }

    /// Undoes a failed create step by step; each failure is logged and the rest still runs.
    /// The cause itself is returned to the caller, which reports it.
    async fn roll_back(&self, sandbox: &Sandbox) {
        warn!(sandbox.id = %sandbox.id, "Sandbox create failed; rolling back");
        self.release(sandbox.id).await;
        let reason = EndReason::Error {
            message: Some(CREATE_FAILED.to_owned()),
        };
        let event = SandboxEvent::Ended(reason);
        if let Err(error) = self.transition(sandbox, &event).await {
            warn!(%error, sandbox.id = %sandbox.id, "Rollback could not mark the sandbox failed");
        }
    }

    /// Fails a sandbox right after its create, the way a failed create does: everything it
    /// holds released (each failure logged), then it ends `failed` with reason `error` and
    /// `message`.
    pub(super) async fn fail_created(
        &self,
        sandbox: &Sandbox,
        message: &str,
    ) -> Result<Sandbox, SandboxError> {
        self.release(sandbox.id).await;
        let reason = EndReason::Error {
            message: Some(message.to_owned()),
        };
        self.finish(sandbox, reason).await
    }

    /// Releases what a failed sandbox holds: its proxy entry and its Docker objects (as a
    /// delete removes them), then its subnet. Each failure is logged and the rest still runs.
    async fn release(&self, id: SandboxId) {
        // Boxed: the teardown's future is large, and every create's holds it.
        if let Err(error) = Box::pin(self.tear_down(id)).await {
            warn!(%error, sandbox.id = %id, "A failed sandbox's Docker objects were not removed");
        }
        if let Err(error) = self.store.release_subnet(id).await {
            warn!(%error, sandbox.id = %id, "A failed sandbox's subnet was not released");
        }
    }

    /// The sandbox's /29. When every one is taken but some still belong to deletes finishing
    /// in the background, waits for those (at most [`SUBNET_RELEASE_WAIT`]) rather than
    /// refusing a create that a delete just made room for.
    async fn allocate_subnet(&self, id: SandboxId) -> Result<SandboxSubnet, StoreError> {
        let deadline = Instant::now() + SUBNET_RELEASE_WAIT;
        // A release can finish between the failed allocation and the count of releasing
        // /29s: seeing none releasing earns one more allocation before the refusal.
        let mut last_try = false;
        loop {
            let (pools, cap) = (&self.settings.pools, self.settings.subnets_per_user);
            match self.store.allocate_subnet(id, pools, cap).await {
                Err(StoreError::SubnetsExhausted) if !last_try && Instant::now() < deadline => {
                    if self.store.subnets_releasing().await? > 0 {
                        tokio::time::sleep(SUBNET_RELEASE_POLL).await;
                    } else {
                        last_try = true;
                    }
                }
                allocated => return allocated,
            }
        }
    }

    /// Removes the sandbox's proxy entry; a failure is logged (the entry dies with the proxy
    /// process at the latest, and is never re-pushed for an ended sandbox).
    pub(super) async fn detach_egress(&self, id: SandboxId) {
        if let Some(plane) = &self.egress {
            if let Err(error) = plane.detach(id).await {
                warn!(%error, sandbox.id = %id, "Could not remove the sandbox's egress entry");
            }
        }
    }
}
