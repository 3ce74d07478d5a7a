//! Warm pool members at the store, on SQLite (a file) and Postgres (a fresh database on the
//! test-support server): parallel claims take each ready member exactly once, a claim past the
//! owner's quota claims nothing, only `ready` members are handed out, a claim passes the
//! member's /29 to the sandbox, stale claims are found by age, and every state change is
//! fenced by the member state machine. `claim_latency` prints the p50 of 100 sequential
//! claims per backend (printed, not asserted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use airlock::accounts::quota::{Quota, QuotaKind};
use airlock::pool::{MemberId, MemberState, MemberTransitionError, PoolKey};
use airlock::sandbox::{Cpus, RootFs, RunAs, SandboxRequest, SandboxSpec, SandboxState};
use airlock::store::{
    Claim, ClaimOutcome, ClaimedMember, ListQuery, NewAuditRecord, NewMember, NewSandbox,
    PoolMember, Scope, Store, StoreError, User,
};
use futures_util::future::join_all;
use ipnet::Ipv4Net;

mod common;
use common::backends::{both_backends, Fixture};
use common::{maximums, user};

fn key(n: u8) -> PoolKey {
    PoolKey {
        image_digest: format!("sha256:{}", format!("{n:x}").repeat(64)),
        user: RunAs {
            uid: 1000,
            gid: 1000,
        },
        tty: false,
        rootfs: RootFs::ReadOnly,
    }
}

fn subnets() -> Vec<Ipv4Net> {
    vec!["10.213.0.0/20".parse().unwrap()]
}

