//! Store tests. Every test runs twice: on SQLite (a file in a temp dir) and on Postgres (a
//! fresh database on the test-support server, or on `TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use airlock::accounts::user::{Role, UserId};
use airlock::config::DatabaseConfig;
use airlock::sandbox::{
    DesiredState, EndReason, LimitsRequest, SandboxEvent, SandboxId, SandboxRequest, SandboxSpec,
    SandboxState, TransitionError,
};
use airlock::store::{Backend, Created, ListQuery, NewSandbox, NewUser, Scope, Store, StoreError};
use futures_util::future::join_all;
use ipnet::Ipv4Net;

mod common;
use common::backends::{both_backends, Fixture};
use common::{maximums, user};

fn spec(image: &str) -> SandboxSpec {
    SandboxRequest {
        image: image.into(),
        cmd: vec!["sleep".into(), "60".into()],
        env: vec![("A".into(), "1".into())],
        limits: LimitsRequest {
            cpus: Some(0.5),
            ..LimitsRequest::default()
        },
        labels: [("team".to_owned(), "ml".to_owned())].into(),
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap()
}

async fn create(store: &Store, owner: UserId, key: Option<&str>, image: &str) -> Created {
    store
        .create_sandbox(NewSandbox {
            owner,
            spec: spec(image),
            idempotency_key: key.map(str::to_owned),
            node: Some("node-a".into()),
        })
        .await
        .unwrap()
}

fn new(created: Created) -> airlock::store::Sandbox {
    match created {
        Created::New(sandbox) => sandbox,
        Created::Existing(sandbox) => panic!("expected a new sandbox, got {}", sandbox.id),
    }
}

fn pools(s: &str) -> Vec<Ipv4Net> {
    s.split(',').map(|p| p.parse().unwrap()).collect()
}

both_backends!(create_and_read_back, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let sandbox = new(create(&f.store, alice.id, None, "testbox:latest").await);
    assert_eq!(sandbox.owner, alice.id);
    assert_eq!(sandbox.state, SandboxState::Creating);
    assert_eq!(sandbox.desired, DesiredState::Running);
    assert_eq!(sandbox.generation, 1);
    assert_eq!(sandbox.end_reason, None);
    assert_eq!(sandbox.node.as_deref(), Some("node-a"));
    assert_eq!(sandbox.spec, spec("testbox:latest"));
    let got = f.store.get_sandbox(Scope::All, sandbox.id).await.unwrap();
    assert_eq!(got, Some(sandbox.clone()));
    let events = f.store.sandbox_events(sandbox.id).await.unwrap();
    assert_eq!(
        events,
        vec![("created".into(), None, SandboxState::Creating)]
    );
    assert_eq!(f.store.get_user(alice.id).await.unwrap(), Some(alice));
});

both_backends!(owner_scoping, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let bob = user(&f.store, "bob").await;
    let a = new(create(&f.store, alice.id, None, "a").await);
    let as_alice = f.store.get_sandbox(Scope::Owner(alice.id), a.id).await;
    assert_eq!(as_alice.unwrap().map(|s| s.id), Some(a.id));
    let as_bob = f.store.get_sandbox(Scope::Owner(bob.id), a.id).await;
    assert_eq!(
        as_bob.unwrap(),
        None,
        "another owner's sandbox looks missing"
    );
    let missing = f.store.get_sandbox(Scope::All, SandboxId::new()).await;
    assert_eq!(missing.unwrap(), None);
    let page = f
        .store
        .list_sandboxes(Scope::Owner(bob.id), ListQuery::default())
        .await
        .unwrap();
    assert!(page.items.is_empty());
    let stop = f
        .store
        .set_desired_state(Scope::Owner(bob.id), a.id, DesiredState::Stopped)
        .await
        .unwrap();
    assert_eq!(stop, None, "bob cannot stop alice's sandbox");
    let stop = f
        .store
        .set_desired_state(Scope::Owner(alice.id), a.id, DesiredState::Stopped)
        .await
        .unwrap();
    assert_eq!(stop.unwrap().desired, DesiredState::Stopped);
});

