//! Table tests of the pure planner.

use time::OffsetDateTime;

use super::plan::*;
use crate::sandbox::{DesiredState, EndReason, SandboxId, SandboxState};

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000 + secs)
}

/// A sandbox at generation 2 with container `c`, touched at t(0), deadline t(100).
fn sandbox(id: SandboxId, state: SandboxState) -> SandboxView {
    SandboxView {
        id,
        generation: 2,
        state,
        desired: DesiredState::Running,
        container_id: Some("c".to_owned()),
        has_subnet: true,
        updated_at: t(0),
        deadline: t(100),
    }
}

fn object(id: &str, sandbox: Option<SandboxId>, generation: i64) -> Labelled {
    Labelled {
        id: id.to_owned(),
        sandbox,
        generation: Some(generation),
    }
}

fn container(id: &str, sandbox: SandboxId, generation: i64, phase: Phase) -> ObservedContainer {
    ObservedContainer {
        object: object(id, Some(sandbox), generation),
        phase,
    }
}

fn ended(code: i64) -> Phase {
    Phase::Ended {
        code: Some(code),
        oom: false,
    }
}

/// Periodic pass at t(10), taking over what was touched before t(5).
const PERIODIC: (i64, i64) = (10, 5);
/// Start pass at t(10): everything in flight is taken over.
const STARTUP: (i64, i64) = (10, 10);
/// A periodic pass after the deadline.
const LATE: (i64, i64) = (200, 195);

fn run(observation: &Observation, (now, cutoff): (i64, i64)) -> Vec<Step> {
    plan(
        observation,
        Clock {
            now: t(now),
            cutoff: t(cutoff),
        },
    )
}

fn cleanup(first: Action) -> Vec<Action> {
    vec![
        first,
        Action::RemoveContainer("c".to_owned()),
        Action::RemoveNetwork("n".to_owned()),
        Action::ReleaseSubnet,
    ]
}

/// (name, state, desired, container phase or None, clock, expected actions)
type Row = (
    &'static str,
    SandboxState,
    DesiredState,
    Option<Phase>,
    (i64, i64),
    Vec<Action>,
);

