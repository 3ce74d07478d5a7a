//! The reconciler: makes the store and the DinD agree after crashes, missed events and DinD
//! restarts, and enforces the absolute sandbox timeouts.
//!
//! One pass lists this node's `airlock.*`-labelled containers and networks (leaving out the
//! unclaimed pool members', which the pools reconcile), *then* reads every stored sandbox (a
//! row is always written before its objects, so this order never mistakes a sandbox being
//! created for an orphan), inspects the ended containers of live sandboxes for
//! their exit code and OOM flag, and hands the [`plan::Observation`] to the pure
//! [`plan::plan`]. The resulting steps are applied in order; each step stops at its first
//! failed action, and every state change is fenced by sandbox id and generation.
//!
//! It runs once at start (before the API serves, so every `creating`/`stopping` row is
//! abandoned and taken over), then every [`ReconcileSettings::interval`]. Between full passes,
//! a cheaper timeout pass reads the store every [`ReconcileSettings::timeout_poll`] (and
//! Docker's log only for sandboxes that look idle; see [`crate::sandbox::timeouts`]).

pub mod events;
mod helpers;
pub mod plan;
pub mod retention;
mod volumes;

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tracing::{info, instrument, warn};

use crate::config::DEFAULT_RECONCILE_INTERVAL;
use crate::docker::client::listing::{ListedContainer, ListedNetwork, ListedState};
use crate::docker::spec::pool::LABEL_MEMBER;
use crate::docker::spec::{LABEL_GENERATION, LABEL_SANDBOX_ID};
use crate::docker::{DockerClient, DockerError, Removal};
use crate::metrics::{Metrics, PassKind};
use crate::sandbox::timeouts;
use crate::sandbox::EndReason;
use crate::sandbox::{SandboxEvent, SandboxId, SandboxState};
use crate::sandboxes::Activity;
use crate::store::{ListQuery, Sandbox, Scope, Store, StoreError};
pub use helpers::SweepReport;
use plan::{Action, Clock, Labelled, Observation, ObservedContainer, Phase, SandboxView, Step};

/// Default time between timeout passes.
pub const DEFAULT_TIMEOUT_POLL: Duration = Duration::from_secs(1);
/// Default age after which a `creating` or `stopping` sandbox counts as abandoned.
pub const DEFAULT_IN_FLIGHT_DEADLINE: Duration = Duration::from_secs(120);
/// Default age after which a sampler or files helper counts as left behind (each lives for
/// one request).
pub const DEFAULT_HELPER_GRACE: Duration = Duration::from_secs(600);

/// How the reconciler runs.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// This node's name (the `airlock.node` label value).
    pub node: String,
    /// Time between SIGTERM and SIGKILL when it stops a container.
    pub stop_grace: Duration,
    /// Time between full passes.
    pub interval: Duration,
    /// Time between timeout passes.
    pub timeout_poll: Duration,
    /// Age after which a `creating`/`stopping` sandbox is taken over by a periodic pass.
    pub in_flight_deadline: Duration,
    /// Age after which a sampler or files helper is removed as a leftover.
    pub helper_grace: Duration,
}

/// Which pass runs: it decides which in-flight sandboxes may be taken over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// At start, before serving: nothing is in flight, so everything is taken over.
    Startup,
    /// While serving: only sandboxes older than the in-flight deadline.
    Periodic,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Steps planned.
    pub steps: usize,
    /// Actions applied.
    pub applied: usize,
    /// Steps abandoned at a failed action.
    pub failed: usize,
}

/// Why a pass could not observe.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// The sandbox moved on after the pass observed it (its container started meanwhile);
    /// the rest of its step is skipped and the next pass decides.
    #[error("the sandbox changed after it was observed")]
    Superseded,
}

/// Runs passes over one store and one node.
#[derive(Clone, Debug)]
pub struct Reconciler {
    store: Store,
    docker: DockerClient,
    settings: ReconcileSettings,
    activity: Activity,
    metrics: Metrics,
}

// === impl ReconcileSettings ===

impl ReconcileSettings {
    /// The defaults on `node` with `stop_grace`.
    pub fn new(node: &str, stop_grace: Duration) -> Self {
        Self {
            node: node.to_owned(),
            stop_grace,
            interval: DEFAULT_RECONCILE_INTERVAL,
            timeout_poll: DEFAULT_TIMEOUT_POLL,
            in_flight_deadline: DEFAULT_IN_FLIGHT_DEADLINE,
            helper_grace: DEFAULT_HELPER_GRACE,
        }
    }
}