both_backends!(a_begun_delete_hides_the_sandbox, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let bob = user(&f.store, "bob").await;
    let a = new(create(&f.store, alice.id, Some("k"), "testbox:latest").await);
    let kept = new(create(&f.store, alice.id, None, "testbox:latest").await);
    let pools = pools("10.98.0.0/28");
    f.store
        .allocate_subnet(a.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        f.store
            .begin_delete(Scope::Owner(bob.id), a.id)
            .await
            .unwrap(),
        None
    );
    let begun = f
        .store
        .begin_delete(Scope::Owner(alice.id), a.id)
        .await
        .unwrap();
    assert_eq!(begun.map(|s| s.id), Some(a.id));
    assert_eq!(
        f.store.begin_delete(Scope::All, a.id).await.unwrap(),
        None,
        "a delete begins once"
    );
    // Hidden from every read at once; only the reconciler's listing still has it.
    assert_eq!(f.store.get_sandbox(Scope::All, a.id).await.unwrap(), None);
    let listed = f
        .store
        .list_sandboxes(Scope::All, ListQuery::default())
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![kept.id]
    );
    let every = f
        .store
        .list_every_sandbox(ListQuery::default())
        .await
        .unwrap();
    let deleting = every.items.iter().find(|s| s.id == a.id).unwrap();
    assert_eq!(deleting.desired, DesiredState::Deleted);
    // Its idempotency key is free again: the same key makes a new sandbox.
    let again = new(create(&f.store, alice.id, Some("k"), "testbox:latest").await);
    assert_ne!(again.id, a.id);
    // It holds its /29 until its row goes, as one being released, which the owner's cap no
    // longer counts.
    let held = |allocations: Vec<(_, SandboxId)>| allocations.iter().any(|(_, id)| *id == a.id);
    assert!(held(f.store.subnet_allocations().await.unwrap()));
    assert_eq!(f.store.subnets_releasing().await.unwrap(), 1);
    f.store.allocate_subnet(kept.id, &pools, 1).await.unwrap();
    assert!(
        !f.store.finish_delete(kept.id).await.unwrap(),
        "only a begun delete finishes"
    );
    assert!(f.store.finish_delete(a.id).await.unwrap());
    assert!(!f.store.finish_delete(a.id).await.unwrap(), "idempotent");
    assert!(!held(f.store.subnet_allocations().await.unwrap()));
    assert_eq!(f.store.subnets_releasing().await.unwrap(), 0);
    assert!(f
        .store
        .get_sandbox(Scope::All, kept.id)
        .await
        .unwrap()
        .is_some());
});

both_backends!(owner_must_exist, |f: Fixture| async move {
    let result = f
        .store
        .create_sandbox(NewSandbox {
            owner: UserId::new(),
            spec: spec("a"),
            idempotency_key: None,
            node: None,
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::Database(_))),
        "foreign keys are enforced: {result:?}"
    );
});

both_backends!(user_email_is_unique, |f: Fixture| async move {
    let new_user = || NewUser {
        email: "same@example.test".into(),
        display_name: "x".into(),
        role: Role::Admin,
    };
    f.store.create_user(new_user()).await.unwrap();
    let again = f.store.create_user(new_user()).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
});

both_backends!(idempotency_key, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let bob = user(&f.store, "bob").await;
    let first = new(create(&f.store, alice.id, Some("k1"), "a").await);
    match create(&f.store, alice.id, Some("k1"), "a").await {
        Created::Existing(again) => assert_eq!(again, first),
        Created::New(other) => panic!("a repeat created {}", other.id),
    }
    let mismatch = f
        .store
        .create_sandbox(NewSandbox {
            owner: alice.id,
            spec: spec("b"),
            idempotency_key: Some("k1".into()),
            node: None,
        })
        .await;
    assert!(
        matches!(mismatch, Err(StoreError::IdempotencyMismatch { existing }) if existing == first.id)
    );
    // Keys are per owner, and no key means no deduplication.
    let bobs = new(create(&f.store, bob.id, Some("k1"), "a").await);
    assert_ne!(bobs.id, first.id);
    let x = new(create(&f.store, alice.id, None, "a").await);
    let y = new(create(&f.store, alice.id, None, "a").await);
    assert_ne!(x.id, y.id);
});

both_backends!(idempotency_key_under_concurrency, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let tasks = (0..10).map(|_| {
        let store = f.store.clone();
        tokio::spawn(async move { create(&store, alice.id, Some("race"), "a").await })
    });
    let results: Vec<Created> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: HashSet<SandboxId> = results
        .iter()
        .map(|c| match c {
            Created::New(s) | Created::Existing(s) => s.id,
        })
        .collect();
    assert_eq!(ids.len(), 1, "every racer got the same sandbox");
    let fresh = results
        .iter()
        .filter(|c| matches!(c, Created::New(_)))
        .count();
    assert_eq!(fresh, 1);
});