#[test]
fn one_sandbox_table() {
    use SandboxState::*;
    let lost = || cleanup(Action::RecordEnd(EndReason::Lost));
    let abandoned = || {
        cleanup(Action::RecordEnd(EndReason::Error {
            message: Some(CREATE_ABANDONED.to_owned()),
        }))
    };
    let oom = Phase::Ended {
        code: Some(137),
        oom: true,
    };
    let rows: Vec<Row> = vec![
        (
            "running and running: adopt",
            Running,
            DesiredState::Running,
            Some(Phase::Running),
            PERIODIC,
            vec![],
        ),
        (
            "running, container vanished: lost",
            Running,
            DesiredState::Running,
            None,
            PERIODIC,
            vec![
                Action::RecordEnd(EndReason::Lost),
                Action::RemoveNetwork("n".to_owned()),
                Action::ReleaseSubnet,
            ],
        ),
        (
            "running, Exited (255) after a DinD restart: lost",
            Running,
            DesiredState::Running,
            Some(ended(255)),
            PERIODIC,
            lost(),
        ),
        (
            "running, exited 3 while down: exited(3)",
            Running,
            DesiredState::Running,
            Some(ended(3)),
            PERIODIC,
            vec![Action::RecordEnd(EndReason::Exited { code: 3 })],
        ),
        (
            "running, SIGKILLed from outside while down: killed",
            Running,
            DesiredState::Running,
            Some(ended(137)),
            PERIODIC,
            vec![Action::RecordEnd(EndReason::Killed)],
        ),
        (
            "running, OOM-killed while down: oom",
            Running,
            DesiredState::Running,
            Some(oom),
            PERIODIC,
            vec![Action::RecordEnd(EndReason::Oom)],
        ),
        (
            "running, ended after a stop request: stopped",
            Running,
            DesiredState::Stopped,
            Some(ended(143)),
            PERIODIC,
            vec![Action::RecordEnd(EndReason::Stopped)],
        ),
        (
            "running, never started: lost",
            Running,
            DesiredState::Running,
            Some(Phase::Created),
            PERIODIC,
            lost(),
        ),
        (
            "running past its deadline: timeout, then stop",
            Running,
            DesiredState::Running,
            Some(Phase::Running),
            LATE,
            vec![
                Action::RecordEnd(EndReason::Timeout),
                Action::StopContainer("c".to_owned()),
            ],
        ),
        (
            "creating, in flight: leave it",
            Creating,
            DesiredState::Running,
            None,
            (10, -5),
            vec![],
        ),
        (
            "creating at start, no container: failed + cleanup",
            Creating,
            DesiredState::Running,
            None,
            STARTUP,
            vec![
                Action::RecordEnd(EndReason::Error {
                    message: Some(CREATE_ABANDONED.to_owned()),
                }),
                Action::RemoveNetwork("n".to_owned()),
                Action::ReleaseSubnet,
            ],
        ),
        (
            "creating at start, container only created: failed",
            Creating,
            DesiredState::Running,
            Some(Phase::Created),
            STARTUP,
            abandoned(),
        ),
        (
            "creating past the deadline, running: failed (its frame may never have been written)",
            Creating,
            DesiredState::Running,
            Some(Phase::Running),
            PERIODIC,
            abandoned(),
        ),
        (
            "creating at start, already exited 0: exited(0)",
            Creating,
            DesiredState::Running,
            Some(ended(0)),
            STARTUP,
            vec![Action::RecordEnd(EndReason::Exited { code: 0 })],
        ),
        (
            "stopping at start, still running: finish the stop",
            Stopping,
            DesiredState::Stopped,
            Some(Phase::Running),
            STARTUP,
            vec![
                Action::StopContainer("c".to_owned()),
                Action::RecordEnd(EndReason::Stopped),
            ],
        ),
        (
            "stopping in flight: leave it",
            Stopping,
            DesiredState::Stopped,
            Some(Phase::Running),
            (10, -5),
            vec![],
        ),
        (
            "stopping at start, ended: stopped",
            Stopping,
            DesiredState::Stopped,
            Some(ended(0)),
            STARTUP,
            vec![Action::RecordEnd(EndReason::Stopped)],
        ),
        (
            "exited, container still runs: stop it",
            Exited,
            DesiredState::Running,
            Some(Phase::Running),
            PERIODIC,
            vec![Action::StopContainer("c".to_owned())],
        ),
        (
            "exited, container ended: keep it for logs",
            Exited,
            DesiredState::Running,
            Some(ended(0)),
            PERIODIC,
            vec![],
        ),
        (
            "lost, objects left: remove them and the subnet",
            Lost,
            DesiredState::Running,
            Some(ended(255)),
            PERIODIC,
            vec![
                Action::RemoveContainer("c".to_owned()),
                Action::RemoveNetwork("n".to_owned()),
                Action::ReleaseSubnet,
            ],
        ),
        (
            "interrupted delete: finish it",
            Exited,
            DesiredState::Deleted,
            Some(ended(0)),
            PERIODIC,
            vec![
                Action::RemoveContainer("c".to_owned()),
                Action::RemoveNetwork("n".to_owned()),
                Action::DeleteRow,
            ],
        ),
    ];
    for (name, state, desired, phase, clock, expected) in rows {
        let id = SandboxId::new();
        let mut view = sandbox(id, state);
        view.desired = desired;
        let observation = Observation {
            sandboxes: vec![view],
            containers: phase
                .map(|p| container("c", id, 2, p))
                .into_iter()
                .collect(),
            networks: vec![object("n", Some(id), 2)],
        };
        let steps = run(&observation, clock);
        let actions: Vec<Action> = steps.into_iter().flat_map(|s| s.actions).collect();
        assert_eq!(actions, expected, "{name}");
    }
}

#[test]
fn failed_or_lost_sandbox_with_nothing_left_needs_nothing() {
    let id = SandboxId::new();
    let mut view = sandbox(id, SandboxState::Failed);
    view.has_subnet = false;
    let observation = Observation {
        sandboxes: vec![view],
        ..Observation::default()
    };
    assert_eq!(run(&observation, PERIODIC), vec![]);
    let mut leaked = sandbox(id, SandboxState::Lost);
    leaked.container_id = None;
    let observation = Observation {
        sandboxes: vec![leaked],
        ..Observation::default()
    };
    assert_eq!(
        run(&observation, PERIODIC),
        vec![Step {
            sandbox: Some((id, 2)),
            actions: vec![Action::ReleaseSubnet],
        }],
        "a leaked subnet is released"
    );
}

