//! Archive verification over synthetic `docker save` and OCI archives.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::*;

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A small layer tar holding one file.
fn layer(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", content.as_bytes())
        .unwrap();
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn config(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha(l)))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

fn write_tar(dir: &Path, name: &str, members: &[(String, Vec<u8>)]) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, data.as_slice())
            .unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, builder.into_inner().unwrap()).unwrap();
    path
}

/// The old `docker save` layout: `<id>.json`, `<layer>/layer.tar`, `manifest.json`.
fn docker_save_members() -> Vec<(String, Vec<u8>)> {
    let (l1, l2) = (layer("one"), layer("two"));
    let cfg = config(&[&l1, &l2]);
    let id = sha(&cfg);
    let manifest = serde_json::json!([{
        "Config": format!("{id}.json"),
        "RepoTags": ["airlock/unit:dev"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"]
    }]);
    vec![
        ("aaa/layer.tar".to_owned(), l1),
        ("bbb/layer.tar".to_owned(), l2),
        (format!("{id}.json"), cfg),
        (
            "manifest.json".to_owned(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
    ]
}

/// An OCI layout with one gzip layer and a ref-name annotation.
fn oci_members() -> Vec<(String, Vec<u8>)> {
    let plain = layer("oci");
    let gz = gzip(&plain);
    let cfg = config(&[&plain]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha(&gz)), "size": gz.len()}]
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": "airlock/oci:dev", "org.opencontainers.image.ref.name": "dev"}}]
    }))
    .unwrap();
    vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (format!("blobs/sha256/{}", sha(&gz)), gz),
        (format!("blobs/sha256/{}", sha(&cfg)), cfg),
        (format!("blobs/sha256/{}", sha(&manifest)), manifest),
        ("index.json".to_owned(), index),
    ]
}

#[test]
fn docker_save_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tar(dir.path(), "img.tar", &docker_save_members());
    let verified = verify(&path).unwrap();
    assert_eq!(verified.format, ArchiveFormat::DockerSave);
    assert_eq!(verified.images.len(), 1);
    assert_eq!(verified.images[0].tags, vec!["airlock/unit:dev".to_owned()]);
    assert_eq!(verified.label(), "airlock/unit:dev");
    let file = std::fs::read(&path).unwrap();
    assert_eq!(verified.sha256, sha(&file));
    assert_eq!(verified.bytes, file.len() as u64);
}

#[test]
fn gzipped_archive_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tar(dir.path(), "img.tar", &docker_save_members());
    let gz = dir.path().join("img.tar.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&path).unwrap())).unwrap();
    assert_eq!(verify(&gz).unwrap().images.len(), 1);
}

#[test]
fn oci_layout_verifies_with_gzip_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tar(dir.path(), "oci.tar", &oci_members());
    let verified = verify(&path).unwrap();
    assert_eq!(verified.format, ArchiveFormat::OciLayout);
    assert_eq!(verified.images[0].tags, vec!["airlock/oci:dev".to_owned()]);
}

#[test]
fn flipped_layer_byte_is_refused_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = docker_save_members();
    let last = members[1].1.len() - 1100; // inside the file's data block
    members[1].1[last] ^= 0x01;
    let path = write_tar(dir.path(), "img.tar", &members);
    let error = verify(&path).unwrap_err().to_string();
    assert!(error.contains("`bbb/layer.tar`"), "{error}");
    assert!(error.contains("rootfs.diff_ids[1]"), "{error}");
    assert!(error.contains("expected"), "{error}");
}

#[test]
fn tampered_oci_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = oci_members();
    let n = members[1].1.len() / 2;
    members[1].1[n] ^= 0x40;
    let path = write_tar(dir.path(), "oci.tar", &members);
    let error = verify(&path).unwrap_err().to_string();
    assert!(error.contains("blobs/sha256/"), "{error}");
    assert!(error.contains("does not match"), "{error}");
}

#[test]
fn truncated_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tar(dir.path(), "img.tar", &docker_save_members());
    let bytes = std::fs::read(&path).unwrap();
    for cut in [700, 2000, bytes.len() / 2, bytes.len() - 1536] {
        let cut_path = dir.path().join(format!("cut-{cut}.tar"));
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let error = verify(&cut_path).unwrap_err();
        assert!(
            matches!(
                error,
                ArchiveError::Truncated { .. } | ArchiveError::Missing { .. }
            ),
            "cut at {cut}: {error}"
        );
    }
}

#[test]
fn config_not_matching_its_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = docker_save_members();
    members[2].1.push(b' ');
    let path = write_tar(dir.path(), "img.tar", &members);
    let error = verify(&path).unwrap_err().to_string();
    assert!(error.contains("image id"), "{error}");
}

#[test]
fn bundle_sums_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = docker_save_members();
    let sums: String = members
        .iter()
        .map(|(n, d)| format!("{}  {n}\n", sha(d)))
        .collect();
    members.push((SHA256SUMS.to_owned(), sums.clone().into_bytes()));
    let good = write_tar(dir.path(), "good.tar", &members);
    verify(&good).unwrap();

    let bad_sums = sums.replacen(&sha(&members[0].1), &"0".repeat(64), 1);
    let last = members.len() - 1;
    members[last].1 = bad_sums.into_bytes();
    let bad = write_tar(dir.path(), "bad.tar", &members);
    let error = verify(&bad).unwrap_err().to_string();
    assert!(
        error.contains("SHA256SUMS") && error.contains("aaa/layer.tar"),
        "{error}"
    );
}

#[test]
fn sums_parse_both_separators() {
    let hex = "a".repeat(64);
    let sums = parse_sums(&format!("{hex}  one.tar\n{hex} *two.tar\n\n")).unwrap();
    assert_eq!(sums.len(), 2);
    assert!(parse_sums("nothex  x").is_err());
}
