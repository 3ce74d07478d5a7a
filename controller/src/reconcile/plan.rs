//! The pure planner: from the store's sandboxes and Docker's `airlock.*`-labelled objects,
//! the steps that make them agree. No I/O; table-tested in `tests.rs`.
//!
//! Invariants:
//! - Every object is matched to a sandbox by id **and** generation (its labels). An object of
//!   an older generation is stale and removed; an object of a newer generation than the store
//!   knows is never touched, so a stale pass cannot delete a newer incarnation.
//! - An object whose sandbox is missing from the store is an orphan and removed. The executor
//!   lists Docker *before* reading the store, and a row is always written before its objects,
//!   so a sandbox being created right now is never mistaken for an orphan.
//! - `creating` and `stopping` sandboxes touched after the cutoff are left to the request that
//!   is working on them; at start the cutoff is "now", so every one of them is abandoned.
//! - Every state change is a fenced [`Action::RecordEnd`]; a step
//!   stops at its first failed action, so a sandbox that moved on is left alone.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::sandbox::timeouts;
use crate::sandbox::{DesiredState, EndReason, SandboxId, SandboxState, SIGKILL_EXIT};

/// The exit code Docker gives containers that were running when their daemon went away; after
/// a DinD restart every sandbox container comes back `Exited (255)`.
pub const DAEMON_RESTART_EXIT: i64 = 255;
/// The end message of a sandbox whose create was interrupted.
pub const CREATE_ABANDONED: &str = "the create was interrupted (controller restart or deadline)";

/// What the planner needs to know about one stored sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxView {
    /// Its id.
    pub id: SandboxId,
    /// Its current generation.
    pub generation: i64,
    /// Its observed state.
    pub state: SandboxState,
    /// What should exist.
    pub desired: DesiredState,
    /// The container the store recorded, if any.
    pub container_id: Option<String>,
    /// Whether it holds a subnet allocation.
    pub has_subnet: bool,
    /// When the row last changed (the `creating`/`stopping` cutoff compares with it).
    pub updated_at: OffsetDateTime,
    /// When its absolute timeout passes.
    pub deadline: OffsetDateTime,
}

/// How a listed container's process stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, never started.
    Created,
    /// Running (or paused or restarting).
    Running,
    /// Ended; the exit code and OOM flag come from an inspect (`None` when not inspected).
    Ended {
        /// The exit code.
        code: Option<i64>,
        /// Whether the OOM killer ended it.
        oom: bool,
    },
}

/// A Docker object carrying this node's `airlock.*` labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    /// Its Docker id.
    pub id: String,
    /// The sandbox label, when it parses.
    pub sandbox: Option<SandboxId>,
    /// The generation label, when it parses.
    pub generation: Option<i64>,
}

/// A labelled container and its phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    /// Id and labels.
    pub object: Labelled,
    /// Its process.
    pub phase: Phase,
}

/// Everything one pass looked at.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// Every stored sandbox.
    pub sandboxes: Vec<SandboxView>,
    /// This node's labelled containers.
    pub containers: Vec<ObservedContainer>,
    /// This node's labelled networks.
    pub networks: Vec<Labelled>,
}

/// When the pass runs, and which in-flight work it may take over.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Now.
    pub now: OffsetDateTime,
    /// `creating`/`stopping` sandboxes last touched before this are abandoned.
    pub cutoff: OffsetDateTime,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Record the end, fenced by generation.
    RecordEnd(EndReason),
    /// SIGTERM, the grace period, SIGKILL.
    StopContainer(String),
    /// Force-remove a container by id.
    RemoveContainer(String),
    /// Remove a network by id.
    RemoveNetwork(String),
    /// Release the subnet of an ended (`failed`/`lost`) sandbox, fenced by generation.
    ReleaseSubnet,
    /// Remove the row of a sandbox whose delete began (its teardown was interrupted, or is
    /// still finishing in the background), once its objects are gone.
    DeleteRow,
}

