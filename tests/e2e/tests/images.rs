//! `airlock images`: real `docker save` archives verified and loaded into a DinD over mTLS;
//! tampered and truncated archives refused before anything reaches the daemon; an OCI layout
//! loaded; bundle → load; and the import rate of a large image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use airlock::docker::DockerClient;
use airlock::images::load::{self, Node};
use airlock::images::progress::{NoProgress, Progress, TextProgress};
use airlock::images::{bundle, ArchiveError, ArchiveFormat, LoadError};
use e2e::controller::parts;
use e2e::Timing;
use test_support::dind::{Dind, DindOptions, DIND_IMAGE, TESTBOX_IMAGE};
use tokio::process::Command;

/// `docker save IMAGE` from the host daemon into `dir/name`.
async fn docker_save(image: &str, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("docker")
        .args(["save", "-o"])
        .arg(&out)
        .arg(image)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "docker save {image}");
    out
}

fn node(docker: &DockerClient) -> Vec<Node> {
    vec![Node {
        name: "local".to_owned(),
        client: docker.clone(),
    }]
}

async fn host_image_id(image: &str) -> String {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Rewrites the layer member `layer` of a tar with one byte flipped in its data.
fn flip_layer_byte(from: &Path, to: &Path) -> String {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    let mut flipped = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if flipped.is_none() && name.ends_with("layer.tar") && data.len() > 2048 {
            let middle = data.len() / 2;
            data[middle] ^= 0x01;
            flipped = Some(name);
        }
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.finish().unwrap();
    flipped.expect("a layer to flip")
}

/// Converts a `docker save` tar (old layout) into an OCI image layout tar.
fn to_oci(from: &Path, to: &Path, tag: &str) {
    let mut members = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        members.insert(name, data);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let sha = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    let mut blobs = Vec::new();
    let config = &members[manifest[0]["Config"].as_str().unwrap()];
    let config_desc = serde_json::json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(config)), "size": config.len()});
    blobs.push(config.clone());
    let mut layers = Vec::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let data = &members[layer.as_str().unwrap()];
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha(data)), "size": data.len()}));
        blobs.push(data.clone());
    }
    let image_manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config_desc, "layers": layers})).unwrap();
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha(&image_manifest)), "size": image_manifest.len(), "annotations": {"io.containerd.image.name": tag}}]})).unwrap();
    blobs.push(image_manifest);
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for blob in &blobs {
        add(&format!("blobs/sha256/{}", sha(blob)), blob);
    }
    add("index.json", &index);
    builder.finish().unwrap();
}

#[tokio::test]
async fn load_round_trip_and_refusals() {
    let mut timing = Timing::start("images_load_round_trip_and_refusals");
    let dind = Dind::start(DindOptions::new("images-load")).await.unwrap();
    timing.phase("dind-start");
    let parts = parts(&dind, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = docker_save(TESTBOX_IMAGE, dir.path(), "testbox.tar").await;
    let nodes = node(&parts.docker);

    // A flipped byte in one layer: refused, naming the layer; nothing reaches the daemon.
    let tampered = dir.path().join("tampered.tar");
    let layer = flip_layer_byte(&saved, &tampered);
    let error = load::verify_with_sums(&tampered).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, LoadError::Archive(ArchiveError::Digest { .. })),
        "{message}"
    );
    assert!(
        message.contains(&layer) && message.contains("expected"),
        "{message}"
    );
    eprintln!("tampered archive refused: {message}");

    // Truncated in the middle: refused.
    let bytes = std::fs::read(&saved).unwrap();
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let error = load::verify_with_sums(&truncated).unwrap_err();
    eprintln!("truncated archive refused: {error}");
    assert!(matches!(
        error,
        LoadError::Archive(ArchiveError::Truncated { .. } | ArchiveError::Missing { .. })
    ));
    assert!(!parts.docker.image_exists(TESTBOX_IMAGE).await.unwrap());

    // A SHA256SUMS beside the archive that disagrees: refused.
    let sums_dir = dir.path().join("with-sums");
    std::fs::create_dir(&sums_dir).unwrap();
    let beside = sums_dir.join("testbox.tar");
    std::fs::copy(&saved, &beside).unwrap();
    std::fs::write(
        sums_dir.join("SHA256SUMS"),
        format!("{}  testbox.tar\n", "0".repeat(64)),
    )
    .unwrap();
    let error = load::verify_with_sums(&beside).unwrap_err().to_string();
    assert!(
        error.contains("SHA256SUMS") && error.contains("does not match"),
        "{error}"
    );
    assert!(!parts.docker.image_exists(TESTBOX_IMAGE).await.unwrap());
    timing.phase("refusals");

    // The intact archive loads, and the node reports the id the config hashes to.
    let verified = load::verify_with_sums(&saved).unwrap();
    assert_eq!(verified.format, ArchiveFormat::DockerSave);
    let mut progress = TextProgress::new(std::io::stderr(), false);
    let records = load::load_into_nodes(&verified, &nodes, Some(&parts.store), &mut progress)
        .await
        .unwrap();
    let host_id = host_image_id(TESTBOX_IMAGE).await;
    assert_eq!(verified.images[0].id, host_id);
    assert_eq!(
        parts.docker.image_id(TESTBOX_IMAGE).await.unwrap(),
        Some(host_id.clone())
    );
    assert_eq!(records.len(), 1);
    let listed = parts.store.list_images().await.unwrap();
    assert_eq!(listed[0].reference, TESTBOX_IMAGE);
    assert_eq!(listed[0].image_id, host_id);
    timing.phase("load");
}