// === impl Reconciler ===

impl Reconciler {
    /// A reconciler over `store` and `docker`.
    pub fn new(store: Store, docker: DockerClient, settings: ReconcileSettings) -> Self {
        Self {
            store,
            docker,
            settings,
            activity: Activity::default(),
            metrics: Metrics::default(),
        }
    }

    /// Counts its passes and actions in `metrics` (served at `/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Shares `activity` (stamped by exec) with the idle-timeout check.
    pub fn with_activity(mut self, activity: Activity) -> Self {
        self.activity = activity;
        self
    }

    /// Runs periodic and timeout passes until `shutdown` completes. Errors are logged; the
    /// next pass retries.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut full = tokio::time::interval(self.settings.interval);
        let mut fast = tokio::time::interval(self.settings.timeout_poll);
        full.set_missed_tick_behavior(MissedTickBehavior::Delay);
        fast.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The start pass just ran: skip the immediate first tick.
        full.reset();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = full.tick() => self.pass_logged(Pass::Periodic).await,
                _ = fast.tick() => {
                    if let Err(error) = self.enforce_timeouts().await {
                        warn!(%error, "Timeout pass failed");
                    }
                }
            }
        }
        info!("Reconciler stopped");
    }

    /// One full pass; logs its outcome instead of returning it.
    pub async fn pass_logged(&self, pass: Pass) {
        match self.reconcile(pass).await {
            Ok(report) if report.steps > 0 => info!(
                reconcile.steps = report.steps,
                reconcile.applied = report.applied,
                reconcile.failed = report.failed,
                "Reconcile pass applied changes"
            ),
            Ok(_) => {}
            Err(error) => warn!(%error, "Reconcile pass failed"),
        }
    }

    /// One full pass: observe, plan, apply.
    #[instrument(skip_all, fields(reconcile.pass = ?pass))]
    pub async fn reconcile(&self, pass: Pass) -> Result<PassReport, ReconcileError> {
        let now = OffsetDateTime::now_utc();
        let cutoff = match pass {
            Pass::Startup => now,
            Pass::Periodic => now - self.settings.in_flight_deadline,
        };
        if matches!(pass, Pass::Startup) {
            // No files write of this node outlives its process: its leases are stale.
            match self
                .store
                .clear_volume_write_leases(&self.settings.node)
                .await
            {
                Ok(0) => {}
                Ok(cleared) => info!(cleared, "Cleared stale volume write leases"),
                Err(error) => warn!(%error, "Could not clear volume write leases"),
            }
        }
        let observation = self.observe().await?;
        let steps = plan::plan(&observation, Clock { now, cutoff });
        let report = self.apply(steps).await;
        if let Err(error) = self.sweep_volumes().await {
            warn!(%error, "Volume sweep failed");
        }
        match self.sweep_helpers().await {
            Ok(swept) if swept != SweepReport::default() => info!(
                reconcile.helpers = swept.helpers,
                reconcile.trust_volumes = swept.trust_volumes,
                "Reconcile pass removed leftover helpers"
            ),
            Ok(_) => {}
            Err(error) => warn!(%error, "Helper sweep failed"),
        }
        self.metrics
            .reconcile_pass(PassKind::Full, report.applied, report.failed);
        Ok(report)
    }

    /// Ends every running sandbox whose absolute or idle timeout passed. It reads the store,
    /// and Docker's log only for a sandbox that looks idle (see [`crate::sandbox::timeouts`]).
    pub async fn enforce_timeouts(&self) -> Result<PassReport, ReconcileError> {
        let now = OffsetDateTime::now_utc();
        let running = self.sandboxes(Some(SandboxState::Running)).await?;
        self.activity
            .retain(&running.iter().map(|s| s.id).collect());
        let mut steps = Vec::new();
        for sandbox in &running {
            let reason = match timeouts::expired(view(sandbox).deadline, now) {
                Some(reason) => Some(reason),
                None => self.idle(sandbox, now).await,
            };
            if let Some(reason) = reason {
                let mut actions = vec![Action::RecordEnd(reason)];
                actions.extend(sandbox.container_id.clone().map(Action::StopContainer));
                steps.push(Step {
                    sandbox: Some((sandbox.id, sandbox.generation)),
                    actions,
                });
            }
        }
        let report = self.apply(steps).await;
        if let Err(error) = self.sweep_volumes().await {
            warn!(%error, "Volume sweep failed");
        }
        self.metrics
            .reconcile_pass(PassKind::Timeout, report.applied, report.failed);
        Ok(report)
    }

    /// `idle` when the sandbox has an idle timeout and neither exec nor its log shows activity
    /// within it. Docker is asked only once the in-memory activity says the time is up.
    async fn idle(&self, sandbox: &Sandbox, now: OffsetDateTime) -> Option<EndReason> {
        let idle = sandbox.spec.idle_timeout()?;
        let seen = self.activity.get(sandbox.id);
        let last = timeouts::last_activity(sandbox.created_at, seen, self.activity.floor());
        timeouts::idle_expired(last, Some(idle), now)?;
        let container = sandbox.container_id.as_deref()?;
        match self.docker.last_log_at(container, last).await {
            Ok(Some(at)) if at > last => {
                self.activity.touch(sandbox.id, at);
                timeouts::idle_expired(at, Some(idle), now)
            }
            Ok(_) => Some(EndReason::Idle),
            Err(error) => {
                warn!(%error, sandbox.id = %sandbox.id, "Idle check could not read the log");
                None
            }
        }
    }

    async fn observe(&self) -> Result<Observation, ReconcileError> {
        let node = &self.settings.node;
        // Docker first, then the store: see the module docs.
        let mut containers = self.docker.node_containers(node).await?;
        let mut networks = self.docker.node_networks(node).await?;
        let sandboxes = self.sandboxes(None).await?;
        // A pool member's objects carry the id of the sandbox it becomes at claim; until a
        // sandbox row has that id, they are the pools' to reconcile, not orphans.
        let known: std::collections::HashSet<String> =
            sandboxes.iter().map(|s| s.id.to_string()).collect();
        let unclaimed = |labels: &std::collections::HashMap<String, String>| {
            labels.contains_key(LABEL_MEMBER)
                && !labels
                    .get(LABEL_SANDBOX_ID)
                    .is_some_and(|id| known.contains(id))
        };
        containers.retain(|c| !unclaimed(&c.labels));
        networks.retain(|n| !unclaimed(&n.labels));
        let live: std::collections::HashSet<SandboxId> = sandboxes
            .iter()
            .filter(|s| !s.state.is_terminal())
            .map(|s| s.id)
            .collect();
        let mut observed = Vec::with_capacity(containers.len());
        for container in containers {
            observed.push(self.observe_container(container, &live).await?);
        }
        Ok(Observation {
            sandboxes: sandboxes.iter().map(view).collect(),
            containers: observed,
            networks: networks.into_iter().map(network).collect(),
        })
    }

    /// Inspects an ended container only when its sandbox is live (its end must be recorded).
    async fn observe_container(
        &self,
        container: ListedContainer,
        live: &std::collections::HashSet<SandboxId>,
    ) -> Result<ObservedContainer, DockerError> {
        let object = labelled(container.id, &container.labels);
        let phase = match container.state {
            ListedState::Created => Phase::Created,
            ListedState::Running => Phase::Running,
            ListedState::Ended if object.sandbox.is_some_and(|id| live.contains(&id)) => {
                match self.docker.inspect(&object.id).await? {
                    Some(status) if status.running => Phase::Running,
                    Some(status) => Phase::Ended {
                        code: status.exit_code,
                        oom: status.oom_killed,
                    },
                    None => Phase::Ended {
                        code: None,
                        oom: false,
                    },
                }
            }
            ListedState::Ended => Phase::Ended {
                code: None,
                oom: false,
            },
        };
        Ok(ObservedContainer { object, phase })
    }

    /// Every stored sandbox (optionally in one state), page by page.
    async fn sandboxes(&self, state: Option<SandboxState>) -> Result<Vec<Sandbox>, StoreError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let query = ListQuery {
                state,
                after,
                limit: ListQuery::MAX_LIMIT,
            };
            let page = self.store.list_every_sandbox(query).await?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    async fn apply(&self, steps: Vec<Step>) -> PassReport {
        let mut report = PassReport {
            steps: steps.len(),
            ..PassReport::default()
        };
        for step in steps {
            for action in &step.actions {
                match self.act(step.sandbox, action).await {
                    Ok(()) => report.applied += 1,
                    Err(ReconcileError::Superseded) => break,
                    Err(error) => {
                        let id = step.sandbox.map(|(id, _)| id.to_string());
                        warn!(%error, sandbox.id = id.as_deref().unwrap_or("-"), action = ?action,
                            "Reconcile action failed; skipping the rest of its step");
                        report.failed += 1;
                        break;
                    }
                }
            }
        }
        report
    }

    async fn act(
        &self,
        sandbox: Option<(SandboxId, i64)>,
        action: &Action,
    ) -> Result<(), ReconcileError> {
        match sandbox {
            Some((id, generation)) => {
                info!(sandbox.id = %id, sandbox.generation = generation, action = ?action,
                    "Reconcile action");
            }
            None => info!(action = ?action, "Reconcile action on an orphan"),
        }
        match (action, sandbox) {
            (Action::StopContainer(c), _) => self.docker.stop(c, self.settings.stop_grace).await?,
            (Action::RemoveContainer(c), _) => {
                self.docker.remove_container(c, Removal::Force).await?;
            }
            (Action::RemoveNetwork(n), _) => self.docker.remove_network(n).await?,
            (Action::RecordEnd(EndReason::Lost), Some((id, _))) if self.runs_now(id).await? => {
                return Err(ReconcileError::Superseded);
            }
            (Action::RecordEnd(reason), Some((id, generation))) => {
                let reason = self.init_end(id, reason).await?;
                let event = SandboxEvent::Ended(reason);
                self.store.record_transition(id, generation, &event).await?;
            }
            (Action::ReleaseSubnet, Some((id, generation))) => {
                self.store.release_ended_subnet(id, generation).await?;
            }
            (Action::DeleteRow, Some((id, _))) => {
                self.store.finish_delete(id).await?;
            }
            // The planner attaches fenced actions to a sandbox; one without is skipped.
            (Action::RecordEnd(_), None) | (Action::ReleaseSubnet | Action::DeleteRow, None) => {}
        }
        Ok(())
    }
}

