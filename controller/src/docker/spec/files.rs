//! The files helper: a container that is never started, mounting one volume at
//! [`FILES_MOUNT`] so the archive API can read (read-only mount) or write (read-write mount)
//! it. The hardened helper body of [`super::helper`] with no capability added back; it never
//! runs a process, so its command is irrelevant.

use bollard::models::ContainerCreateBody;

use super::helper::{helper_body, helper_labels, HelperKind, HelperSpec};
use super::volume::{volume_mount, LABEL_VOLUME_ID};
use crate::volume::VolumeId;

/// Where the files helper mounts the volume.
pub const FILES_MOUNT: &str = "/v";

/// The files helper's container name for one request.
pub fn files_helper_name(id: VolumeId, run: &str) -> String {
    format!("airlock-volfiles-{id}-{run}")
}

/// The files helper of volume `id` (Docker volume `docker_name`) on `node`, never started.
pub fn files_helper_body(
    id: VolumeId,
    docker_name: &str,
    image: &str,
    read_only: bool,
    node: &str,
) -> ContainerCreateBody {
    let mut labels = helper_labels(HelperKind::Files, node);
    labels.insert(LABEL_VOLUME_ID.to_owned(), id.to_string());
    helper_body(HelperSpec {
        image,
        cmd: vec!["true".to_owned()],
        labels,
        cap_add: Vec::new(),
        mount: volume_mount(docker_name, FILES_MOUNT, read_only),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_helper_mounts_only_its_volume() {
        let id = VolumeId::default();
        let body = files_helper_body(id, "airlock-vol-x", "airlock/testbox:dev", false, "local");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_add, Some(Vec::new()));
        assert_eq!(host.readonly_rootfs, Some(true));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some(FILES_MOUNT));
        assert_eq!(mounts[0].read_only, Some(false));
    }
}
