//! The disk-limit probe's container: a body asking for `StorageOpt size`, created and removed
//! without ever starting, to learn whether the node's storage driver enforces a per-container
//! disk limit (overlay2 does only on XFS mounted with `pquota`; the calls are in
//! [`crate::docker::client::disk`]).
//!
//! Invariants of the body (tested): no network, no capabilities, read-only root, a storage
//! size option, and only the helper labels (kind `disk-probe`, the node), so the reconciler
//! never takes it for a sandbox and sweeps one a crash left behind.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};

use super::helper::{helper_labels, isolated_host_config, HelperKind};

/// The size the probe asks for, in MiB (nothing is ever written: it never starts).
pub const DISK_PROBE_MB: u64 = 64;

/// The probe container's name for one run.
pub fn disk_probe_name(run: &str) -> String {
    format!("airlock-disk-probe-{run}")
}

/// The body of the never-started probe container from `image` (one the node holds) on `node`.
pub fn disk_probe_body(image: &str, node: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        labels: Some(helper_labels(HelperKind::DiskProbe, node)),
        cmd: Some(vec!["true".to_owned()]),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            storage_opt: Some(HashMap::from([(
                "size".to_owned(),
                format!("{DISK_PROBE_MB}M"),
            )])),
            ..isolated_host_config()
        }),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_asks_for_a_size_and_nothing_else() {
        let body = disk_probe_body("airlock/testbox:dev", "node-a");
        assert_eq!(
            body.labels,
            Some(helper_labels(HelperKind::DiskProbe, "node-a")),
            "helper labels only: never a sandbox, swept when left behind"
        );
        assert_eq!(body.network_disabled, Some(true));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        let size = host.storage_opt.unwrap();
        assert_eq!(size.get("size").map(String::as_str), Some("64M"));
        assert!(disk_probe_name("x").starts_with("airlock-disk-probe-"));
    }
}