impl Reconciler {
    /// `reason` as recorded: an exit with one of `airlock-init`'s own statuses reads init's
    /// line from the sandbox's container, as the event watcher does (`failed` with an
    /// `init_*` message when init wrote it).
    pub(super) async fn init_end(
        &self,
        id: SandboxId,
        reason: &EndReason,
    ) -> Result<EndReason, ReconcileError> {
        let EndReason::Exited { code } = reason else {
            return Ok(reason.clone());
        };
        let sandbox = self.store.get_sandbox(Scope::All, id).await?;
        let Some(container) = sandbox.and_then(|s| s.container_id) else {
            return Ok(reason.clone());
        };
        let init = self.docker.init_end(&container, Some(*code), false).await;
        Ok(init.unwrap_or_else(|| reason.clone()))
    }

    /// Whether the sandbox's recorded container is running right now. A pass lists Docker
    /// before it reads the store, so a sandbox whose create finished in between looks as if
    /// its container vanished; this re-check keeps it from being marked `lost`.
    async fn runs_now(&self, id: SandboxId) -> Result<bool, ReconcileError> {
        let Some(sandbox) = self.store.get_sandbox(Scope::All, id).await? else {
            return Ok(false);
        };
        let Some(container) = sandbox.container_id.as_deref() else {
            return Ok(false);
        };
        Ok(self
            .docker
            .inspect(container)
            .await?
            .is_some_and(|status| status.running))
    }
}

/// The planner's view of a stored sandbox.
fn view(sandbox: &Sandbox) -> SandboxView {
    SandboxView {
        id: sandbox.id,
        generation: sandbox.generation,
        state: sandbox.state,
        desired: sandbox.desired,
        container_id: sandbox.container_id.clone(),
        has_subnet: sandbox.subnet.is_some(),
        updated_at: sandbox.updated_at,
        deadline: timeouts::deadline(sandbox.created_at, sandbox.spec.timeout()),
    }
}

fn labelled(id: String, labels: &std::collections::HashMap<String, String>) -> Labelled {
    Labelled {
        id,
        sandbox: labels.get(LABEL_SANDBOX_ID).and_then(|v| v.parse().ok()),
        generation: labels.get(LABEL_GENERATION).and_then(|v| v.parse().ok()),
    }
}

fn network(listed: ListedNetwork) -> Labelled {
    labelled(listed.id, &listed.labels)
}

#[cfg(test)]
mod tests;