#[test]
fn orphans_and_stale_generations_are_removed_newer_ones_never() {
    let id = SandboxId::new();
    let unknown = SandboxId::new();
    let observation = Observation {
        sandboxes: vec![sandbox(id, SandboxState::Running)],
        containers: vec![
            container("c", id, 2, Phase::Running),
            container("old", id, 1, ended(0)),
            container("newer", id, 3, Phase::Running),
            container("orphan", unknown, 1, Phase::Running),
            ObservedContainer {
                object: Labelled {
                    id: "bad-labels".to_owned(),
                    sandbox: None,
                    generation: None,
                },
                phase: Phase::Created,
            },
        ],
        networks: vec![
            object("n", Some(id), 2),
            object("n-old", Some(id), 1),
            object("n-newer", Some(id), 3),
            object("n-orphan", Some(unknown), 1),
        ],
    };
    let steps = run(&observation, PERIODIC);
    let orphan = |action| Step {
        sandbox: None,
        actions: vec![action],
    };
    assert_eq!(
        steps,
        vec![
            orphan(Action::RemoveContainer("old".to_owned())),
            orphan(Action::RemoveContainer("orphan".to_owned())),
            orphan(Action::RemoveContainer("bad-labels".to_owned())),
            orphan(Action::RemoveNetwork("n-old".to_owned())),
            orphan(Action::RemoveNetwork("n-orphan".to_owned())),
        ]
    );
}

#[test]
fn the_recorded_container_wins_over_another_of_the_same_generation() {
    let id = SandboxId::new();
    let observation = Observation {
        sandboxes: vec![sandbox(id, SandboxState::Running)],
        containers: vec![
            container("other", id, 2, ended(255)),
            container("c", id, 2, Phase::Running),
        ],
        networks: vec![],
    };
    assert_eq!(run(&observation, PERIODIC), vec![]);
}

#[test]
fn a_converged_world_plans_nothing() {
    let ids: Vec<SandboxId> = (0..3).map(|_| SandboxId::new()).collect();
    let observation = Observation {
        sandboxes: ids
            .iter()
            .map(|id| sandbox(*id, SandboxState::Running))
            .collect(),
        containers: ids
            .iter()
            .map(|id| container("c", *id, 2, Phase::Running))
            .collect(),
        networks: ids.iter().map(|id| object("n", Some(*id), 2)).collect(),
    };
    assert_eq!(run(&observation, PERIODIC), vec![]);
}

/// The fenced subnet release: only an ended (`failed`/`lost`) sandbox at its current
/// generation gives its /29 back.
#[tokio::test]
async fn release_ended_subnet_is_fenced_by_state_and_generation() {
    use std::time::Duration;

    use crate::accounts::user::Role;
    use crate::sandbox::{Cpus, Limits, Maximums, SandboxRequest};
    use crate::store::{Created, NewSandbox, NewUser, Store};

    let store = Store::sqlite_in_memory().await.unwrap();
    let owner = store
        .create_user(NewUser {
            email: "reconcile@example.test".to_owned(),
            display_name: "r".to_owned(),
            role: Role::Member,
        })
        .await
        .unwrap();
    let maximums = Maximums {
        limits: Limits {
            cpus: Cpus::from_millis(1000),
            memory_mb: 512,
            pids: 64,
            disk_mb: None,
        },
        timeout: Duration::from_secs(60),
        default_timeout: Duration::from_secs(60),
    };
    let spec = SandboxRequest {
        image: "testbox:dev".into(),
        ..SandboxRequest::default()
    }
    .validate(&maximums)
    .unwrap();
    let new = NewSandbox {
        owner: owner.id,
        spec,
        idempotency_key: None,
        node: None,
    };
    let Created::New(sandbox) = store.create_sandbox(new).await.unwrap() else {
        panic!("expected a new sandbox");
    };
    let pools = vec!["10.213.0.0/28".parse().unwrap()];
    store
        .allocate_subnet(sandbox.id, &pools, u64::MAX)
        .await
        .unwrap();

    // Still creating: not released.
    assert!(!store.release_ended_subnet(sandbox.id, 1).await.unwrap());
    store.mark_lost(sandbox.id, 1).await.unwrap();
    // A stale generation: not released.
    assert!(!store.release_ended_subnet(sandbox.id, 0).await.unwrap());
    assert_eq!(store.subnet_allocations().await.unwrap().len(), 1);
    // Lost at its generation: released, and the row forgets it.
    assert!(store.release_ended_subnet(sandbox.id, 1).await.unwrap());
    assert!(store.subnet_allocations().await.unwrap().is_empty());
    let after = store
        .get_sandbox(crate::store::Scope::All, sandbox.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.subnet, None);
    assert_eq!(after.state, SandboxState::Lost);
}