both_backends!(list_with_cursor_and_state_filter, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let bob = user(&f.store, "bob").await;
    let mut mine = Vec::new();
    for _ in 0..7 {
        mine.push(new(create(&f.store, alice.id, None, "a").await).id);
    }
    new(create(&f.store, bob.id, None, "a").await);
    for id in &mine[..3] {
        f.store
            .record_transition(*id, 1, &SandboxEvent::Started)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut query = ListQuery {
        limit: 3,
        ..ListQuery::default()
    };
    loop {
        let page = f
            .store
            .list_sandboxes(Scope::Owner(alice.id), query)
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|s| s.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen, mine,
        "pages cover every sandbox once, in creation order"
    );
    let running = f
        .store
        .list_sandboxes(
            Scope::Owner(alice.id),
            ListQuery {
                state: Some(SandboxState::Running),
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    let running: Vec<_> = running.items.iter().map(|s| s.id).collect();
    assert_eq!(running, mine[..3]);
    let all = f
        .store
        .list_sandboxes(Scope::All, ListQuery::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 8);
    assert_eq!(all.next, None);
});

both_backends!(transitions_are_recorded, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let s = new(create(&f.store, alice.id, None, "a").await);
    let running = f
        .store
        .record_transition(s.id, 1, &SandboxEvent::Started)
        .await
        .unwrap();
    assert_eq!(running.state, SandboxState::Running);
    let stopping = f
        .store
        .record_transition(s.id, 1, &SandboxEvent::StopRequested)
        .await
        .unwrap();
    assert_eq!(stopping.state, SandboxState::Stopping);
    // A second stop request is accepted and changes nothing.
    let again = f
        .store
        .record_transition(s.id, 1, &SandboxEvent::StopRequested)
        .await
        .unwrap();
    assert_eq!(again.state, SandboxState::Stopping);
    let ended = f
        .store
        .record_transition(
            s.id,
            1,
            &SandboxEvent::Ended(EndReason::Exited { code: 143 }),
        )
        .await
        .unwrap();
    assert_eq!(ended.state, SandboxState::Exited);
    let stored = f
        .store
        .get_sandbox(Scope::All, s.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, ended, "the returned row is what was stored");
    assert_eq!(stored.end_reason, Some(EndReason::Exited { code: 143 }));
    assert!(stored.ended_at.is_some());
    let refused = f
        .store
        .record_transition(s.id, 1, &SandboxEvent::Started)
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Transition(TransitionError {
            from: SandboxState::Exited,
            event: "started"
        }))
    ));
    let events = f.store.sandbox_events(s.id).await.unwrap();
    let names: Vec<_> = events.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(names, ["created", "started", "stop_requested", "ended"]);
    assert_eq!(events[3].1, Some(SandboxState::Stopping));
    assert_eq!(events[3].2, SandboxState::Exited);
});

both_backends!(every_end_reason_round_trips, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let reasons = [
        EndReason::Exited { code: 0 },
        EndReason::Stopped,
        EndReason::Timeout,
        EndReason::Idle,
        EndReason::Oom,
        EndReason::Killed,
        EndReason::Lost,
        EndReason::Error { message: None },
        EndReason::Error {
            message: Some("image missing".into()),
        },
    ];
    for reason in reasons {
        let s = new(create(&f.store, alice.id, None, "a").await);
        let ended = f
            .store
            .record_transition(s.id, 1, &SandboxEvent::Ended(reason.clone()))
            .await
            .unwrap();
        assert_eq!(ended.state, reason.final_state());
        let stored = f
            .store
            .get_sandbox(Scope::All, s.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.end_reason, Some(reason));
        assert_eq!(stored, ended);
    }
});

