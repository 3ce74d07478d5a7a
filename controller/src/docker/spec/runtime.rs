//! Pure bodies for a node's runtime volume: `airlock-runtime-<sha12>` holding the static
//! `airlock-init` binary every sandbox starts through, mounted read-only at [`RUNTIME_MOUNT`]
//! (the entrypoint is [`INIT_PATH`]); the never-started helper that fills it; the archive.
//!
//! Invariants:
//! - the name carries the first 12 hex digits of the binary's SHA-256, so a new binary is a new
//!   volume and a running sandbox's binary never changes under it;
//! - sandboxes mount it read-only; only the helper, which never runs a process, mounts it
//!   read-write;
//! - the archive holds `init` (root-owned, 0555) and then the [`COMPLETE_MARKER`]: volume
//!   labels cannot change after creation, so "filled" is that file, written last;
//! - the volume carries [`LABEL_RUNTIME`] and the node label, never a sandbox label (no sweep of
//!   a sandbox's objects touches it); the helper carries the helper labels.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, Mount, VolumeCreateRequest};

use super::helper::{helper_body, helper_labels, HelperKind, HelperSpec};
use super::volume::volume_mount;
use super::LABEL_NODE;

/// Label holding the runtime's hash (`sha12`) on its volume and fill helper.
pub const LABEL_RUNTIME: &str = "airlock.runtime";
/// Where every sandbox mounts the runtime volume.
pub const RUNTIME_MOUNT: &str = "/.airlock";
/// Every sandbox's entrypoint.
pub const INIT_PATH: &str = "/.airlock/init";
/// Where the fill helper mounts the volume.
pub const FILL_MOUNT: &str = "/airlock-runtime";
/// The file written last into a filled volume.
pub const COMPLETE_MARKER: &str = "complete";

/// The runtime volume of binary hash `sha12`.
pub fn runtime_volume_name(sha12: &str) -> String {
    format!("airlock-runtime-{sha12}")
}

/// The body of `POST /volumes/create` for the runtime volume of `sha12` on `node`.
pub fn runtime_volume_body(sha12: &str, node: &str) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(runtime_volume_name(sha12)),
        driver: Some("local".to_owned()),
        driver_opts: Some(HashMap::new()),
        labels: Some(HashMap::from([
            (LABEL_RUNTIME.to_owned(), sha12.to_owned()),
            (LABEL_NODE.to_owned(), node.to_owned()),
        ])),
        ..VolumeCreateRequest::default()
    }
}

/// A sandbox's read-only mount of the runtime volume.
pub fn runtime_mount(sha12: &str) -> Mount {
    volume_mount(&runtime_volume_name(sha12), RUNTIME_MOUNT, true)
}

/// The fill helper's name; `run` tells concurrent fills apart.
pub fn runtime_helper_name(sha12: &str, run: &str) -> String {
    format!("airlock-runtimefill-{sha12}-{run}")
}

/// The never-started helper that fills the runtime volume: created from `image` (already on
/// the node), no network, the volume read-write at [`FILL_MOUNT`].
pub fn runtime_helper_body(sha12: &str, node: &str, image: &str) -> ContainerCreateBody {
    let mut labels = helper_labels(HelperKind::RuntimeFill, node);
    labels.insert(LABEL_RUNTIME.to_owned(), sha12.to_owned());
    helper_body(HelperSpec {
        image,
        cmd: vec!["true".to_owned()],
        labels,
        cap_add: Vec::new(),
        mount: volume_mount(&runtime_volume_name(sha12), FILL_MOUNT, false),
    })
}

/// The archive extracted at [`FILL_MOUNT`]: `init` (0555, root-owned), then the marker.
pub fn runtime_archive(init: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("init", init, 0o555),
        (COMPLETE_MARKER, b"".as_slice(), 0o444),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(u64::try_from(data.len()).unwrap_or(u64::MAX));
        header.set_cksum();
        builder.append_data(&mut header, name, data)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_volume_is_labelled_and_mounted_read_only() {
        let body = serde_json::to_value(runtime_volume_body("0123456789ab", "node-a")).unwrap();
        assert_eq!(body["Name"], "airlock-runtime-0123456789ab");
        assert_eq!(body["Labels"][LABEL_RUNTIME], "0123456789ab");
        assert_eq!(body["Labels"][LABEL_NODE], "node-a");
        assert!(body["Labels"].get(super::super::LABEL_SANDBOX_ID).is_none());
        let mount = serde_json::to_value(runtime_mount("0123456789ab")).unwrap();
        assert_eq!(mount["Target"], RUNTIME_MOUNT);
        assert_eq!(mount["ReadOnly"], true);
        assert_eq!(mount["VolumeOptions"]["NoCopy"], true);
        let helper = serde_json::to_value(runtime_helper_body("0123456789ab", "n", "img")).unwrap();
        assert_eq!(helper["Labels"]["airlock.helper"], "runtime-fill");
        assert_eq!(helper["HostConfig"]["Mounts"][0]["ReadOnly"], false);
    }

    #[test]
    fn the_archive_holds_init_then_the_marker() {
        let tar = runtime_archive(b"\x7fELF").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("init".to_owned(), 0o555, 0),
                (COMPLETE_MARKER.to_owned(), 0o444, 0)
            ]
        );
    }
}