fn spec() -> SandboxSpec {
    SandboxRequest {
        image: "airlock/testbox:dev".into(),
        cmd: vec!["sleep".into(), "60".into()],
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap()
}

fn quota(max_sandboxes: u64) -> Quota {
    Quota {
        max_sandboxes,
        max_memory_mb: 1 << 30,
        max_cpus: Cpus::from_millis(1_000_000),
        max_lifetime: Duration::from_secs(86_400),
        creates_per_min: 100_000,
        creates_per_hour: 100_000,
    }
}

/// A member of `key` on `node-a`, warming.
async fn warming(store: &Store, key: &PoolKey) -> PoolMember {
    let new = NewMember {
        id: MemberId::new(),
        key: key.clone(),
        node: "node-a".into(),
        runtime_sha: "r1".into(),
    };
    let member = store.insert_member(new).await.unwrap();
    store
        .allocate_member_subnet(member.id, &subnets())
        .await
        .unwrap();
    member
}

/// A ready member of `key` holding a /29.
async fn ready(store: &Store, key: &PoolKey) -> PoolMember {
    let member = warming(store, key).await;
    let container = format!("c-{}", member.id);
    store
        .mark_member_ready(member.id, &container)
        .await
        .unwrap()
}

async fn claim(store: &Store, key: &PoolKey, owner: &User, quota: Quota) -> ClaimOutcome {
    store
        .claim_member(Claim {
            key,
            new: NewSandbox {
                owner: owner.id,
                spec: spec(),
                idempotency_key: None,
                node: None,
            },
            quota,
            subnet_cap: 256,
            audit: None,
        })
        .await
        .unwrap()
}

fn claimed(outcome: ClaimOutcome) -> ClaimedMember {
    match outcome {
        ClaimOutcome::Claimed(claimed) => *claimed,
        other => panic!("expected a claim, got {other:?}"),
    }
}

async fn live_sandboxes(store: &Store) -> usize {
    let query = ListQuery {
        limit: 500,
        ..ListQuery::default()
    };
    store
        .list_sandboxes(Scope::All, query)
        .await
        .unwrap()
        .items
        .len()
}

// 20 parallel claims (20 owners, so Postgres runs them concurrently) against 5 ready members:
// exactly 5 succeed, each member once; 15 miss and write nothing.
both_backends!(
    parallel_claims_take_each_member_once,
    |f: Fixture| async move {
        let key = key(1);
        let mut members = HashSet::new();
        for _ in 0..5 {
            members.insert(ready(&f.store, &key).await.id);
        }
        let mut owners = Vec::new();
        for i in 0..20 {
            owners.push(user(&f.store, &format!("owner{i}")).await);
        }
        let claims = owners.iter().map(|owner| {
            let (store, key, owner) = (f.store.clone(), key.clone(), owner.clone());
            tokio::spawn(async move { claim(&store, &key, &owner, quota(10)).await })
        });
        let outcomes: Vec<ClaimOutcome> = join_all(claims)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let misses = outcomes
            .iter()
            .filter(|o| matches!(o, ClaimOutcome::NoReadyMember))
            .count();
        let won: Vec<ClaimedMember> = outcomes
            .into_iter()
            .filter(|o| !matches!(o, ClaimOutcome::NoReadyMember))
            .map(claimed)
            .collect();
        assert_eq!((won.len(), misses), (5, 15), "claimed, missed");
        let taken: HashSet<MemberId> = won.iter().map(|c| c.member.id).collect();
        assert_eq!(taken, members, "each member claimed exactly once");
        for c in &won {
            assert_eq!(c.member.state, MemberState::Claiming);
            assert_eq!(c.member.sandbox, Some(c.sandbox.id));
            assert_eq!(c.sandbox.state, SandboxState::Creating);
            assert_eq!(c.sandbox.node.as_deref(), Some("node-a"));
            assert_eq!(c.sandbox.container_id, c.member.container_id);
            assert_eq!(
                c.sandbox.network_name.as_ref(),
                Some(&c.member.network_name)
            );
            assert!(c.sandbox.subnet.is_some());
        }
        let subnets: HashSet<_> = won.iter().map(|c| c.sandbox.subnet).collect();
        assert_eq!(subnets.len(), 5);
        assert_eq!(live_sandboxes(&f.store).await, 5);
        // The misses recorded no create against their owners' rates.
        let mut counted = 0;
        for owner in &owners {
            counted += f.store.quota_usage(owner.id).await.unwrap().recent_creates;
        }
        assert_eq!(counted, 5);
        assert!(f.store.pool_counts().await.unwrap().is_empty());
    }
);

// A claim past the owner's quota is the quota error and claims nothing; the audit row commits
// with a claim and names the sandbox.
both_backends!(quota_refusal_claims_nothing, |f: Fixture| async move {
    let key = key(2);
    let member = ready(&f.store, &key).await;
    let alice = user(&f.store, "alice").await;
    let first = f
        .store
        .create_sandbox_within_quota(
            NewSandbox {
                owner: alice.id,
                spec: spec(),
                idempotency_key: None,
                node: None,
            },
            quota(1),
        )
        .await;
    assert!(first.is_ok());
    let audit = NewAuditRecord {
        user: Some(alice.id),
        action: "POST /v1/sandboxes".into(),
        status: 201,
        ..NewAuditRecord::default()
    };
    let refused = f
        .store
        .claim_member(Claim {
            key: &key,
            new: NewSandbox {
                owner: alice.id,
                spec: spec(),
                idempotency_key: None,
                node: None,
            },
            quota: quota(1),
            subnet_cap: 256,
            audit: Some(&audit),
        })
        .await;
    match refused {
        Err(StoreError::QuotaExceeded(e)) => assert_eq!(e.kind, QuotaKind::MaxSandboxes),
        other => panic!("expected the quota error, got {other:?}"),
    }
    let still = f.store.get_member(member.id).await.unwrap().unwrap();
    assert_eq!(still.state, MemberState::Ready);
    assert!(still.subnet.is_some());
    assert!(f.store.list_audit(None, 10).await.unwrap().is_empty());
    assert_eq!(live_sandboxes(&f.store).await, 1);
    // Within the quota the claim succeeds and its audit row names the sandbox.
    let bob = user(&f.store, "bob").await;
    let won = f
        .store
        .claim_member(Claim {
            key: &key,
            new: NewSandbox {
                owner: bob.id,
                spec: spec(),
                idempotency_key: None,
                node: None,
            },
            quota: quota(1),
            subnet_cap: 256,
            audit: Some(&audit),
        })
        .await
        .unwrap();
    let won = claimed(won);
    let rows = f.store.list_audit(None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record.object, Some(won.sandbox.id.to_string()));
    // The owner's subnet cap applies to the /29 a claim passes on.
    let carol = user(&f.store, "carol").await;
    ready(&f.store, &key).await;
    let capped = f
        .store
        .claim_member(Claim {
            key: &key,
            new: NewSandbox {
                owner: carol.id,
                spec: spec(),
                idempotency_key: None,
                node: None,
            },
            quota: quota(10),
            subnet_cap: 0,
            audit: None,
        })
        .await;
    assert!(
        matches!(capped, Err(StoreError::SubnetCapReached { cap: 0 })),
        "{capped:?}"
    );
    assert_eq!(f.store.pool_counts().await.unwrap()[0].ready, 1);
});

// Warming, claiming and destroying members are never handed out, nor another pool's or
// another node's; the oldest ready member goes first.
both_backends!(only_ready_members_are_handed_out, |f: Fixture| async move {
    let (key, other) = (key(3), key(4));
    let alice = user(&f.store, "alice").await;
    let cold = warming(&f.store, &key).await;
    let gone = ready(&f.store, &key).await;
    f.store.mark_member_destroying(gone.id).await.unwrap();
    ready(&f.store, &other).await;
    assert!(matches!(
        claim(&f.store, &key, &alice, quota(10)).await,
        ClaimOutcome::NoReadyMember
    ));
    let oldest = ready(&f.store, &key).await;
    let newer = ready(&f.store, &key).await;
    let counts = f.store.pool_counts().await.unwrap();
    let mine = counts.iter().find(|c| c.pool_key == key.hash()).unwrap();
    assert_eq!((mine.ready, mine.warming), (2, 1));
    let first = claimed(claim(&f.store, &key, &alice, quota(10)).await);
    assert_eq!(first.member.id, oldest.id);
    let second = claimed(claim(&f.store, &key, &alice, quota(10)).await);
    assert_eq!(second.member.id, newer.id);
    assert!(matches!(
        claim(&f.store, &key, &alice, quota(10)).await,
        ClaimOutcome::NoReadyMember
    ));
    // A claim pinned to another node finds nothing there.
    let elsewhere = f
        .store
        .claim_member(Claim {
            key: &other,
            new: NewSandbox {
                owner: alice.id,
                spec: spec(),
                idempotency_key: None,
                node: Some("node-b".into()),
            },
            quota: quota(10),
            subnet_cap: 256,
            audit: None,
        })
        .await
        .unwrap();
    assert!(matches!(elsewhere, ClaimOutcome::NoReadyMember));
    let cold = f.store.get_member(cold.id).await.unwrap().unwrap();
    assert_eq!(cold.state, MemberState::Warming);
    let listed = f.store.list_members("node-a").await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(f.store.list_members("node-b").await.unwrap().is_empty());
});

// An idempotent repeat answers with the first sandbox and claims nothing more.
both_backends!(idempotent_repeat_claims_once, |f: Fixture| async move {
    let key = key(5);
    let alice = user(&f.store, "alice").await;
    ready(&f.store, &key).await;
    let spare = ready(&f.store, &key).await;
    let new = NewSandbox {
        owner: alice.id,
        spec: spec(),
        idempotency_key: Some("k1".into()),
        node: None,
    };
    let claim_once = |new: NewSandbox| {
        let (store, key) = (f.store.clone(), key.clone());
        async move {
            store
                .claim_member(Claim {
                    key: &key,
                    new,
                    quota: quota(10),
                    subnet_cap: 256,
                    audit: None,
                })
                .await
                .unwrap()
        }
    };
    let first = claimed(claim_once(new.clone()).await);
    match claim_once(new).await {
        ClaimOutcome::Existing(sandbox) => assert_eq!(sandbox.id, first.sandbox.id),
        other => panic!("expected the first sandbox, got {other:?}"),
    }
    let spare = f.store.get_member(spare.id).await.unwrap().unwrap();
    assert_eq!(spare.state, MemberState::Ready);
});

// `stale_claiming` finds only claims older than the cutoff, and not completed ones.
both_backends!(
    stale_claiming_finds_only_old_claims,
    |f: Fixture| async move {
        let key = key(6);
        let alice = user(&f.store, "alice").await;
        ready(&f.store, &key).await;
        ready(&f.store, &key).await;
        let old = claimed(claim(&f.store, &key, &alice, quota(10)).await).member;
        let cutoff = old.claiming_at.unwrap() + Duration::from_micros(1);
        let young = claimed(claim(&f.store, &key, &alice, quota(10)).await).member;
        assert!(young.claiming_at.unwrap() >= cutoff);
        let stale: Vec<MemberId> = f
            .store
            .stale_claiming(cutoff)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(stale, vec![old.id]);
        f.store.mark_member_claimed(old.id).await.unwrap();
        let later = young.claiming_at.unwrap() + Duration::from_secs(1);
        let stale: Vec<MemberId> = f
            .store
            .stale_claiming(later)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(stale, vec![young.id]);
    }
);

// Every change is fenced by the state machine, with a typed refusal; removal frees the /29.
both_backends!(state_changes_are_fenced, |f: Fixture| async move {
    let key = key(7);
    let alice = user(&f.store, "alice").await;
    let member = ready(&f.store, &key).await;
    let refused = |from, event| {
        move |result: Result<PoolMember, StoreError>| match result {
            Err(StoreError::MemberTransition(e)) => {
                assert_eq!(e, MemberTransitionError { from, event });
            }
            other => panic!("expected {event} refused from {from}, got {other:?}"),
        }
    };
    refused(MemberState::Ready, "ready")(f.store.mark_member_ready(member.id, "c2").await);
    refused(MemberState::Ready, "bound")(f.store.mark_member_claimed(member.id).await);
    let won = claimed(claim(&f.store, &key, &alice, quota(10)).await);
    let done = f.store.mark_member_claimed(won.member.id).await.unwrap();
    assert_eq!(done.state, MemberState::Claimed);
    assert!(done.claimed_at.is_some());
    refused(MemberState::Claimed, "ready")(f.store.mark_member_ready(member.id, "c3").await);
    refused(MemberState::Claimed, "destroy")(f.store.mark_member_destroying(member.id).await);
    match f.store.remove_member(member.id).await {
        Err(StoreError::MemberTransition(e)) => assert_eq!(e.event, "remove"),
        other => panic!("expected a refused removal, got {other:?}"),
    }
    assert!(matches!(
        f.store.mark_member_ready(MemberId::new(), "c").await,
        Err(StoreError::NotFound)
    ));
    // A warming member can be destroyed (twice), then removed with its /29.
    let spare = warming(&f.store, &key).await;
    let held = f.store.get_member(spare.id).await.unwrap().unwrap().subnet;
    assert!(held.is_some());
    f.store.mark_member_destroying(spare.id).await.unwrap();
    let again = f.store.mark_member_destroying(spare.id).await.unwrap();
    assert_eq!(again.state, MemberState::Destroying);
    refused(MemberState::Destroying, "ready")(f.store.mark_member_ready(spare.id, "c").await);
    assert!(f.store.remove_member(spare.id).await.unwrap());
    assert!(!f.store.remove_member(spare.id).await.unwrap());
    assert_eq!(
        f.store
            .allocate_member_subnet(spare.id, &subnets())
            .await
            .unwrap_err()
            .to_string(),
        StoreError::NotFound.to_string()
    );
    // The claimed sandbox holds its /29 (listed as the sandbox's); a new member can take the
    // removed one's.
    let allocations = f.store.subnet_allocations().await.unwrap();
    assert_eq!(
        allocations,
        vec![(won.sandbox.subnet.unwrap(), won.sandbox.id)]
    );
    let next = warming(&f.store, &key).await;
    let next = f.store.get_member(next.id).await.unwrap().unwrap();
    assert_eq!(next.subnet, held);
    // Deleting the claimed sandbox frees its /29 and removes the member row with it.
    assert!(f.store.delete_sandbox(won.sandbox.id, 1).await.unwrap());
    assert!(f.store.get_member(member.id).await.unwrap().is_none());
    assert!(f.store.subnet_allocations().await.unwrap().is_empty());
});

// The p50 of 100 sequential claims (printed, not asserted).
both_backends!(claim_latency, |f: Fixture| async move {
    let key = key(8);
    let alice = user(&f.store, "alice").await;
    for _ in 0..100 {
        ready(&f.store, &key).await;
    }
    let mut times = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        claimed(claim(&f.store, &key, &alice, quota(1000)).await);
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "claim latency over 100 sequential claims ({:?}): p50 {:?}, p99 {:?}, max {:?}",
        f.store.backend(),
        times[49],
        times[98],
        times[99]
    );
});
