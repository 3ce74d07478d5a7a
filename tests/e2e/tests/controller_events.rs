//! The Docker event watcher against a real DinD over mTLS: ends are recorded as the node
//! reports them, with nobody calling `wait` and no reconciler running.
//! - a sandbox SIGKILLed from outside (`docker kill` over the fixture's own mTLS client) ends
//!   `killed`;
//! - a sandbox whose process exits by itself ends `exited(3)`;
//! - a sandbox removed from outside ends `killed` or `lost` (never left `running`);
//! - a stop through the service still ends `stopped`, although the watcher sees its kills.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock::accounts::user::Role;
use airlock::audit::{Actor, Via};
use airlock::config::DEFAULT_NODE;
use airlock::reconcile::events::EventWatcher;
use airlock::reconcile::{ReconcileSettings, Reconciler};
use airlock::sandbox::{EndKind, SandboxId, SandboxRequest, SandboxState};
use airlock::sandboxes::lifecycle::{DeleteSandbox, GetSandbox, StopSandbox};
use airlock::sandboxes::{CreateSandbox, Creation, Sandboxes};
use airlock::services::{Services, Settings};
use airlock::store::Sandbox;
use bollard::query_parameters::{KillContainerOptions, RemoveContainerOptions};
use e2e::controller::{parts, Parts};
use e2e::{dind_with_testbox, Timing};
use test_support::dind::{DindOptions, TESTBOX_IMAGE};

/// How long an end may take to be recorded after Docker reports it.
const DEADLINE: Duration = Duration::from_secs(15);

async fn create(
    service: &Sandboxes,
    owner: airlock::accounts::user::UserId,
    cmd: &[&str],
) -> Sandbox {
    let request = SandboxRequest {
        image: TESTBOX_IMAGE.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        ..SandboxRequest::default()
    };
    let command = CreateSandbox {
        request,
        ..CreateSandbox::default()
    };
    let member = Actor::new(owner, Role::Member, Via::Session);
    match service.run(&member, command).await.unwrap() {
        Creation::Created { sandbox, .. } => {
            assert_eq!(sandbox.state, SandboxState::Running);
            sandbox
        }
        other => panic!("unexpected create {other:?}"),
    }
}

/// Every sandbox, as the admin token sees them.
fn admin(owner: airlock::accounts::user::UserId) -> Actor {
    Actor::new(owner, Role::Admin, Via::AdminToken)
}

/// Polls the store until the sandbox has ended, within [`DEADLINE`].
async fn ended(service: &Sandboxes, reader: &Actor, id: SandboxId) -> Sandbox {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let sandbox = service
            .run(reader, GetSandbox { id })
            .await
            .unwrap()
            .sandbox;
        if sandbox.state.is_terminal() {
            return sandbox;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandbox {id} still {:?} after {DEADLINE:?}",
            sandbox.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_are_recorded_from_docker_events() {
    let mut timing = Timing::start("controller_events");
    let dind = dind_with_testbox(DindOptions::new("controller-events"), &mut timing)
        .await
        .unwrap();
    let Parts {
        dir: _dir,
        config,
        store,
        docker,
        admin: admin_id,
    } = parts(&dind, &[("AIRLOCK_STOP_GRACE", "1s")]).await;
    let service = Services::new(
        store.clone(),
        docker.clone(),
        Settings::from_config(&config),
    )
    .sandboxes;
    let reader = admin(admin_id);
    let settings = ReconcileSettings::new(DEFAULT_NODE, config.stop_grace);
    let reconciler = Reconciler::new(store, docker, settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = EventWatcher::new(service.clone(), reconciler, DEFAULT_NODE);
    let task = tokio::spawn(watcher.run(async move { drop(stopped.await) }));
    timing.phase("controller-up");

    let killed = create(&service, admin_id, &["sleep", "300"]).await;
    let exits = create(&service, admin_id, &["sh", "-c", "sleep 1; exit 3"]).await;
    let removed = create(&service, admin_id, &["sleep", "300"]).await;
    let stopped_one = create(&service, admin_id, &["sleep", "300"]).await;
    timing.phase("create-4");

    // SIGKILL from outside, over the fixture's own mTLS client (not the controller's).
    let container = killed.container_id.clone().unwrap();
    dind.docker()
        .kill_container(&container, None::<KillContainerOptions>)
        .await
        .unwrap();
    let ended_killed = ended(&service, &reader, killed.id).await;
    assert_eq!(ended_killed.state, SandboxState::Exited);
    assert_eq!(
        ended_killed.end_reason.as_ref().map(|r| r.kind()),
        Some(EndKind::Killed),
        "{ended_killed:?}"
    );
    timing.phase("killed");

    let ended_exits = ended(&service, &reader, exits.id).await;
    assert_eq!(
        ended_exits.end_reason.as_ref().map(|r| r.kind()),
        Some(EndKind::Exited)
    );
    assert_eq!(
        ended_exits.end_reason.as_ref().and_then(|r| r.exit_code()),
        Some(3)
    );
    timing.phase("exited");

    let container = removed.container_id.clone().unwrap();
    let force = RemoveContainerOptions {
        force: true,
        ..RemoveContainerOptions::default()
    };
    dind.docker()
        .remove_container(&container, Some(force))
        .await
        .unwrap();
    let ended_removed = ended(&service, &reader, removed.id).await;
    let kind = ended_removed.end_reason.as_ref().map(|r| r.kind());
    assert!(
        matches!(kind, Some(EndKind::Killed | EndKind::Lost)),
        "{ended_removed:?}"
    );
    timing.phase("removed");

    let stop_it = StopSandbox { id: stopped_one.id };
    let after_stop = service.run(&reader, stop_it).await.unwrap();
    assert_eq!(
        after_stop.end_reason.as_ref().map(|r| r.kind()),
        Some(EndKind::Stopped),
        "{after_stop:?}"
    );
    // The watcher's view of the same kills must not have overwritten it.
    let get = GetSandbox { id: stopped_one.id };
    let reread = service.run(&reader, get).await.unwrap().sandbox;
    assert_eq!(
        reread.end_reason.as_ref().map(|r| r.kind()),
        Some(EndKind::Stopped)
    );
    timing.phase("stopped");

    for sandbox in [&killed, &exits, &removed, &stopped_one] {
        let delete = DeleteSandbox { id: sandbox.id };
        service.run(&reader, delete).await.unwrap();
    }
    drop(stop);
    task.await.unwrap();
    timing.phase("cleanup");
}
