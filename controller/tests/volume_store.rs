//! Volumes at the store, on SQLite (a file) and on Postgres (a fresh database on the
//! test-support server): parallel creates never overshoot the volume quota, names are unique
//! per owner, a read-write mount is held by one live sandbox at a time and released when the
//! sandbox ends, a volume sampled over its size refuses read-write mounts, and a held volume
//! cannot be deleted. A files write's lease and a read-write sandbox exclude each other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use airlock::accounts::quota::QuotaKind;
use airlock::sandbox::{EndReason, SandboxEvent, SandboxRequest};
use airlock::store::{
    Created, MountHold, NewSandbox, NewVolume, Scope, Store, StoreError, User, Volume,
};
use airlock::volume::{QuotaMode, VolumeId, VolumeName, VolumeQuota, VolumeSpec};
use futures_util::future::join_all;

mod common;
use common::backends::{both_backends, Fixture};
use common::{maximums, user};

fn new_volume(owner: &User, name: &str, size_mb: u64) -> NewVolume {
    NewVolume {
        id: VolumeId::new(),
        owner: owner.id,
        spec: VolumeSpec::from_stored(VolumeName::parse(name).unwrap(), size_mb, BTreeMap::new()),
        node: "node-a".into(),
        quota_mode: QuotaMode::Soft,
    }
}

fn quota(max_volumes: u64) -> VolumeQuota {
    VolumeQuota {
        max_volumes,
        max_volume_bytes: u64::MAX,
    }
}

async fn volume(store: &Store, owner: &User, name: &str) -> Volume {
    let new = new_volume(owner, name, 10);
    store
        .create_volume_within_quota(new, quota(100))
        .await
        .unwrap()
}

