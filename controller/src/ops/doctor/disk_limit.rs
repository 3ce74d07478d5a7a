//! The `disk-limit` check: whether the node enforces a per-container disk limit, probed the
//! way a create is (a never-started container asking for `StorageOpt size`). Without one,
//! creates asking for `limits.disk_mb` (and so a writable root) are refused
//! `disk_limit_unsupported`; with `AIRLOCK_MAX_DISK_MB` set, that warns.

use super::{Check, Verdict};
use crate::config::Config;
use crate::config::DEFAULT_NODE;
use crate::docker::{DiskLimit, DockerClient};

const NAME: &str = "disk-limit";

/// The check, probing with `image` (one the node holds).
pub(super) async fn check(config: &Config, docker: &DockerClient, image: &str) -> Check {
    let max = config.maximums.limits.disk_mb;
    match docker.probe_disk_limit(image, DEFAULT_NODE).await {
        Ok(DiskLimit::Enforced) => Check::pass(
            NAME,
            "the node enforces StorageOpt size: limits.disk_mb and writable roots can be used",
        ),
        Ok(DiskLimit::Unsupported(reason)) => {
            let detail = format!(
                "the node cannot enforce a disk limit ({reason}): creates asking for \
                 limits.disk_mb are refused disk_limit_unsupported, roots stay read-only"
            );
            if max.is_some() {
                let fix = "unset AIRLOCK_MAX_DISK_MB, or give the dind's /var/lib/docker an XFS \
                           filesystem mounted with pquota";
                Check::new(NAME, Verdict::Warn, detail, fix)
            } else {
                Check::pass(NAME, detail)
            }
        }
        Err(error) => Check::new(
            NAME,
            Verdict::Warn,
            format!("the probe failed: {error}"),
            "load the probe image on the node (`airlock images load`)",
        ),
    }
}
