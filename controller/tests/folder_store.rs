//! Host folders at the store, on SQLite (a file) and on Postgres (a fresh database on the
//! test-support server): names and realpaths are unique, parallel registrations of
//! overlapping folders admit exactly one, a grant naming no user writes nothing, grants are
//! replaced whole and decide who finds a folder by name, and a folder mounted by a live
//! sandbox cannot be deleted (an ended sandbox no longer holds it), nor lose the grant of a
//! live mount's owner.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use airlock::accounts::quota::Quota;
use airlock::accounts::user::UserId;
use airlock::folder::path::PathRefusal;
use airlock::folder::{FolderMode, FolderName};
use airlock::sandbox::{EndReason, SandboxEvent, SandboxRequest};
use airlock::store::{
    Created, Folder, FolderHold, Holds, NewFolder, NewSandbox, Store, StoreError, User,
};
use futures_util::future::join_all;

mod common;
use common::backends::{both_backends, Fixture};
use common::{maximums, user};

fn new_folder(name: &str, realpath: &str, grants: Vec<UserId>) -> NewFolder {
    NewFolder {
        name: FolderName::parse(name).unwrap(),
        path: realpath.to_owned(),
        realpath: PathBuf::from(realpath),
        mode: FolderMode::ReadOnly,
        grants,
        created_by: None,
    }
}

async fn folder(store: &Store, name: &str, realpath: &str, grants: Vec<UserId>) -> Folder {
    store
        .create_folder(new_folder(name, realpath, grants))
        .await
        .unwrap()
}

async fn sandbox_holding(store: &Store, owner: &User, folder: &Folder) -> airlock::store::Sandbox {
    match try_holding(store, owner, folder).await.unwrap() {
        Created::New(sandbox) => sandbox,
        Created::Existing(_) => panic!("no idempotency key was given"),
    }
}

/// A create of `owner` holding `folder` read-only at `/data`.
async fn try_holding(store: &Store, owner: &User, folder: &Folder) -> Result<Created, StoreError> {
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
    let folders = [FolderHold {
        folder: folder.id,
        target: "/data".into(),
        read_only: true,
    }];
    let holds = Holds {
        volumes: &[],
        folders: &folders,
    };
    store
        .create_sandbox_within_quota_holding(new, Quota::UNLIMITED, holds, None)
        .await
}

both_backends!(names_realpaths_and_overlaps, |f: Fixture| async move {
    let store = f.store;
    folder(&store, "data", "/srv/f/data", vec![]).await;
    let taken = store
        .create_folder(new_folder("data", "/srv/f/other", vec![]))
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict { .. })),
        "{taken:?}"
    );
    let cases = [
        ("same", "/srv/f/data", "Duplicate"),
        ("inside", "/srv/f/data/x", "Overlaps"),
        ("around", "/srv/f", "Overlaps"),
    ];
    for (name, path, want) in cases {
        let refused = store.create_folder(new_folder(name, path, vec![])).await;
        let got = match refused {
            Err(StoreError::FolderPath(PathRefusal::Duplicate { ref folder })) => {
                assert_eq!(folder, "data");
                "Duplicate"
            }
            Err(StoreError::FolderPath(PathRefusal::Overlaps { ref folder })) => {
                assert_eq!(folder, "data");
                "Overlaps"
            }
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(got, want, "{path}");
    }
    // A string prefix is not a parent.
    folder(&store, "data2", "/srv/f/data2", vec![]).await;
    assert_eq!(store.list_folders(None).await.unwrap().len(), 2);
});

both_backends!(
    parallel_overlapping_registrations_admit_one,
    |f: Fixture| async move {
        let store = f.store;
        let paths: Vec<String> = (0..8)
            .map(|i| "/srv/p".to_owned() + &"/x".repeat(i))
            .collect();
        let tries = paths.iter().enumerate().map(|(i, path)| {
            let store = store.clone();
            let new = new_folder(&format!("p{i}"), path, vec![]);
            async move { store.create_folder(new).await }
        });
        let results = join_all(tries).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        for result in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(
                    result,
                    Err(StoreError::FolderPath(_) | StoreError::Contended)
                ),
                "{result:?}"
            );
        }
    }
);

