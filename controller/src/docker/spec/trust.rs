//! An inspected sandbox's trust files: the variables that point every common TLS client at
//! `/run/airlock/tls/{ca.pem,bundle.pem}` (init writes both from the binding frame's
//! `ca_pem` into the sandbox's own tmpfs at [`TRUST_DIR`], see [`airlock_init::trust`]), and
//! the per-sandbox trust volume and its never-started filler that controllers before stop 28
//! made instead, which the reconciler's sweep still removes.
//!
//! Invariants:
//! - nothing here carries a key: the CA's key stays sealed in the store and at the proxy;
//! - the legacy volume and filler carry the sandbox's id and node labels, so removing the
//!   sandbox's objects finds them.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, VolumeCreateRequest};

use super::helper::{helper_body, helper_labels, HelperKind, HelperSpec};
use super::volume::volume_mount;
use super::{LABEL_NODE, LABEL_SANDBOX_ID};
use crate::sandbox::spec::{TRUST_BUNDLE_ENV, TRUST_CA_ENV};
use crate::sandbox::SandboxId;

pub use airlock_init::trust::{BUNDLE_FILE, CA_FILE, TRUST_DIR};
/// Mount options of the trust tmpfs at [`TRUST_DIR`], before its owner (the bundle is at most
/// 4 MiB of system store plus the CA).
pub const TRUST_TMPFS: &str = "rw,nosuid,nodev,noexec,mode=0755,size=9m";

/// The (legacy) Docker volume holding sandbox `id`'s trust files.
pub fn trust_volume_name(id: SandboxId) -> String {
    format!("airlock-tls-{id}")
}

/// The (legacy) never-started helper that filled sandbox `id`'s trust volume.
pub fn trust_helper_name(id: SandboxId) -> String {
    format!("airlock-tlsfill-{id}")
}

/// The body of `POST /volumes/create` for sandbox `id`'s (legacy) trust volume on `node`;
/// tests make one to see the sweep remove it.
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

/// The (legacy) helper that filled the trust volume: created from the sandbox's own image
/// (already on the node), never started, no network, the volume read-write (the hardened
/// helper body of [`super::helper`], with no capability added back).
pub fn trust_helper_body(id: SandboxId, node: &str, image: &str) -> ContainerCreateBody {
    let mut labels = helper_labels(HelperKind::TrustFill, node);
    labels.insert(LABEL_SANDBOX_ID.to_owned(), id.to_string());
    helper_body(HelperSpec {
        image,
        cmd: vec!["true".to_owned()],
        labels,
        cap_add: Vec::new(),
        mount: volume_mount(&trust_volume_name(id), TRUST_DIR, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::is_reserved_env;

    #[test]
    fn the_legacy_filler_never_runs_networked() {
        let id = SandboxId::new();
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
}
