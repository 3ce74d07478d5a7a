//! Quota defaults and the secret key (issue 5), parsed with the rest of the configuration so
//! their mistakes are reported together.

use std::time::Duration;

use super::{parse_duration, positive_or_zero, Reader, Secret};
use crate::quota::Quota;
use crate::sandbox::Cpus;

/// Default most sandboxes alive at once per user.
pub const ENV_QUOTA_MAX_SANDBOXES: &str = "AIRLOCK_QUOTA_MAX_SANDBOXES";
/// Default of [`ENV_QUOTA_MAX_SANDBOXES`].
pub const DEFAULT_QUOTA_MAX_SANDBOXES: &str = "20";
/// Default most memory (MiB) across a user's live sandboxes.
pub const ENV_QUOTA_MAX_MEMORY_MB: &str = "AIRLOCK_QUOTA_MAX_MEMORY_MB";
/// Default of [`ENV_QUOTA_MAX_MEMORY_MB`].
pub const DEFAULT_QUOTA_MAX_MEMORY_MB: &str = "16384";
/// Default most CPUs across a user's live sandboxes.
pub const ENV_QUOTA_MAX_CPUS: &str = "AIRLOCK_QUOTA_MAX_CPUS";
/// Default of [`ENV_QUOTA_MAX_CPUS`].
pub const DEFAULT_QUOTA_MAX_CPUS: &str = "16";
/// Default longest sandbox lifetime (absolute timeout) per user.
pub const ENV_QUOTA_MAX_LIFETIME: &str = "AIRLOCK_QUOTA_MAX_LIFETIME_S";
/// Default of [`ENV_QUOTA_MAX_LIFETIME`], in seconds (24 h).
pub const DEFAULT_QUOTA_MAX_LIFETIME: &str = "86400";
/// Default most sandbox creates per user per minute.
pub const ENV_QUOTA_CREATES_PER_MIN: &str = "AIRLOCK_QUOTA_CREATES_PER_MIN";
/// Default of [`ENV_QUOTA_CREATES_PER_MIN`].
pub const DEFAULT_QUOTA_CREATES_PER_MIN: &str = "60";
/// The key that seals secrets at rest: 32 bytes as 64 hex digits or base64. Unset: generated
/// on first boot into `<data_dir>/secret.key` (0600). Secret.
pub const ENV_SECRET_KEY: &str = "AIRLOCK_SECRET_KEY";

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the `AIRLOCK_QUOTA_*` defaults.
    pub(super) fn quota(&mut self) -> Option<Quota> {
        let count = |v: &str| positive_or_zero(v, "a whole number (0 refuses every create)");
        let max_sandboxes =
            self.parse_with(ENV_QUOTA_MAX_SANDBOXES, DEFAULT_QUOTA_MAX_SANDBOXES, count);
        let max_memory_mb =
            self.parse_with(ENV_QUOTA_MAX_MEMORY_MB, DEFAULT_QUOTA_MAX_MEMORY_MB, count);
        let max_cpus = self.parse_with(ENV_QUOTA_MAX_CPUS, DEFAULT_QUOTA_MAX_CPUS, |v| {
            v.parse::<f64>()
                .ok()
                .and_then(Cpus::from_f64)
                .ok_or("a positive number of CPUs")
        });
        let max_lifetime =
            self.parse_with(ENV_QUOTA_MAX_LIFETIME, DEFAULT_QUOTA_MAX_LIFETIME, |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .or_else(|| parse_duration(v).ok())
                    .ok_or("a positive number of seconds (or a duration like 24h)")
            });
        let creates_per_min = self.parse_with(
            ENV_QUOTA_CREATES_PER_MIN,
            DEFAULT_QUOTA_CREATES_PER_MIN,
            count,
        );
        Some(Quota {
            max_sandboxes: max_sandboxes?,
            max_memory_mb: max_memory_mb?,
            max_cpus: max_cpus?,
            max_lifetime: max_lifetime?,
            creates_per_min: creates_per_min?,
        })
    }

    /// `AIRLOCK_SECRET_KEY`, checked for form (never echoed).
    pub(super) fn secret_key(&mut self) -> Option<Option<Secret>> {
        let value = match self.raw(ENV_SECRET_KEY) {
            None => return Some(None),
            Some(value) => value,
        };
        if crate::vault::SecretKey::parse(&value).is_none() {
            self.issue(
                ENV_SECRET_KEY,
                &value,
                true,
                "32 bytes as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)",
            );
            return None;
        }
        Some(Some(Secret::new(value)))
    }
}