both_backends!(grants_decide_who_finds_a_folder, |f: Fixture| async move {
    let store = f.store;
    let alice = user(&store, "alice@example.org").await;
    let bob = user(&store, "bob@example.org").await;
    let ghost = UserId::new();
    let refused = store
        .create_folder(new_folder("data", "/srv/g/data", vec![alice.id, ghost]))
        .await;
    assert!(
        matches!(refused, Err(StoreError::UnknownUser(u)) if u == ghost),
        "{refused:?}"
    );
    assert!(
        store.list_folders(None).await.unwrap().is_empty(),
        "nothing written"
    );
    let data = folder(&store, "data", "/srv/g/data", vec![alice.id]).await;
    let name = FolderName::parse("data").unwrap();
    assert!(store
        .granted_folder(alice.id, &name)
        .await
        .unwrap()
        .is_some());
    assert!(store.granted_folder(bob.id, &name).await.unwrap().is_none());
    assert_eq!(store.list_folders(Some(bob.id)).await.unwrap().len(), 0);
    let changed = store
        .set_folder_grants(data.id, &[bob.id])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.grants, vec![bob.id]);
    assert!(store
        .granted_folder(alice.id, &name)
        .await
        .unwrap()
        .is_none());
    assert!(store.granted_folder(bob.id, &name).await.unwrap().is_some());
    let refused = store.set_folder_grants(data.id, &[ghost]).await;
    assert!(
        matches!(refused, Err(StoreError::UnknownUser(_))),
        "{refused:?}"
    );
    let kept = store.get_folder(data.id).await.unwrap().unwrap();
    assert_eq!(kept.grants, vec![bob.id], "a refused change writes nothing");
    let missing = store
        .set_folder_grants(airlock::folder::FolderId::new(), &[])
        .await;
    assert!(matches!(missing, Ok(None)), "{missing:?}");
});

both_backends!(
    a_mounted_folder_cannot_be_deleted,
    |f: Fixture| async move {
        let store = f.store;
        let alice = user(&store, "alice@example.org").await;
        let data = folder(&store, "data", "/srv/d/data", vec![alice.id]).await;
        let running = sandbox_holding(&store, &alice, &data).await;
        let holders = store.folder_holders(data.id).await.unwrap();
        assert_eq!(holders.len(), 1);
        assert_eq!(holders[0].sandbox, running.id);
        let refused = store.delete_folder(data.id).await;
        assert!(
            matches!(refused, Err(StoreError::FolderInUse { ref holders }) if holders == &[running.id]),
            "{refused:?}"
        );
        store
            .record_transition(running.id, 1, &SandboxEvent::Ended(EndReason::Stopped))
            .await
            .unwrap();
        assert!(store.folder_holders(data.id).await.unwrap().is_empty());
        let deleted = store.delete_folder(data.id).await.unwrap();
        assert_eq!(deleted.map(|f| f.id), Some(data.id));
        assert!(store.get_folder(data.id).await.unwrap().is_none());
        assert!(store.delete_folder(data.id).await.unwrap().is_none());
    }
);

// A grant change that would take the folder from the owner of a live sandbox mounting it is
// refused naming that sandbox and writes nothing; one that keeps the owner (adding someone)
// passes; once the sandbox ended the grant goes. A create for a user without the grant holds
// nothing (the grant is checked again in the create's transaction).
both_backends!(
    a_mounted_folder_keeps_its_holders_grants,
    |f: Fixture| async move {
        let store = f.store;
        let alice = user(&store, "alice@example.org").await;
        let bob = user(&store, "bob@example.org").await;
        let data = folder(&store, "data", "/srv/d/data", vec![alice.id]).await;
        let running = sandbox_holding(&store, &alice, &data).await;
        let refused = store.set_folder_grants(data.id, &[bob.id]).await;
        assert!(
            matches!(refused, Err(StoreError::FolderInUse { ref holders }) if holders == &[running.id]),
            "{refused:?}"
        );
        let kept = store.get_folder(data.id).await.unwrap().unwrap();
        assert_eq!(
            kept.grants,
            vec![alice.id],
            "a refused change writes nothing"
        );
        let both = store
            .set_folder_grants(data.id, &[alice.id, bob.id])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(both.grants.len(), 2);
        store
            .record_transition(running.id, 1, &SandboxEvent::Ended(EndReason::Stopped))
            .await
            .unwrap();
        let only_bob = store
            .set_folder_grants(data.id, &[bob.id])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(only_bob.grants, vec![bob.id]);
        let ungranted = try_holding(&store, &alice, &data).await;
        assert!(
            matches!(ungranted, Err(StoreError::NotFound)),
            "{ungranted:?}"
        );
        assert!(store.folder_holders(data.id).await.unwrap().is_empty());
    }
);
