//! Pure bodies for volumes: the Docker volume itself, a sandbox's volume mount, and the usage
//! sampler (the calls are in [`crate::docker::client`]).
//!
//! Invariants:
//! - a managed volume carries `airlock.volume.id` and `airlock.node` (written here only), so
//!   the reconciler can tell managed volumes from anything else on the node;
//! - in `hard` quota mode the local driver gets `size` (an XFS project quota); in `soft` mode
//!   it gets no options;
//! - a sandbox's volume mount is a `volume` mount (never a bind), read-only when asked, with
//!   no copy of the image's content into it (`NoCopy`);
//! - the sampler runs with `NetworkMode: none`, the volume read-only, a read-only root, every
//!   capability dropped except `DAC_OVERRIDE` (to walk directories any sandbox user made;
//!   the narrower `DAC_READ_SEARCH` is outside a default DinD's bounding set),
//!   no-new-privileges and small limits.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, Mount, MountType, MountVolumeOptions, VolumeCreateRequest,
};

use super::helper::{helper_body, helper_labels, HelperKind, HelperSpec};
use super::LABEL_NODE;
use crate::volume::{QuotaMode, VolumeId};

/// Label holding the volume id on a managed Docker volume (and its sampler).
pub const LABEL_VOLUME_ID: &str = "airlock.volume.id";
/// Where the sampler mounts the volume.
pub const SAMPLER_MOUNT: &str = "/v";

/// The body of `POST /volumes/create` for volume `id` of `size_mb` on `node`.
pub fn volume_body(
    id: VolumeId,
    docker_name: &str,
    node: &str,
    size_mb: u64,
    mode: QuotaMode,
) -> VolumeCreateRequest {
    let driver_opts = match mode {
        QuotaMode::Hard => HashMap::from([("size".to_owned(), format!("{size_mb}M"))]),
        QuotaMode::Soft => HashMap::new(),
    };
    VolumeCreateRequest {
        name: Some(docker_name.to_owned()),
        driver: Some("local".to_owned()),
        driver_opts: Some(driver_opts),
        labels: Some(HashMap::from([
            (LABEL_VOLUME_ID.to_owned(), id.to_string()),
            (LABEL_NODE.to_owned(), node.to_owned()),
        ])),
        ..VolumeCreateRequest::default()
    }
}

/// A sandbox's mount of Docker volume `docker_name` at `target`.
pub fn volume_mount(docker_name: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(docker_name.to_owned()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            ..MountVolumeOptions::default()
        }),
        ..Mount::default()
    }
}

/// The sampler's container name for one run.
pub fn sampler_name(id: VolumeId, run: &str) -> String {
    format!("airlock-volsample-{id}-{run}")
}

/// The sampler of volume `id` on `node`: `du -s -k` of the volume, read-only, without a
/// network (the hardened helper body of [`super::helper`]).
pub fn sampler_body(
    id: VolumeId,
    docker_name: &str,
    image: &str,
    node: &str,
) -> ContainerCreateBody {
    let mut labels = helper_labels(HelperKind::Sampler, node);
    labels.insert(LABEL_VOLUME_ID.to_owned(), id.to_string());
    helper_body(HelperSpec {
        image,
        cmd: ["du", "-s", "-k", SAMPLER_MOUNT]
            .map(str::to_owned)
            .to_vec(),
        labels,
        cap_add: vec!["DAC_OVERRIDE".to_owned()],
        mount: volume_mount(docker_name, SAMPLER_MOUNT, true),
    })
}

/// The helper that gives a volume's root (not its content) to `user` before a sandbox
/// mounts it read-write: `chown` with only `CAP_CHOWN`, no network, labelled with the
/// sandbox so its removal takes the helper too, and as a `volume-owner` helper of `node`
/// so the reconciler's sweep removes one a crash left behind.
pub fn chown_body(
    sandbox: crate::sandbox::SandboxId,
    docker_name: &str,
    user: crate::sandbox::RunAs,
    image: &str,
    node: &str,
) -> ContainerCreateBody {
    let mut labels = helper_labels(HelperKind::VolumeOwner, node);
    labels.insert(super::LABEL_SANDBOX_ID.to_owned(), sandbox.to_string());
    helper_body(HelperSpec {
        image,
        cmd: vec![
            "chown".to_owned(),
            user.to_string(),
            SAMPLER_MOUNT.to_owned(),
        ],
        labels,
        cap_add: vec!["CHOWN".to_owned()],
        mount: volume_mount(docker_name, SAMPLER_MOUNT, false),
    })
}

/// The bytes a sampler's output (`<KiB>\t/v`) reports.
pub fn parse_sample(stdout: &str) -> Option<u64> {
    let kib: u64 = stdout.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn id() -> VolumeId {
        "0193a1b2-0000-7000-8000-0000000000aa".parse().unwrap()
    }

    #[test]
    fn volume_bodies_carry_the_labels_and_the_hard_size() {
        let soft = volume_body(id(), "airlock-vol-x", "local", 100, QuotaMode::Soft);
        assert_eq!(soft.driver_opts, Some(HashMap::new()));
        let hard = volume_body(id(), "airlock-vol-x", "local", 100, QuotaMode::Hard);
        let opts = hard.driver_opts.unwrap();
        assert_eq!(opts["size"], "100M");
        let labels = hard.labels.unwrap();
        assert_eq!(labels[LABEL_VOLUME_ID], id().to_string());
        assert_eq!(labels[LABEL_NODE], "local");
    }

    #[test]
    fn mounts_are_volume_mounts_never_binds() {
        let json = serde_json::to_string(&volume_mount("airlock-vol-x", "/w", true)).unwrap();
        expect![[r#"{"Target":"/w","Source":"airlock-vol-x","Type":"volume","ReadOnly":true,"VolumeOptions":{"NoCopy":true}}"#]]
            .assert_eq(&json);
    }

    #[test]
    fn the_sampler_has_no_network_and_reads_only() {
        let body = sampler_body(id(), "airlock-vol-x", "airlock/testbox:dev", "local");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, Some(vec!["DAC_OVERRIDE".to_owned()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(parse_sample("12\t/v\n"), Some(12 * 1024));
        assert_eq!(parse_sample("x"), None);
    }

    #[test]
    fn the_owner_fix_is_a_labelled_helper_of_its_sandbox() {
        let sandbox = crate::sandbox::SandboxId::new();
        let user = crate::sandbox::RunAs {
            uid: 1000,
            gid: 1000,
        };
        let body = chown_body(sandbox, "airlock-vol-x", user, "img", "node-a");
        let labels = body.labels.unwrap();
        assert_eq!(
            labels
                .get(super::super::helper::LABEL_HELPER)
                .map(String::as_str),
            Some("volume-owner")
        );
        assert_eq!(labels.get(LABEL_NODE).map(String::as_str), Some("node-a"));
        let owner = labels.get(super::super::LABEL_SANDBOX_ID);
        assert_eq!(owner, Some(&sandbox.to_string()));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_add, Some(vec!["CHOWN".to_owned()]));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
    }
}
