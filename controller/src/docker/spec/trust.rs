//! Pure bodies for an inspected sandbox's trust files: the per-sandbox volume that holds
//! `tls/ca.pem` and `tls/bundle.pem`, its read-only mount at [`TRUST_MOUNT`], the variables
//! that point every common TLS client at them, the never-started helper that fills the
//! volume (the archive API cannot write through a read-only mount), and the archive itself.
//!
//! Invariants:
//! - the sandbox mounts the volume read-only; only the helper, which never runs a process,
//!   mounts it read-write;
//! - the volume and the helper carry the sandbox's id and node labels, so removing the
//!   sandbox's objects finds them;
//! - the archive holds only certificates (never a key).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, Mount, VolumeCreateRequest};

use super::helper::{helper_body, helper_labels, HelperKind, HelperSpec};
use super::volume::volume_mount;
use super::{LABEL_NODE, LABEL_SANDBOX_ID};
use crate::sandbox::spec::{TRUST_BUNDLE_ENV, TRUST_CA_ENV};
use crate::sandbox::SandboxId;

/// Where a sandbox mounts its trust volume.
pub const TRUST_MOUNT: &str = "/run/airlock";
/// The sandbox's inspection CA, as the sandbox sees it.
pub const CA_FILE: &str = "/run/airlock/tls/ca.pem";
/// The image's system bundle plus the CA, as the sandbox sees it.
pub const BUNDLE_FILE: &str = "/run/airlock/tls/bundle.pem";
/// Where Debian-family images keep the system bundle (read from the created container).
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The Docker volume holding sandbox `id`'s trust files.
pub fn trust_volume_name(id: SandboxId) -> String {
    format!("airlock-tls-{id}")
}

/// The never-started helper that fills sandbox `id`'s trust volume.
pub fn trust_helper_name(id: SandboxId) -> String {
    format!("airlock-tlsfill-{id}")
}

/// The body of `POST /volumes/create` for sandbox `id`'s trust volume on `node`.
pub fn trust_volume_body(id: SandboxId, node: &str) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(trust_volume_name(id)),
        driver: Some("local".to_owned()),
        driver_opts: Some(HashMap::new()),
        labels: Some(HashMap::from([
            (LABEL_SANDBOX_ID.to_owned(), id.to_string()),
            (LABEL_NODE.to_owned(), node.to_owned()),
        ])),
        ..VolumeCreateRequest::default()
    }
}

/// The sandbox's read-only mount of its trust volume.
pub fn trust_mount(id: SandboxId) -> Mount {
    volume_mount(&trust_volume_name(id), TRUST_MOUNT, true)
}

/// The variables that make curl, git, OpenSSL, Python `requests`, Node and Deno trust the
/// sandbox's CA. The bundle replaces the system store (those clients read one file); Node
/// and Deno add the CA to their own store.
pub fn trust_env() -> Vec<String> {
    let bundle = TRUST_BUNDLE_ENV
        .iter()
        .map(|name| format!("{name}={BUNDLE_FILE}"));
    let ca = TRUST_CA_ENV.iter().map(|name| format!("{name}={CA_FILE}"));
    bundle.chain(ca).collect()
}

/// Adds the trust mount to a sandbox container body (the variables, [`trust_env`], travel
/// in the binding frame).
pub fn add_trust(body: &mut ContainerCreateBody, id: SandboxId) {
    if let Some(host) = body.host_config.as_mut() {
        host.mounts
            .get_or_insert_with(Vec::new)
            .push(trust_mount(id));
    }
}

/// The helper that fills the trust volume: created from the sandbox's own image (already on
/// the node), never started, no network, the volume read-write (the hardened helper body of
/// [`super::helper`], with no capability added back).
pub fn trust_helper_body(id: SandboxId, node: &str, image: &str) -> ContainerCreateBody {
    let mut labels = helper_labels(HelperKind::TrustFill, node);
    labels.insert(LABEL_SANDBOX_ID.to_owned(), id.to_string());
    helper_body(HelperSpec {
        image,
        cmd: vec!["true".to_owned()],
        labels,
        cap_add: Vec::new(),
        mount: volume_mount(&trust_volume_name(id), TRUST_MOUNT, false),
    })
}

/// The archive extracted at [`TRUST_MOUNT`]: `tls/` (0755) with `ca.pem` and `bundle.pem`
/// (0444, root-owned).
pub fn trust_archive(ca_pem: &[u8], bundle: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    builder.append_data(&mut dir, "tls", std::io::empty())?;
    for (name, data) in [("tls/ca.pem", ca_pem), ("tls/bundle.pem", bundle)] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o444);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, data)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::is_reserved_env;

    #[test]
    fn the_sandbox_mounts_its_trust_volume_read_only_and_the_helper_never_runs_networked() {
        let id = SandboxId::new();
        let mount = trust_mount(id);
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(mount.target.as_deref(), Some(TRUST_MOUNT));
        let helper = trust_helper_body(id, "node-a", "img");
        let host = helper.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts[0].read_only, Some(false));
        assert_eq!(mounts[0].source, Some(trust_volume_name(id)));
        let labels = helper.labels.unwrap();
        assert_eq!(labels[LABEL_SANDBOX_ID], id.to_string());
    }

    #[test]
    fn every_client_is_pointed_at_the_trust_files() {
        let env = trust_env();
        for name in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "NODE_EXTRA_CA_CERTS",
            "DENO_CERT",
        ] {
            assert!(env
                .iter()
                .any(|e| e.starts_with(&format!("{name}=/run/airlock/tls/"))));
        }
        for entry in &env {
            let name = entry.split('=').next().unwrap();
            assert!(is_reserved_env(name), "{name} is not reserved");
        }
    }

    #[test]
    fn the_archive_holds_exactly_the_two_certificate_files() {
        let archive = trust_archive(b"CA", b"SYSTEM\nCA").unwrap();
        let mut read = tar::Archive::new(archive.as_slice());
        let names: Vec<(String, u32)> = read
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                (name, e.header().mode().unwrap())
            })
            .collect();
        let want = [
            ("tls", 0o755),
            ("tls/ca.pem", 0o444),
            ("tls/bundle.pem", 0o444),
        ];
        let want: Vec<(String, u32)> = want.iter().map(|(n, m)| ((*n).to_owned(), *m)).collect();
        assert_eq!(names, want);
    }
}
