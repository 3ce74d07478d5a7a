//! Volume settings: the largest volume, the per-user volume quota defaults, the helper image
//! that samples usage, and how often it runs; the host folders root; and how much memory the
//! files API may stage uploads in.

use std::path::PathBuf;
use std::time::Duration;

use super::values::{parse_abs_path, parse_duration, positive, positive_or_zero};
use super::Reader;
use crate::accounts::quota::UNLIMITED;
use crate::volume::VolumeQuota;

/// Largest `size_mb` of one volume.
pub const ENV_MAX_VOLUME_MB: &str = "AIRLOCK_MAX_VOLUME_MB";
/// Default of [`ENV_MAX_VOLUME_MB`] (10 GiB).
pub const DEFAULT_MAX_VOLUME_MB: &str = "10240";
/// Default most volumes per user.
pub const ENV_QUOTA_MAX_VOLUMES: &str = "AIRLOCK_QUOTA_MAX_VOLUMES";
/// Default of [`ENV_QUOTA_MAX_VOLUMES`] (bounded, like every default quota).
pub const DEFAULT_QUOTA_MAX_VOLUMES: &str = "20";
/// Default most bytes across the sizes of a user's volumes.
pub const ENV_QUOTA_MAX_VOLUME_BYTES: &str = "AIRLOCK_QUOTA_MAX_VOLUME_BYTES";
/// Default of [`ENV_QUOTA_MAX_VOLUME_BYTES`] (50 GiB).
pub const DEFAULT_QUOTA_MAX_VOLUME_BYTES: &str = "53687091200";
/// The image of the usage sampler (needs `du`; runs with no network, read-only).
pub const ENV_VOLUME_HELPER_IMAGE: &str = "AIRLOCK_VOLUME_HELPER_IMAGE";
/// Default of [`ENV_VOLUME_HELPER_IMAGE`]: the busybox testbox.
pub const DEFAULT_VOLUME_HELPER_IMAGE: &str = "airlock/testbox:dev";
/// Time between two usage samples of every volume.
pub const ENV_VOLUME_SAMPLE_INTERVAL: &str = "AIRLOCK_VOLUME_SAMPLE_INTERVAL";
/// Default of [`ENV_VOLUME_SAMPLE_INTERVAL`].
pub const DEFAULT_VOLUME_SAMPLE_INTERVAL: &str = "5m";

/// Memory the node's uploads may be staged in at once, MiB (past it they are staged on disk).
pub const ENV_UPLOAD_MEMORY_MB: &str = "AIRLOCK_UPLOAD_MEMORY_MB";
/// Default of [`ENV_UPLOAD_MEMORY_MB`]: a quarter of the compose controller's memory limit.
pub const DEFAULT_UPLOAD_MEMORY_MB: &str = "128";

/// The directory host folders must resolve under (absolute; unset: host folders are off).
/// The DinD must see it at the same path (compose binds `AIRLOCK_FOLDERS_HOST_ROOT` there).
pub const ENV_FOLDERS_ROOT: &str = "AIRLOCK_FOLDERS_ROOT";

/// The volume settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumesConfig {
    /// Largest volume, MiB.
    pub max_volume_mb: u64,
    /// Per-user defaults.
    pub quota: VolumeQuota,
    /// The sampler's image.
    pub helper_image: String,
    /// Time between samples.
    pub sample_interval: Duration,
    /// Bytes of memory the node's uploads may be staged in at once (0: always on disk).
    pub upload_memory_bytes: u64,
    /// The host folders root; `None`: host folders are off.
    pub folders_root: Option<PathBuf>,
}

impl Default for VolumesConfig {
    fn default() -> Self {
        Self {
            max_volume_mb: 10_240,
            quota: VolumeQuota::UNLIMITED,
            helper_image: DEFAULT_VOLUME_HELPER_IMAGE.to_owned(),
            sample_interval: Duration::from_secs(300),
            upload_memory_bytes: 128 << 20,
            folders_root: None,
        }
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn volumes(&mut self) -> Option<VolumesConfig> {
        let count = |v: &str| match v {
            "unlimited" => Ok(UNLIMITED),
            _ => positive_or_zero(v, "a whole number (0 refuses every create) or `unlimited`"),
        };
        let max_volume_mb = self.parse_with(ENV_MAX_VOLUME_MB, DEFAULT_MAX_VOLUME_MB, |v| {
            positive(v, "a positive number of MiB")
        });
        let max_volumes = self.parse_with(ENV_QUOTA_MAX_VOLUMES, DEFAULT_QUOTA_MAX_VOLUMES, count);
        let max_bytes = self.parse_with(
            ENV_QUOTA_MAX_VOLUME_BYTES,
            DEFAULT_QUOTA_MAX_VOLUME_BYTES,
            count,
        );
        let helper_image =
            self.parse_with(ENV_VOLUME_HELPER_IMAGE, DEFAULT_VOLUME_HELPER_IMAGE, |v| {
                Some(v.to_owned())
                    .filter(|v| !v.is_empty() && !v.chars().any(char::is_whitespace))
                    .ok_or("an image reference")
            });
        let sample_interval = self.parse_with(
            ENV_VOLUME_SAMPLE_INTERVAL,
            DEFAULT_VOLUME_SAMPLE_INTERVAL,
            parse_duration,
        );
        let upload_memory = self.parse_with(ENV_UPLOAD_MEMORY_MB, DEFAULT_UPLOAD_MEMORY_MB, |v| {
            positive_or_zero(v, "a whole number of MiB (0 stages every upload on disk)")
                .and_then(|mb| mb.checked_mul(1 << 20).ok_or("at most 2^44 MiB"))
        });
        let folders_root = self.optional(ENV_FOLDERS_ROOT, parse_abs_path);
        Some(VolumesConfig {
            max_volume_mb: max_volume_mb?,
            quota: VolumeQuota {
                max_volumes: max_volumes?,
                max_volume_bytes: max_bytes?,
            },
            helper_image: helper_image?,
            sample_interval: sample_interval?,
            upload_memory_bytes: upload_memory?,
            folders_root: folders_root?,
        })
    }
}
