//! The reconciler's helper sweep against a real DinD: trust volumes and never-started trust
//! fillers (what controllers before stop 28 made for sandboxes with credentials) of a sandbox
//! with no row or an ended row are removed, a live sandbox's are kept
//! (also by a full pass, whose planner never takes a helper for a sandbox container); files,
//! sampler, volume-owner and folder-stat helpers are kept within the grace and removed after
//! it. Every object is made through the real spec builders and found by its labels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use airlock::config::DEFAULT_NODE;
use airlock::docker::spec::folder::root_stat_body;
use airlock::docker::spec::trust::{trust_helper_body, trust_helper_name, trust_volume_name};
use airlock::docker::spec::volume::{chown_body, sampler_body};
use airlock::docker::DockerClient;
use airlock::reconcile::{Pass, ReconcileSettings, Reconciler, SweepReport};
use airlock::sandbox::{EndReason, RunAs, SandboxEvent, SandboxId, SandboxRequest};
use airlock::store::{Created, NewSandbox};
use airlock::volume::VolumeId;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{InspectContainerOptions, RemoveVolumeOptions};
use e2e::controller::{parts, Parts};
use e2e::serve::DEADLINE;
use e2e::{dind_with_testbox, Timing};
use test_support::dind::{Dind, DindOptions, TESTBOX_IMAGE};

/// Makes sandbox `id`'s trust volume and its (never-started) filler.
async fn trust_objects(docker: &DockerClient, id: SandboxId) {
    docker.create_trust_volume(id, DEFAULT_NODE).await.unwrap();
    let body = trust_helper_body(id, DEFAULT_NODE, TESTBOX_IMAGE);
    docker
        .create_container(&trust_helper_name(id), body)
        .await
        .unwrap();
}

async fn container_exists(dind: &Dind, name: &str) -> bool {
    dind.docker()
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .is_ok()
}

async fn volume_exists(dind: &Dind, name: &str) -> bool {
    dind.docker().inspect_volume(name).await.is_ok()
}

fn reconciler(parts: &Parts, grace: Duration) -> Reconciler {
    let mut settings = ReconcileSettings::new(DEFAULT_NODE, Duration::from_secs(1));
    settings.helper_grace = grace;
    Reconciler::new(parts.store.clone(), parts.docker.clone(), settings)
}

#[tokio::test]
async fn leftover_helpers_and_trust_volumes_are_swept_and_live_ones_kept() {
    let mut timing = Timing::start("reconcile_sweep");
    let dind = dind_with_testbox(DindOptions::new("reconcile_sweep"), &mut timing)
        .await
        .unwrap();
    let p = parts(&dind, &[]).await;
    let spec = SandboxRequest {
        image: TESTBOX_IMAGE.to_owned(),
        ..SandboxRequest::default()
    }
    .validate(&p.config.maximums)
    .unwrap();
    let mut rows = Vec::new();
    for _ in 0..2 {
        let new = NewSandbox {
            owner: p.admin,
            spec: spec.clone(),
            idempotency_key: None,
            node: None,
        };
        let Created::New(sandbox) = p.store.create_sandbox(new).await.unwrap() else {
            panic!("a fresh sandbox");
        };
        rows.push(sandbox);
    }
    // `live` stays `creating`; `ended` fails; `orphan` never had a row.
    let (live, ended) = (rows[0].id, rows[1].id);
    let failed = SandboxEvent::Ended(EndReason::Error { message: None });
    p.store
        .record_transition(ended, rows[1].generation, &failed)
        .await
        .unwrap();
    let orphan = SandboxId::new();
    for id in [live, ended, orphan] {
        trust_objects(&p.docker, id).await;
    }
    // A files helper and a sampler left by a crash, on a volume of their own.
    let volume = format!(
        "sw-sweep-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    p.docker
        .create_volume(VolumeCreateRequest {
            name: Some(volume.clone()),
            ..VolumeCreateRequest::default()
        })
        .await
        .unwrap();
    let files = p
        .docker
        .create_files_helper(VolumeId::new(), &volume, TESTBOX_IMAGE, true, DEFAULT_NODE)
        .await
        .unwrap();
    let sampler = "sw-sweep-sampler";
    let body = sampler_body(VolumeId::new(), &volume, TESTBOX_IMAGE, DEFAULT_NODE);
    p.docker.create_container(sampler, body).await.unwrap();
    // A volume-owner fix of the live sandbox and a doctor's folders-root stat, left by a crash
    // (never started here: the sweep judges them by age alone).
    let owner_fix = "sw-sweep-volown";
    let run_as = RunAs {
        uid: 1000,
        gid: 1000,
    };
    let body = chown_body(live, &volume, run_as, TESTBOX_IMAGE, DEFAULT_NODE);
    p.docker.create_container(owner_fix, body).await.unwrap();
    let folder_stat = "sw-sweep-folderstat";
    let body = root_stat_body("/tmp", TESTBOX_IMAGE, DEFAULT_NODE);
    p.docker.create_container(folder_stat, body).await.unwrap();
    timing.phase("objects");

    // Within the grace: only the orphan's and the ended sandbox's trust objects go.
    let started = Instant::now();
    let swept = reconciler(&p, Duration::from_secs(600))
        .sweep_helpers()
        .await
        .unwrap();
    eprintln!(
        "e2e-figure reconcile_sweep sweep_ms {}",
        started.elapsed().as_millis()
    );
    assert_eq!(
        swept,
        SweepReport {
            helpers: 2,
            trust_volumes: 2
        }
    );
    for gone in [ended, orphan] {
        assert!(!container_exists(&dind, &trust_helper_name(gone)).await);
        assert!(!volume_exists(&dind, &trust_volume_name(gone)).await);
    }
    assert!(container_exists(&dind, &trust_helper_name(live)).await);
    assert!(volume_exists(&dind, &trust_volume_name(live)).await);
    for kept in [files.as_str(), sampler, owner_fix, folder_stat] {
        assert!(
            container_exists(&dind, kept).await,
            "{kept} within the grace"
        );
    }
    timing.phase("sweep-in-grace");

    // A full pass never takes a live sandbox's filler for an orphan container.
    reconciler(&p, Duration::from_secs(600))
        .reconcile(Pass::Periodic)
        .await
        .unwrap();
    assert!(container_exists(&dind, &trust_helper_name(live)).await);
    assert!(volume_exists(&dind, &trust_volume_name(live)).await);

    // After the grace: the files, sampler, volume-owner and folder-stat helpers go too; the
    // live objects stay.
    let late = reconciler(&p, Duration::ZERO);
    let deadline = Instant::now() + DEADLINE;
    let mut removed = 0;
    while removed < 4 {
        removed += late.sweep_helpers().await.unwrap().helpers;
        assert!(Instant::now() < deadline, "the helpers were not swept");
        if removed < 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for gone in [files.as_str(), sampler, owner_fix, folder_stat] {
        assert!(
            !container_exists(&dind, gone).await,
            "{gone} after the grace"
        );
    }
    assert!(container_exists(&dind, &trust_helper_name(live)).await);
    assert!(volume_exists(&dind, &trust_volume_name(live)).await);
    timing.phase("sweep-after-grace");

    // Once the live sandbox ends, its objects are leftovers as well.
    p.store
        .record_transition(live, rows[0].generation, &failed)
        .await
        .unwrap();
    let swept = late.sweep_helpers().await.unwrap();
    assert_eq!(
        swept,
        SweepReport {
            helpers: 1,
            trust_volumes: 1
        }
    );
    dind.docker()
        .remove_volume(&volume, None::<RemoveVolumeOptions>)
        .await
        .unwrap();
}
