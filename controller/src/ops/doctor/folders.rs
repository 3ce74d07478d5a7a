//! The `folders` check: with `AIRLOCK_FOLDERS_ROOT` set, the controller and the DinD must see
//! the same directory there (compose binds `AIRLOCK_FOLDERS_HOST_ROOT` into both at that
//! path). The controller stats its view; a short helper on the node stats the DinD's (no
//! network, a read-only bind, as nobody). Different device or inode numbers fail: folder
//! paths would be checked in one tree and mounted from another.

use std::os::unix::fs::MetadataExt;

use super::{Check, Verdict};
use crate::config::{Config, DEFAULT_NODE};
use crate::docker::DockerClient;

const NAME: &str = "folders";

/// The check; `docker` is the node when it answered.
pub(super) async fn check(config: &Config, docker: Option<&DockerClient>, image: &str) -> Check {
    let Some(root) = &config.volumes.folders_root else {
        return Check::new(
            NAME,
            Verdict::Skip,
            "host folders are off (no AIRLOCK_FOLDERS_ROOT)",
            "",
        );
    };
    let shown = root.display().to_string();
    let mine = match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => (meta.dev(), meta.ino()),
        Ok(_) => {
            let detail = format!("{shown} is not a directory in the controller");
            return Check::new(NAME, Verdict::Fail, detail, BIND_FIX);
        }
        Err(error) => {
            let detail = format!("{shown} cannot be read in the controller: {error}");
            return Check::new(NAME, Verdict::Fail, detail, BIND_FIX);
        }
    };
    let Some(docker) = docker else {
        return Check::new(NAME, Verdict::Skip, "the DinD did not answer", "");
    };
    match docker.stat_folders_root(&shown, image, DEFAULT_NODE).await {
        Ok(node) if node == mine => Check::pass(
            NAME,
            format!("{shown}: the controller and the DinD see the same directory"),
        ),
        Ok(node) => {
            let detail = format!(
                "{shown}: the controller sees device {} inode {}, the DinD device {} inode {}",
                mine.0, mine.1, node.0, node.1
            );
            Check::new(NAME, Verdict::Fail, detail, BIND_FIX)
        }
        Err(error) => {
            let detail = format!("{shown}: the DinD's view could not be read: {error}");
            Check::new(NAME, Verdict::Fail, detail, BIND_FIX)
        }
    }
}

const BIND_FIX: &str = "bind AIRLOCK_FOLDERS_HOST_ROOT into the controller (ro) and the DinD \
                        (rw) at AIRLOCK_FOLDERS_ROOT (compose does this)";