both_backends!(stale_generation_is_refused, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let s = new(create(&f.store, alice.id, None, "a").await);
    for stale in [0, 2] {
        let result = f
            .store
            .record_transition(s.id, stale, &SandboxEvent::Started)
            .await;
        assert!(
            matches!(
                result,
                Err(StoreError::StaleGeneration { given, current: 1, .. }) if given == stale
            ),
            "{result:?}"
        );
        let lost = f.store.mark_lost(s.id, stale).await;
        assert!(matches!(lost, Err(StoreError::StaleGeneration { .. })));
        let container = f.store.set_container(s.id, stale, "c1").await;
        assert!(matches!(container, Err(StoreError::StaleGeneration { .. })));
        let deleted = f.store.delete_sandbox(s.id, stale).await;
        assert!(matches!(deleted, Err(StoreError::StaleGeneration { .. })));
    }
    let unchanged = f
        .store
        .get_sandbox(Scope::All, s.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.state, SandboxState::Creating);
    assert_eq!(unchanged.container_id, None);
    f.store.set_container(s.id, 1, "c1").await.unwrap();
    let lost = f.store.mark_lost(s.id, 1).await.unwrap();
    assert_eq!(lost.state, SandboxState::Lost);
    assert_eq!(lost.end_reason, Some(EndReason::Lost));
    assert_eq!(lost.container_id.as_deref(), Some("c1"));
    let missing = f.store.mark_lost(SandboxId::new(), 1).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
});

both_backends!(concurrent_ends_apply_once, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let s = new(create(&f.store, alice.id, None, "a").await);
    let tasks = (0..10).map(|i| {
        let store = f.store.clone();
        tokio::spawn(async move {
            let reason = EndReason::Exited { code: i };
            store
                .record_transition(s.id, 1, &SandboxEvent::Ended(reason))
                .await
        })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(result, Err(StoreError::Transition(_))),
            "{result:?}"
        );
    }
    let events = f.store.sandbox_events(s.id).await.unwrap();
    assert_eq!(events.len(), 2, "created + exactly one end");
});

both_backends!(
    one_owner_holds_at_most_the_subnet_cap,
    |f: Fixture| async move {
        let (alice, bob) = (user(&f.store, "alice").await, user(&f.store, "bob").await);
        let pools = pools("10.213.0.0/24");
        let mut held = Vec::new();
        for _ in 0..3 {
            let mine = new(create(&f.store, alice.id, None, "a").await);
            held.push(mine.id);
        }
        // Alice's three creates race for a cap of two: exactly two win.
        let racers = held.iter().map(|id| {
            let (store, pools, id) = (f.store.clone(), pools.clone(), *id);
            tokio::spawn(async move { store.allocate_subnet(id, &pools, 2).await })
        });
        let results: Vec<_> = join_all(racers).await;
        let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        let capped = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(StoreError::SubnetCapReached { cap: 2 }))))
            .count();
        assert_eq!((won, capped), (2, 1), "{results:?}");
        // Bob is not held back by Alice's use; a sandbox keeps the /29 it already holds.
        let his = new(create(&f.store, bob.id, None, "b").await);
        assert!(f.store.allocate_subnet(his.id, &pools, 2).await.is_ok());
        let (holder, _) = held
            .iter()
            .zip(&results)
            .find(|(_, result)| matches!(result, Ok(Ok(_))))
            .unwrap();
        assert!(f.store.allocate_subnet(*holder, &pools, 2).await.is_ok());
    }
);