/// A running-ish sandbox (`creating`) of `owner` holding `mounts`.
async fn sandbox_with(
    store: &Store,
    owner: &User,
    mounts: Vec<MountHold>,
) -> Result<airlock::store::Sandbox, StoreError> {
    let spec = SandboxRequest {
        image: "alpine:3".into(),
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap();
    let new = NewSandbox {
        owner: owner.id,
        spec,
        idempotency_key: None,
        node: Some("node-a".into()),
    };
    match store.create_sandbox_holding(new, &mounts).await? {
        Created::New(sandbox) => Ok(sandbox),
        Created::Existing(_) => panic!("no idempotency key was given"),
    }
}

fn hold(volume: &Volume, read_only: bool) -> MountHold {
    MountHold {
        volume: volume.id,
        target: "/workspace".into(),
        read_only,
    }
}

// 20 parallel creates against a limit of 5: exactly 5 succeed, 15 are refused naming the
// quota; another user is not affected.
both_backends!(parallel_creates_never_overshoot, |f: Fixture| async move {
    let store = f.store;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let creates = (0..20).map(|i| {
        let store = store.clone();
        let new = new_volume(&alice, &format!("v{i}"), 10);
        tokio::spawn(async move { store.create_volume_within_quota(new, quota(5)).await })
    });
    let results: Vec<_> = join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(
            |r| matches!(r, Err(StoreError::QuotaExceeded(e)) if e.kind == QuotaKind::MaxVolumes),
        )
        .count();
    assert_eq!((created, refused), (5, 15), "created, refused");
    let listed = store.list_volumes(Scope::Owner(alice.id)).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(store
        .create_volume_within_quota(new_volume(&bob, "v0", 10), quota(5))
        .await
        .is_ok());
    assert!(
        store
            .list_volumes(Scope::Owner(bob.id))
            .await
            .unwrap()
            .len()
            == 1
    );
});

// The byte quota sums sizes; a name is unique per owner, not across owners; Docker names
// carry the id and are never reused.
both_backends!(bytes_names_and_docker_names, |f: Fixture| async move {
    let store = f.store;
    let carol = user(&store, "carol").await;
    let dave = user(&store, "dave").await;
    let bytes = VolumeQuota {
        max_volumes: 100,
        max_volume_bytes: 30 * 1024 * 1024,
    };
    let first = store
        .create_volume_within_quota(new_volume(&carol, "a", 20), bytes)
        .await
        .unwrap();
    let over = store
        .create_volume_within_quota(new_volume(&carol, "b", 11), bytes)
        .await;
    assert!(
        matches!(over, Err(StoreError::QuotaExceeded(ref e)) if e.kind == QuotaKind::MaxVolumeBytes),
        "{over:?}"
    );
    let again = store
        .create_volume_within_quota(new_volume(&carol, "a", 1), bytes)
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert!(store
        .create_volume_within_quota(new_volume(&dave, "a", 1), bytes)
        .await
        .is_ok());
    assert_eq!(first.docker_name, format!("airlock-vol-{}", first.id));
    // Another owner's volume is invisible, like a missing one.
    assert!(store
        .get_volume(Scope::Owner(dave.id), first.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .delete_volume(Scope::Owner(dave.id), first.id)
        .await
        .unwrap()
        .is_none());
    // Recreated under the same name after a delete: a new id, a new Docker name.
    store
        .delete_volume(Scope::Owner(carol.id), first.id)
        .await
        .unwrap()
        .unwrap();
    let recreated = store
        .create_volume_within_quota(new_volume(&carol, "a", 20), bytes)
        .await
        .unwrap();
    assert_ne!(recreated.docker_name, first.docker_name);
});

// One live read-write holder at a time, any number of readers; the end releases the hold;
// a held volume cannot be deleted; a volume sampled over its size refuses read-write.
both_backends!(mount_holds, |f: Fixture| async move {
    let store = f.store;
    let erin = user(&store, "erin").await;
    let repo = volume(&store, &erin, "repo").await;
    let writer = sandbox_with(&store, &erin, vec![hold(&repo, false)])
        .await
        .unwrap();
    let second = sandbox_with(&store, &erin, vec![hold(&repo, false)]).await;
    assert!(
        matches!(second, Err(StoreError::VolumeHeld { holder, .. }) if holder == writer.id),
        "{second:?}"
    );
    let reader = sandbox_with(&store, &erin, vec![hold(&repo, true)])
        .await
        .unwrap();
    let holders = store.volume_holders(repo.id).await.unwrap();
    assert_eq!(holders.len(), 2);
    let deleted = store.delete_volume(Scope::All, repo.id).await;
    assert!(
        matches!(deleted, Err(StoreError::VolumeInUse { ref holders }) if holders.len() == 2),
        "{deleted:?}"
    );
    // The writer ends: its hold is released in the same transaction.
    store
        .record_transition(writer.id, 1, &SandboxEvent::Ended(EndReason::Stopped))
        .await
        .unwrap();
    let holders = store.volume_holders(repo.id).await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].sandbox, reader.id);
    let next = sandbox_with(&store, &erin, vec![hold(&repo, false)]).await;
    assert!(next.is_ok(), "{next:?}");
    // Sampled over its size (10 MiB): no new read-write mount, read-only still fine.
    let full = volume(&store, &erin, "full").await;
    store
        .set_volume_usage(full.id, 11 * 1024 * 1024, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let rw = sandbox_with(&store, &erin, vec![hold(&full, false)]).await;
    assert!(
        matches!(rw, Err(StoreError::VolumeOverQuota { .. })),
        "{rw:?}"
    );
    assert!(sandbox_with(&store, &erin, vec![hold(&full, true)])
        .await
        .is_ok());
    // A refused create leaves no sandbox behind.
    let page = store
        .list_sandboxes(Scope::Owner(erin.id), Default::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
});

// A files write's lease and a read-write sandbox mount exclude each other; read-only mounts
// and other writes do not wait; an expired lease holds nothing; a start clears the node's.
both_backends!(write_leases, |f: Fixture| async move {
    let store = f.store;
    let ivan = user(&store, "ivan").await;
    let repo = volume(&store, &ivan, "repo").await;
    let hour = Duration::from_secs(3600);
    let lease = store.take_volume_write_lease(repo.id, hour).await.unwrap();
    let second = store.take_volume_write_lease(repo.id, hour).await.unwrap();
    let rw = sandbox_with(&store, &ivan, vec![hold(&repo, false)]).await;
    assert!(
        matches!(rw, Err(StoreError::VolumeWriting { volume }) if volume == repo.id),
        "{rw:?}"
    );
    assert!(sandbox_with(&store, &ivan, vec![hold(&repo, true)])
        .await
        .is_ok());
    let deleted = store.delete_volume(Scope::All, repo.id).await;
    assert!(
        matches!(deleted, Err(StoreError::VolumeWriting { .. })),
        "{deleted:?}"
    );
    store.release_volume_write_lease(lease).await.unwrap();
    store.release_volume_write_lease(second).await.unwrap();
    // An expired lease (no time to live) holds nothing.
    store
        .take_volume_write_lease(repo.id, Duration::ZERO)
        .await
        .unwrap();
    let writer = sandbox_with(&store, &ivan, vec![hold(&repo, false)])
        .await
        .unwrap();
    let refused = store.take_volume_write_lease(repo.id, hour).await;
    assert!(
        matches!(refused, Err(StoreError::VolumeHeld { holder, .. }) if holder == writer.id),
        "{refused:?}"
    );
    let missing = store.take_volume_write_lease(VolumeId::new(), hour).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    // Raced: on each fresh volume, a lease and a read-write create never both win.
    for round in 0..8 {
        let vol = volume(&store, &ivan, &format!("race-{round}")).await;
        let (leased, created) = tokio::join!(
            store.take_volume_write_lease(vol.id, hour),
            sandbox_with(&store, &ivan, vec![hold(&vol, false)]),
        );
        assert!(
            leased.is_ok() != created.is_ok(),
            "round {round}: {leased:?} / {created:?}"
        );
    }

    // A start clears the node's leases.
    let free = volume(&store, &ivan, "free").await;
    store.take_volume_write_lease(free.id, hour).await.unwrap();
    assert!(store.clear_volume_write_leases("node-a").await.unwrap() >= 1);
    assert!(sandbox_with(&store, &ivan, vec![hold(&free, false)])
        .await
        .is_ok());
});
