//! How a sandbox runs on the node: the home tmpfs size, the uids an image's `USER` may pick,
//! what happens to root images (see [`crate::sandbox::user`]), and the `airlock-init` binary
//! every sandbox starts through.

use super::reader::Reader;
use super::values::positive;
use crate::sandbox::user::{RootImages, UidRanges, DEFAULT_ALLOWED_UIDS};

/// Size cap of each sandbox's home tmpfs at `/home/agent`, in MiB.
pub const ENV_HOME_TMPFS_MB: &str = "AIRLOCK_HOME_TMPFS_MB";
/// Default of [`ENV_HOME_TMPFS_MB`].
pub const DEFAULT_HOME_TMPFS_MB: &str = "256";
/// Largest allowed [`ENV_HOME_TMPFS_MB`] (it counts against the sandbox's memory).
pub(super) const MAX_HOME_TMPFS_MB: u64 = 65_536;
/// The uids an image's `USER` may run as: `A-B,C,…`, never 0.
pub const ENV_ALLOWED_UIDS: &str = "AIRLOCK_ALLOWED_UIDS";
/// Images whose `USER` is root: `refuse` (`image_runs_as_root`) or `demote` (run as nobody).
pub const ENV_ROOT_IMAGES: &str = "AIRLOCK_ROOT_IMAGES";
/// Default of [`ENV_ROOT_IMAGES`].
pub const DEFAULT_ROOT_IMAGES: &str = "refuse";

/// The image the agent presets run (`GET /v1/presets`); pin it with a digest for air-gapped
/// nodes.
pub const ENV_AGENT_IMAGE: &str = "AIRLOCK_AGENT_IMAGE";
/// Default of [`ENV_AGENT_IMAGE`].
pub const DEFAULT_AGENT_IMAGE: &str = "airlock/agent:dev";

/// The static `airlock-init` binary the controller ships to each node's runtime volume.
pub const ENV_INIT_BINARY: &str = "AIRLOCK_INIT_BINARY";
/// Default of [`ENV_INIT_BINARY`]: where the controller image has it.
pub const DEFAULT_INIT_BINARY: &str = "/airlock-init";

/// The run settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Home tmpfs size in MiB.
    pub home_tmpfs_mb: u64,
    /// The uids an image's `USER` may pick.
    pub allowed_uids: UidRanges,
    /// What root images do.
    pub root_images: RootImages,
    /// The presets' image.
    pub agent_image: String,
    /// The `airlock-init` binary (read when the node's runtime volume is filled).
    pub init_binary: std::path::PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            home_tmpfs_mb: 256,
            allowed_uids: UidRanges::default(),
            root_images: RootImages::Refuse,
            agent_image: DEFAULT_AGENT_IMAGE.to_owned(),
            init_binary: DEFAULT_INIT_BINARY.into(),
        }
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn run(&mut self) -> Option<RunConfig> {
        let home = self.parse_with(ENV_HOME_TMPFS_MB, DEFAULT_HOME_TMPFS_MB, |v| {
            positive(v, "a number of MiB from 1 to 65536")
                .ok()
                .filter(|mb| *mb <= MAX_HOME_TMPFS_MB)
                .ok_or("a number of MiB from 1 to 65536")
        });
        let allowed = self.parse_with(ENV_ALLOWED_UIDS, DEFAULT_ALLOWED_UIDS, UidRanges::parse);
        let root = self.parse_with(ENV_ROOT_IMAGES, DEFAULT_ROOT_IMAGES, |v| match v {
            "refuse" => Ok(RootImages::Refuse),
            "demote" => Ok(RootImages::Demote),
            _ => Err("`refuse` or `demote`"),
        });
        let agent_image = self.parse_with(ENV_AGENT_IMAGE, DEFAULT_AGENT_IMAGE, |v| {
            Some(v.to_owned())
                .filter(|v| !v.is_empty() && !v.chars().any(char::is_whitespace))
                .ok_or("an image reference")
        });
        let init_binary = self.parse_with(ENV_INIT_BINARY, DEFAULT_INIT_BINARY, |v| {
            Some(std::path::PathBuf::from(v))
                .filter(|p| p.is_absolute())
                .ok_or("an absolute path")
        });
        Some(RunConfig {
            agent_image: agent_image?,
            init_binary: init_binary?,
            home_tmpfs_mb: home?,
            allowed_uids: allowed?,
            root_images: root?,
        })
    }
}
