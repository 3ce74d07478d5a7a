//! The one hardened body of every short-lived helper container (the volume sampler and owner
//! fix, the never-started files helper and trust-volume filler), and the labels that let the
//! reconciler find a helper a crash left behind (the doctor's folders-root stat has a body of
//! its own, a read-only bind as nobody, but the same labels and [`isolated_host_config`]).
//!
//! Invariants of every helper body:
//! - no network (`NetworkDisabled`, `NetworkMode: none`), a read-only root, `CapDrop: [ALL]`
//!   plus only the capabilities the caller names, no-new-privileges, not privileged, no
//!   devices, no binds: its one volume mount is the only thing it touches;
//! - root inside the helper (to read or own any sandbox user's files), small pid and memory
//!   limits with no swap, a size-capped `json-file` log, never auto-removed (the caller
//!   removes it, or the reconciler's sweep does);
//! - an empty entrypoint, so the command runs as given (a never-started helper's command is
//!   irrelevant);
//! - the [`LABEL_HELPER`] kind and the node label, so a helper is never mistaken for a
//!   sandbox container and a leftover one is found by label, not by name.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount};

use super::{LABEL_NODE, LOG_MAX_SIZE};

/// Label naming a helper container's kind (see [`HelperKind`]).
pub const LABEL_HELPER: &str = "airlock.helper";
/// A helper's memory limit.
const HELPER_MEMORY: i64 = 32 * 1024 * 1024;
/// A helper's pid limit.
const HELPER_PIDS: i64 = 16;

/// What a helper is for: the value of [`LABEL_HELPER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperKind {
    /// The volume usage sampler (runs `du`, removed at once).
    Sampler,
    /// The never-started files helper of one files request.
    Files,
    /// The never-started helper that fills a sandbox's trust volume.
    TrustFill,
    /// The helper that gives a volume's root to a sandbox's user (runs `chown`, removed at
    /// once).
    VolumeOwner,
    /// `airlock doctor`'s stat of the folders root on the node (removed at once).
    FolderStat,
    /// The never-started disk-limit probe (removed at once).
    DiskProbe,
    /// The never-started helper that fills the node's runtime volume (removed at once).
    RuntimeFill,
}

/// What differs between helpers; everything else is [`helper_body`]'s.
#[derive(Clone, Debug)]
pub struct HelperSpec<'a> {
    /// The image (already on the node; never pulled).
    pub image: &'a str,
    /// The command.
    pub cmd: Vec<String>,
    /// Its labels (see [`helper_labels`]).
    pub labels: HashMap<String, String>,
    /// The capabilities added back after dropping all.
    pub cap_add: Vec<String>,
    /// Its single volume mount.
    pub mount: Mount,
}

// === impl HelperKind ===

impl HelperKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HelperKind::Sampler => "sampler",
            HelperKind::Files => "files",
            HelperKind::TrustFill => "trust-fill",
            HelperKind::VolumeOwner => "volume-owner",
            HelperKind::FolderStat => "folder-stat",
            HelperKind::DiskProbe => "disk-probe",
            HelperKind::RuntimeFill => "runtime-fill",
        }
    }

    /// The kind a label value names.
    pub fn parse(value: &str) -> Option<HelperKind> {
        [
            HelperKind::Sampler,
            HelperKind::Files,
            HelperKind::TrustFill,
            HelperKind::VolumeOwner,
            HelperKind::FolderStat,
            HelperKind::DiskProbe,
            HelperKind::RuntimeFill,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// The labels of a `kind` helper on `node`.
pub fn helper_labels(kind: HelperKind, node: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_HELPER.to_owned(), kind.as_str().to_owned()),
        (LABEL_NODE.to_owned(), node.to_owned()),
    ])
}

/// The hardened body of a helper.
pub fn helper_body(spec: HelperSpec<'_>) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(spec.image.to_owned()),
        cmd: Some(spec.cmd),
        entrypoint: Some(Vec::new()),
        user: Some("0:0".to_owned()),
        labels: Some(spec.labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            cap_add: Some(spec.cap_add),
            mounts: Some(vec![spec.mount]),
            ..isolated_host_config()
        }),
        ..ContainerCreateBody::default()
    }
}

/// The host config every helper starts from (the disk-limit probe and the doctor's folder
/// stat too): no network, no capabilities, no-new-privileges, not privileged, a read-only root,
/// no devices, binds or mounts, small pid and memory limits with no swap, a capped log, never
/// auto-removed. A caller adds only its mount, capabilities or storage option.
pub fn isolated_host_config() -> HostConfig {
    HostConfig {
        network_mode: Some("none".to_owned()),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(Vec::new()),
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        privileged: Some(false),
        readonly_rootfs: Some(true),
        pids_limit: Some(HELPER_PIDS),
        memory: Some(HELPER_MEMORY),
        memory_swap: Some(HELPER_MEMORY),
        devices: Some(Vec::new()),
        binds: Some(Vec::new()),
        mounts: Some(Vec::new()),
        auto_remove: Some(false),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
                ("max-file".to_owned(), "1".to_owned()),
            ])),
        }),
        ..HostConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::spec::volume::volume_mount;

    #[test]
    fn every_helper_is_hardened_and_labelled() {
        let body = helper_body(HelperSpec {
            image: "img",
            cmd: vec!["true".to_owned()],
            labels: helper_labels(HelperKind::Files, "node-a"),
            cap_add: Vec::new(),
            mount: volume_mount("airlock-vol-x", "/v", false),
        });
        let json = serde_json::to_value(&body).unwrap();
        let host = &json["HostConfig"];
        assert_eq!(json["NetworkDisabled"], true);
        assert_eq!(json["User"], "0:0");
        assert_eq!(json["Entrypoint"], serde_json::json!([]));
        assert_eq!(host["NetworkMode"], "none");
        assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(host["CapAdd"], serde_json::json!([]));
        assert_eq!(
            host["SecurityOpt"],
            serde_json::json!(["no-new-privileges:true"])
        );
        assert_eq!(host["Privileged"], false);
        assert_eq!(host["ReadonlyRootfs"], true);
        assert_eq!(host["Memory"], host["MemorySwap"]);
        assert_eq!(host["Devices"], serde_json::json!([]));
        assert_eq!(host["Binds"], serde_json::json!([]));
        assert_eq!(host["AutoRemove"], false);
        assert_eq!(host["Mounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["Labels"][LABEL_HELPER], "files");
        assert_eq!(json["Labels"][LABEL_NODE], "node-a");
    }

    #[test]
    fn kinds_round_trip_through_their_label() {
        for kind in [
            HelperKind::Sampler,
            HelperKind::Files,
            HelperKind::TrustFill,
            HelperKind::VolumeOwner,
            HelperKind::FolderStat,
            HelperKind::DiskProbe,
            HelperKind::RuntimeFill,
        ] {
            assert_eq!(HelperKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(HelperKind::parse("sandbox"), None);
    }
}