both_backends!(subnets_allocate_and_release, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let pools = pools("10.213.0.0/28,10.99.0.0/29");
    let a = new(create(&f.store, alice.id, None, "a").await);
    let b = new(create(&f.store, alice.id, None, "a").await);
    let c = new(create(&f.store, alice.id, None, "a").await);
    let d = new(create(&f.store, alice.id, None, "a").await);
    let sa = f
        .store
        .allocate_subnet(a.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(sa.net().to_string(), "10.213.0.0/29");
    let again = f
        .store
        .allocate_subnet(a.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(again, sa, "allocation is idempotent per sandbox");
    let sb = f
        .store
        .allocate_subnet(b.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(sb.net().to_string(), "10.213.0.8/29");
    let sc = f
        .store
        .allocate_subnet(c.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(sc.net().to_string(), "10.99.0.0/29");
    let full = f.store.allocate_subnet(d.id, &pools, u64::MAX).await;
    assert!(
        matches!(full, Err(StoreError::SubnetsExhausted)),
        "{full:?}"
    );
    let stored = f
        .store
        .get_sandbox(Scope::All, b.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.subnet, Some(sb));
    assert_eq!(
        stored.network_name,
        Some(airlock::sandbox::names::network_name(b.id))
    );
    assert!(f.store.release_subnet(b.id).await.unwrap());
    assert!(!f.store.release_subnet(b.id).await.unwrap());
    let sd = f
        .store
        .allocate_subnet(d.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(sd, sb, "a released subnet is reused");
    let missing = f
        .store
        .allocate_subnet(SandboxId::new(), &pools, u64::MAX)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    // Deleting a sandbox frees its subnet and its events.
    assert!(f.store.delete_sandbox(a.id, 1).await.unwrap());
    assert!(
        !f.store.delete_sandbox(a.id, 1).await.unwrap(),
        "idempotent"
    );
    let left: Vec<_> = f
        .store
        .subnet_allocations()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&a.id));
    assert!(f.store.sandbox_events(a.id).await.unwrap().is_empty());
});

both_backends!(
    parallel_allocations_never_collide,
    |f: Fixture| async move {
        let alice = user(&f.store, "alice").await;
        let pools = pools("10.213.0.0/16");
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(new(create(&f.store, alice.id, None, "a").await).id);
        }
        let tasks = ids.iter().map(|id| {
            let (store, pools, id) = (f.store.clone(), pools.clone(), *id);
            tokio::spawn(async move { store.allocate_subnet(id, &pools, u64::MAX).await })
        });
        let subnets: Vec<_> = join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        let distinct: HashSet<_> = subnets.iter().copied().collect();
        assert_eq!(distinct.len(), 20, "{subnets:?}");
        let stored = f.store.subnet_allocations().await.unwrap();
        assert_eq!(stored.len(), 20);
        // The lowest 20 /29s were handed out: no gaps.
        let expected: HashSet<Ipv4Net> = pools[0].subnets(29).unwrap().take(20).collect();
        let got: HashSet<Ipv4Net> = distinct.iter().map(|s| s.net()).collect();
        assert_eq!(got, expected);
    }
);

both_backends!(allocations_survive_restart, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let pools = pools("10.213.0.0/16");
    let s = new(create(&f.store, alice.id, None, "a").await);
    let subnet = f
        .store
        .allocate_subnet(s.id, &pools, u64::MAX)
        .await
        .unwrap();
    f.store.close().await;
    let reopened = Store::connect(&f.config).await.unwrap();
    let again = reopened
        .allocate_subnet(s.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_eq!(again, subnet);
    let other = new(create(&reopened, alice.id, None, "a").await);
    let next = reopened
        .allocate_subnet(other.id, &pools, u64::MAX)
        .await
        .unwrap();
    assert_ne!(next, subnet);
    reopened.close().await;
});

both_backends!(newer_database_is_refused, |f: Fixture| async move {
    f.store.close().await;
    add_future_migration(&f.config).await;
    let refused = Store::connect(&f.config).await;
    match refused {
        Err(StoreError::DatabaseNewer { applied, known }) => {
            assert_eq!(applied, FUTURE_VERSION);
            assert!(known < FUTURE_VERSION);
            let message = StoreError::DatabaseNewer { applied, known }.to_string();
            assert!(message.contains("newer Airlock"), "{message}");
        }
        other => panic!("expected DatabaseNewer, got {other:?}"),
    }
});

const FUTURE_VERSION: i64 = 99_990_101_000_000;

/// Records a migration this binary does not have, as a newer binary would have.
async fn add_future_migration(config: &DatabaseConfig) {
    const SQL: &str = "INSERT INTO _sqlx_migrations \
        (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, 0)";
    match config {
        DatabaseConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(path),
            )
            .await
            .unwrap();
            sqlx::query(SQL)
                .bind(FUTURE_VERSION)
                .bind("from the future")
                .bind(vec![0_u8; 48])
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        DatabaseConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
            sqlx::query(SQL)
                .bind(FUTURE_VERSION)
                .bind("from the future")
                .bind(vec![0_u8; 48])
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

#[tokio::test]
async fn sqlite_file_is_in_wal_mode() {
    let (f, _keep) = common::backends::sqlite().await;
    assert_eq!(f.store.backend(), Backend::Sqlite);
    let DatabaseConfig::Sqlite { path } = &f.config else {
        unreachable!()
    };
    f.store.close().await;
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    pool.close().await;
}

#[tokio::test]
async fn in_memory_store_works() {
    let store = Store::sqlite_in_memory().await.unwrap();
    let alice = user(&store, "alice").await;
    let s = new(create(&store, alice.id, None, "a").await);
    let page = store
        .list_sandboxes(Scope::All, ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items[0].id, s.id);
}

#[tokio::test]
async fn postgres_backend_reports_itself() {
    let (f, _keep) = common::backends::postgres().await;
    assert_eq!(f.store.backend(), Backend::Postgres);
}
