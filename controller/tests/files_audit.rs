//! Refused files writes are audited like accepted ones, through the API in process (the store
//! in memory, Docker unreachable, so only refusals decided before Docker is called): the
//! upload command files one row naming the route, the target (the sandbox or volume id), the
//! path and the refusal's code and reason, with the status the caller got; the refusal
//! recorder files no second row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use airlock::accounts::user::Role;
use airlock::sandbox::SandboxRequest;
use airlock::store::{Created, MountHold, NewAuditRecord, NewSandbox, NewVolume, Store, User};
use airlock::volume::{QuotaMode, VolumeId, VolumeName, VolumeQuota, VolumeSpec};
use axum::http::{Method, StatusCode};

mod common;
use common::{account, app_with, call, maximums, AppOptions};

/// Every row of `action`, oldest first.
async fn rows_of(store: &Store, action: &str) -> Vec<NewAuditRecord> {
    let mut rows: Vec<_> = store
        .list_audit(None, 500)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .filter(|r| r.action == action)
        .collect();
    rows.reverse();
    rows
}

async fn volume(store: &Store, owner: &User, name: &str) -> VolumeId {
    let new = NewVolume {
        id: VolumeId::new(),
        owner: owner.id,
        spec: VolumeSpec::from_stored(VolumeName::parse(name).unwrap(), 10, BTreeMap::new()),
        node: "local".into(),
        quota_mode: QuotaMode::Soft,
    };
    let quota = VolumeQuota {
        max_volumes: 10,
        max_volume_bytes: u64::MAX,
    };
    store
        .create_volume_within_quota(new, quota)
        .await
        .unwrap()
        .id
}

/// A sandbox of `owner` (still `creating`) holding `volume` read-write at `/workspace`.
async fn writer(store: &Store, owner: &User, volume: VolumeId) -> String {
    let spec = SandboxRequest {
        image: "airlock/testbox:dev".into(),
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap();
    let new = NewSandbox {
        owner: owner.id,
        spec,
        idempotency_key: None,
        node: Some("local".into()),
    };
    let hold = MountHold {
        volume,
        target: "/workspace".into(),
        read_only: false,
    };
    match store.create_sandbox_holding(new, &[hold]).await.unwrap() {
        Created::New(sandbox) => sandbox.id.to_string(),
        Created::Existing(_) => panic!("no idempotency key was given"),
    }
}

#[tokio::test]
async fn refused_writes_file_a_row_naming_target_path_and_code() {
    let h = app_with(AppOptions {
        token: Some("test-admin-token-0123456789"),
        ..AppOptions::default()
    })
    .await;
    let (owner, token) = account(&h.store, "writer", Role::Member).await;
    let (stranger, other) = account(&h.store, "other", Role::Member).await;
    let repo = volume(&h.store, &owner, "repo").await;
    let sandbox = writer(&h.store, &owner, repo).await;

    // The volume is held read-write by a sandbox: the volume route refuses the write.
    let uri = format!("/v1/volumes/{repo}/files?path=/src");
    let (status, body) = call(&h, &token, Method::PUT, &uri, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("volume_in_use")),
        "{body}"
    );
    // Another tenant's write to it is a 404, audited as such.
    let (status, _) = call(&h, &other, Method::PUT, &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A malformed path.
    let uri = format!("/v1/volumes/{repo}/files?path=src/../x");
    let (status, body) = call(&h, &token, Method::PUT, &uri, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let rows = rows_of(&h.store, "PUT /v1/volumes/{id}/files").await;
    let seen: Vec<_> = rows
        .iter()
        .map(|r| (r.status, r.object.clone(), r.user))
        .collect();
    let object = Some(repo.to_string());
    assert_eq!(
        seen,
        [
            (409, object.clone(), Some(owner.id)),
            (404, object.clone(), Some(stranger.id)),
            (400, object, Some(owner.id)),
        ],
        "one row per refused write, none from the recorder: {rows:#?}"
    );
    let details: Vec<_> = rows.iter().map(|r| r.detail.clone().unwrap()).collect();
    assert!(
        details[0].starts_with(&format!(
            "path=/src refused=volume_in_use: sandbox {sandbox}"
        )),
        "{details:?}"
    );
    assert!(
        details[1].starts_with("path=/src refused=not_found"),
        "{details:?}"
    );
    assert!(
        details[2].starts_with("path=src/../x refused=invalid_request: path: "),
        "{details:?}"
    );

    // A raw write into a sandbox that is not running.
    let uri = format!("/v1/sandboxes/{sandbox}/files/content?path=/workspace/a.txt");
    let (status, body) = call(&h, &token, Method::PUT, &uri, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("sandbox_not_running")),
        "{body}"
    );
    let rows = rows_of(&h.store, "PUT /v1/sandboxes/{id}/files/content").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (rows[0].status, rows[0].object.as_deref()),
        (409, Some(sandbox.as_str()))
    );
    let detail = rows[0].detail.as_deref().unwrap();
    assert!(
        detail.starts_with("path=/workspace/a.txt refused=sandbox_not_running: "),
        "{detail}"
    );
}
