//! The pure body of a sandbox's host folder mount (the only kind of bind a sandbox gets).
//!
//! Invariants:
//! - the source is the folder's realpath as the create resolved it again just now (never the
//!   path as registered, never a path a tenant wrote);
//! - `ReadOnly` is the bound folder's (always true for an `ro` folder);
//! - `Propagation: rprivate`, so no mount event crosses between the host and the sandbox;
//! - `NonRecursive: true`, so whatever is mounted below the folder on the node stays
//!   invisible (a plain bind, not an rbind).
//!
//! [`root_stat_body`] is `airlock doctor`'s view of the folders root from the node: a helper
//! with no network, a read-only root, no capabilities, as nobody, binding the root read-only
//! at the same path and printing its device and inode.

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum,
    MountType,
};

use super::helper::{helper_labels, isolated_host_config, HelperKind};
use crate::sandbox::mounts::BoundFolder;

/// A sandbox's bind of `folder` at `target`.
pub fn folder_mount(folder: &BoundFolder, target: &str) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(folder.realpath.clone()),
        typ: Some(MountType::BIND),
        read_only: Some(folder.read_only),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            non_recursive: Some(true),
            create_mountpoint: Some(false),
            ..MountBindOptions::default()
        }),
        ..Mount::default()
    }
}

/// The doctor's helper: `stat -c '%d %i' ROOT` on node `node`, with `root` bound read-only;
/// labelled as a `folder-stat` helper, so the reconciler's sweep removes one a crash left
/// behind.
pub fn root_stat_body(root: &str, image: &str, node: &str) -> ContainerCreateBody {
    let mount = folder_mount(
        &BoundFolder {
            id: crate::folder::FolderId::default(),
            realpath: root.to_owned(),
            read_only: true,
        },
        root,
    );
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(
            ["stat", "-L", "-c", "%d %i", root]
                .map(str::to_owned)
                .to_vec(),
        ),
        user: Some("65534:65534".to_owned()),
        labels: Some(helper_labels(HelperKind::FolderStat, node)),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            mounts: Some(vec![mount]),
            ..isolated_host_config()
        }),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::FolderId;

    #[test]
    fn a_folder_is_a_private_non_recursive_bind_of_its_realpath() {
        let folder = BoundFolder {
            id: FolderId::new(),
            realpath: "/srv/airlock/folders/datasets".to_owned(),
            read_only: true,
        };
        let mount = folder_mount(&folder, "/data");
        let json = serde_json::to_value(&mount).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Target": "/data",
                "Source": "/srv/airlock/folders/datasets",
                "Type": "bind",
                "ReadOnly": true,
                "BindOptions": {
                    "Propagation": "rprivate",
                    "NonRecursive": true,
                    "CreateMountpoint": false
                }
            })
        );
        let rw = BoundFolder {
            read_only: false,
            ..folder
        };
        assert_eq!(folder_mount(&rw, "/w").read_only, Some(false));
    }

    #[test]
    fn the_root_stat_is_a_labelled_helper_of_its_node() {
        let body = root_stat_body("/srv/folders", "img", "node-a");
        let labels = body.labels.unwrap();
        let kind = labels.get(super::super::helper::LABEL_HELPER);
        assert_eq!(kind.map(String::as_str), Some("folder-stat"));
        let node = labels.get(super::super::LABEL_NODE);
        assert_eq!(node.map(String::as_str), Some("node-a"));
        assert_eq!(body.user.as_deref(), Some("65534:65534"));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.mounts.unwrap()[0].read_only, Some(true));
    }
}