/// Actions applied in order; the executor abandons the rest at the first failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The sandbox (id, generation) the fenced actions apply to; `None` for orphans.
    pub sandbox: Option<(SandboxId, i64)>,
    /// What to do.
    pub actions: Vec<Action>,
}

/// The objects of one sandbox's current generation.
#[derive(Debug, Default)]
struct Owned<'a> {
    containers: Vec<&'a ObservedContainer>,
    networks: Vec<&'a Labelled>,
}

/// The steps that bring Docker and the store into agreement.
pub fn plan(observation: &Observation, clock: Clock) -> Vec<Step> {
    let known: HashMap<SandboxId, &SandboxView> =
        observation.sandboxes.iter().map(|s| (s.id, s)).collect();
    let mut owned: HashMap<SandboxId, Owned<'_>> = HashMap::new();
    let mut orphan_containers = Vec::new();
    let mut orphan_networks = Vec::new();
    for container in &observation.containers {
        match classify(&container.object, &known) {
            Fit::Current(id) => owned.entry(id).or_default().containers.push(container),
            Fit::Orphan => {
                orphan_containers.push(Action::RemoveContainer(container.object.id.clone()))
            }
            Fit::Newer => {}
        }
    }
    for network in &observation.networks {
        match classify(network, &known) {
            Fit::Current(id) => owned.entry(id).or_default().networks.push(network),
            Fit::Orphan => orphan_networks.push(Action::RemoveNetwork(network.id.clone())),
            Fit::Newer => {}
        }
    }
    let mut steps: Vec<Step> = observation
        .sandboxes
        .iter()
        .filter_map(|sandbox| {
            let objects = owned.remove(&sandbox.id).unwrap_or_default();
            let actions = plan_sandbox(sandbox, &objects, clock);
            (!actions.is_empty()).then_some(Step {
                sandbox: Some((sandbox.id, sandbox.generation)),
                actions,
            })
        })
        .collect();
    // Containers first: a network with a container attached cannot be removed.
    for actions in [orphan_containers, orphan_networks] {
        steps.extend(actions.into_iter().map(|action| Step {
            sandbox: None,
            actions: vec![action],
        }));
    }
    steps
}

/// How a labelled object relates to the store.
enum Fit {
    /// It belongs to this sandbox's current generation.
    Current(SandboxId),
    /// No live sandbox owns it (unknown id, bad labels, or an older generation).
    Orphan,
    /// It claims a generation newer than the store's: leave it alone.
    Newer,
}

fn classify(object: &Labelled, known: &HashMap<SandboxId, &SandboxView>) -> Fit {
    let (Some(id), Some(generation)) = (object.sandbox, object.generation) else {
        return Fit::Orphan;
    };
    match known.get(&id) {
        None => Fit::Orphan,
        Some(sandbox) if generation < sandbox.generation => Fit::Orphan,
        Some(sandbox) if generation > sandbox.generation => Fit::Newer,
        Some(_) => Fit::Current(id),
    }
}

fn plan_sandbox(sandbox: &SandboxView, objects: &Owned<'_>, clock: Clock) -> Vec<Action> {
    if sandbox.desired == DesiredState::Deleted {
        let mut actions = removals(objects);
        actions.push(Action::DeleteRow);
        return actions;
    }
    let container = main_container(sandbox, objects);
    let in_flight = sandbox.updated_at >= clock.cutoff;
    match sandbox.state {
        SandboxState::Creating if in_flight => Vec::new(),
        SandboxState::Creating => match container.map(|c| c.phase) {
            Some(phase @ Phase::Ended { .. }) => ended(sandbox, phase, objects),
            // A running container is not adopted: only the create knows whether init got its
            // frame, so without it the workload may never start.
            Some(Phase::Running | Phase::Created) | None => {
                let reason = EndReason::Error {
                    message: Some(CREATE_ABANDONED.to_owned()),
                };
                with_cleanup(vec![Action::RecordEnd(reason)], objects)
            }
        },
        SandboxState::Stopping if in_flight => Vec::new(),
        SandboxState::Running | SandboxState::Stopping => match container {
            None => with_cleanup(vec![Action::RecordEnd(EndReason::Lost)], objects),
            Some(c) => live(sandbox, c, objects, clock),
        },
        SandboxState::Exited => container
            .filter(|c| c.phase == Phase::Running)
            .map(|c| vec![Action::StopContainer(c.object.id.clone())])
            .unwrap_or_default(),
        SandboxState::Failed | SandboxState::Lost => cleanup(sandbox, objects),
    }
}