#[tokio::test]
async fn oci_layout_and_bundle_round_trip() {
    let mut timing = Timing::start("images_oci_layout_and_bundle_round_trip");
    let dind = Dind::start(DindOptions::new("images-oci")).await.unwrap();
    timing.phase("dind-start");
    let parts = parts(&dind, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = node(&parts.docker);

    // An OCI layout (no manifest.json) loads under its annotated name.
    let saved = docker_save(TESTBOX_IMAGE, dir.path(), "testbox.tar").await;
    let oci = dir.path().join("testbox-oci.tar");
    to_oci(&saved, &oci, "airlock/testbox-oci:dev");
    let verified = load::verify_with_sums(&oci).unwrap();
    assert_eq!(verified.format, ArchiveFormat::OciLayout);
    load::load_into_nodes(&verified, &nodes, Some(&parts.store), &mut NoProgress)
        .await
        .unwrap();
    let host_id = host_image_id(TESTBOX_IMAGE).await;
    assert_eq!(
        parts
            .docker
            .image_id("airlock/testbox-oci:dev")
            .await
            .unwrap(),
        Some(host_id)
    );
    timing.phase("oci");

    // bundle (from the host daemon) → load (into the DinD) of two images.
    let source = DockerClient::from_docker_env()
        .unwrap()
        .negotiated()
        .await
        .unwrap();
    let out = dir.path().join("bundle.tar");
    let images = vec![TESTBOX_IMAGE.to_owned(), "airlock/egress:dev".to_owned()];
    let bundled = bundle::bundle(&source, &images, &out).await.unwrap();
    assert_eq!(bundled.images.len(), 2);
    let verified = load::verify_with_sums(&out).unwrap();
    load::load_into_nodes(&verified, &nodes, Some(&parts.store), &mut NoProgress)
        .await
        .unwrap();
    for image in &images {
        assert_eq!(
            parts.docker.image_id(image).await.unwrap(),
            Some(host_image_id(image).await),
            "{image}"
        );
    }
    timing.phase("bundle");
}

/// Imports the ~390 MB DinD image and prints the rate (for the report).
#[tokio::test]
async fn import_rate_of_a_large_image() {
    let mut timing = Timing::start("images_import_rate_of_a_large_image");
    let dind = Dind::start(DindOptions::new("images-rate")).await.unwrap();
    timing.phase("dind-start");
    let parts = parts(&dind, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = docker_save(DIND_IMAGE, dir.path(), "dind.tar").await;
    timing.phase("docker-save");
    let started = Instant::now();
    let verified = load::verify_async(saved).await.unwrap();
    let verify_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut progress: Box<dyn Progress> = Box::new(TextProgress::new(std::io::stderr(), false));
    load::load_into_nodes(&verified, &node(&parts.docker), None, progress.as_mut())
        .await
        .unwrap();
    let load_s = started.elapsed().as_secs_f64();
    let mb = verified.bytes as f64 / 1e6;
    eprintln!(
        "e2e-figure images import {mb:.1} MB: verify {verify_s:.1}s ({:.1} MB/s), load {load_s:.1}s ({:.1} MB/s)",
        mb / verify_s,
        mb / load_s
    );
    assert!(parts.docker.image_exists(DIND_IMAGE).await.unwrap());
    timing.phase("import");
}