/// A running or stopping sandbox whose container exists.
fn live(
    sandbox: &SandboxView,
    container: &ObservedContainer,
    objects: &Owned<'_>,
    clock: Clock,
) -> Vec<Action> {
    let id = container.object.id.clone();
    match container.phase {
        // An interrupted stop: finish it.
        Phase::Running if sandbox.state == SandboxState::Stopping => vec![
            Action::StopContainer(id),
            Action::RecordEnd(EndReason::Stopped),
        ],
        Phase::Running => timeouts::expired(sandbox.deadline, clock.now)
            .map(|reason| vec![Action::RecordEnd(reason), Action::StopContainer(id)])
            .unwrap_or_default(),
        Phase::Created => with_cleanup(vec![Action::RecordEnd(EndReason::Lost)], objects),
        phase @ Phase::Ended { .. } => ended(sandbox, phase, objects),
    }
}

/// A container that ended while nobody watched: record how.
fn ended(sandbox: &SandboxView, phase: Phase, objects: &Owned<'_>) -> Vec<Action> {
    let Phase::Ended { code, oom } = phase else {
        return Vec::new();
    };
    let stop_asked =
        sandbox.state == SandboxState::Stopping || sandbox.desired == DesiredState::Stopped;
    let reason = match code {
        _ if oom => EndReason::Oom,
        Some(DAEMON_RESTART_EXIT) | None => EndReason::Lost,
        Some(_) if stop_asked => EndReason::Stopped,
        // SIGKILL without a stop request: see `EndReason::Killed`.
        Some(SIGKILL_EXIT) => EndReason::Killed,
        Some(code) => EndReason::Exited { code },
    };
    if reason == EndReason::Lost {
        return with_cleanup(vec![Action::RecordEnd(reason)], objects);
    }
    vec![Action::RecordEnd(reason)]
}

/// The container of the current generation: the recorded one, else the first labelled one.
fn main_container<'a>(sandbox: &SandboxView, objects: &Owned<'a>) -> Option<&'a ObservedContainer> {
    let recorded = sandbox.container_id.as_deref();
    objects
        .containers
        .iter()
        .find(|c| Some(c.object.id.as_str()) == recorded)
        .or_else(|| objects.containers.first())
        .copied()
}

fn with_cleanup(mut first: Vec<Action>, objects: &Owned<'_>) -> Vec<Action> {
    first.extend(removals(objects));
    first.push(Action::ReleaseSubnet);
    first
}

/// An ended (`failed`/`lost`) sandbox holds nothing: remove what is left.
fn cleanup(sandbox: &SandboxView, objects: &Owned<'_>) -> Vec<Action> {
    let mut actions = removals(objects);
    if sandbox.has_subnet {
        actions.push(Action::ReleaseSubnet);
    }
    actions
}

fn removals(objects: &Owned<'_>) -> Vec<Action> {
    let containers = objects
        .containers
        .iter()
        .map(|c| Action::RemoveContainer(c.object.id.clone()));
    let networks = objects
        .networks
        .iter()
        .map(|n| Action::RemoveNetwork(n.id.clone()));
    containers.chain(networks).collect()
}
