//! Quota defaults and the secret key, parsed with the rest of the configuration so their
//! mistakes are reported together. The key's text form (also the key file's) is parsed here
//! once, by [`parse_secret_key`].

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::{parse_duration, positive_or_zero, Reader, Secret};
use crate::accounts::quota::{Quota, UNLIMITED, UNLIMITED_CPUS, UNLIMITED_LIFETIME};
use crate::sandbox::Cpus;

/// Default most sandboxes alive at once per user.
pub const ENV_QUOTA_MAX_SANDBOXES: &str = "AIRLOCK_QUOTA_MAX_SANDBOXES";
/// Default of [`ENV_QUOTA_MAX_SANDBOXES`]. Every default is finite, so a deployment for many
/// users is bounded unless the operator writes `unlimited` (which `airlock doctor` warns about).
pub const DEFAULT_QUOTA_MAX_SANDBOXES: &str = "10";
/// Default most memory (MiB) across a user's live sandboxes.
pub const ENV_QUOTA_MAX_MEMORY_MB: &str = "AIRLOCK_QUOTA_MAX_MEMORY_MB";
/// Default of [`ENV_QUOTA_MAX_MEMORY_MB`] (8 GiB).
pub const DEFAULT_QUOTA_MAX_MEMORY_MB: &str = "8192";
/// Default most CPUs across a user's live sandboxes.
pub const ENV_QUOTA_MAX_CPUS: &str = "AIRLOCK_QUOTA_MAX_CPUS";
/// Default of [`ENV_QUOTA_MAX_CPUS`].
pub const DEFAULT_QUOTA_MAX_CPUS: &str = "16";
/// Default longest sandbox lifetime (absolute timeout) per user.
pub const ENV_QUOTA_MAX_LIFETIME: &str = "AIRLOCK_QUOTA_MAX_LIFETIME_S";
/// Default of [`ENV_QUOTA_MAX_LIFETIME`] (24 h; the operator maximum `AIRLOCK_MAX_TIMEOUT`
/// still applies).
pub const DEFAULT_QUOTA_MAX_LIFETIME: &str = "86400";
/// Default most sandbox creates per user per minute.
pub const ENV_QUOTA_CREATES_PER_MIN: &str = "AIRLOCK_QUOTA_CREATES_PER_MIN";
/// Default of [`ENV_QUOTA_CREATES_PER_MIN`].
pub const DEFAULT_QUOTA_CREATES_PER_MIN: &str = "20";
/// Default most sandbox creates per user per hour (ended sandboxes included).
pub const ENV_QUOTA_CREATES_PER_HOUR: &str = "AIRLOCK_QUOTA_CREATES_PER_HOUR";
/// Default of [`ENV_QUOTA_CREATES_PER_HOUR`].
pub const DEFAULT_QUOTA_CREATES_PER_HOUR: &str = "200";
/// The key that seals secrets at rest: 32 bytes as 64 hex digits or base64. Unset: generated
/// on first boot into `<data_dir>/secret.key` (0600). Secret.
pub const ENV_SECRET_KEY: &str = "AIRLOCK_SECRET_KEY";
/// Where the secret key file lives (absolute). Default: `secret.key` in the data dir; on
/// another volume, a copy of the data dir alone opens no secret.
pub const ENV_SECRET_KEY_FILE: &str = "AIRLOCK_SECRET_KEY_FILE";
/// The key file's name in the data dir, the default of [`ENV_SECRET_KEY_FILE`].
pub const DEFAULT_SECRET_KEY_FILE: &str = "secret.key";

/// The 32 key bytes of `text`: 64 hex digits or standard base64, surrounding whitespace
/// ignored.
pub fn parse_secret_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        BASE64.decode(text).ok()?
    };
    bytes.try_into().ok()
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses the `AIRLOCK_QUOTA_*` defaults.
    pub(super) fn quota(&mut self) -> Option<Quota> {
        let count = |v: &str| match v {
            "unlimited" => Ok(UNLIMITED),
            _ => positive_or_zero(v, "a whole number (0 refuses every create) or `unlimited`"),
        };
        let max_sandboxes =
            self.parse_with(ENV_QUOTA_MAX_SANDBOXES, DEFAULT_QUOTA_MAX_SANDBOXES, count);
        let max_memory_mb =
            self.parse_with(ENV_QUOTA_MAX_MEMORY_MB, DEFAULT_QUOTA_MAX_MEMORY_MB, count);
        let max_cpus = self.parse_with(ENV_QUOTA_MAX_CPUS, DEFAULT_QUOTA_MAX_CPUS, |v| {
            if v == "unlimited" {
                return Ok(UNLIMITED_CPUS);
            }
            v.parse::<f64>()
                .ok()
                .and_then(Cpus::from_f64)
                .ok_or("a positive number of CPUs or `unlimited`")
        });
        let max_lifetime =
            self.parse_with(ENV_QUOTA_MAX_LIFETIME, DEFAULT_QUOTA_MAX_LIFETIME, |v| {
                if v == "unlimited" {
                    return Ok(UNLIMITED_LIFETIME);
                }
                v.parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .or_else(|| parse_duration(v).ok())
                    .ok_or("a positive number of seconds, a duration like 24h, or `unlimited`")
            });
        let creates_per_min = self.parse_with(
            ENV_QUOTA_CREATES_PER_MIN,
            DEFAULT_QUOTA_CREATES_PER_MIN,
            count,
        );
        let creates_per_hour = self.parse_with(
            ENV_QUOTA_CREATES_PER_HOUR,
            DEFAULT_QUOTA_CREATES_PER_HOUR,
            count,
        );
        Some(Quota {
            max_sandboxes: max_sandboxes?,
            max_memory_mb: max_memory_mb?,
            max_cpus: max_cpus?,
            max_lifetime: max_lifetime?,
            creates_per_min: creates_per_min?,
            creates_per_hour: creates_per_hour?,
        })
    }

    /// `AIRLOCK_SECRET_KEY`, checked for form (never echoed).
    pub(super) fn secret_key(&mut self) -> Option<Option<Secret>> {
        let value = match self.raw(ENV_SECRET_KEY) {
            None => return Some(None),
            Some(value) => value,
        };
        if parse_secret_key(&value).is_none() {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn config(vars: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|var| vars.get(var).cloned())
    }

    #[test]
    fn quota_defaults_and_overrides_parse() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.quota.max_sandboxes, 10);
        assert_eq!(defaults.quota.max_memory_mb, 8192);
        assert_eq!(defaults.quota.max_cpus, Cpus::from_millis(16_000));
        assert_eq!(defaults.quota.max_lifetime, Duration::from_secs(86_400));
        assert_eq!(defaults.quota.creates_per_min, 20);
        assert_eq!(defaults.quota.creates_per_hour, 200);
        assert!(defaults.quota.unlimited_limits().is_empty());
        let unlimited = config(&[
            (ENV_QUOTA_MAX_SANDBOXES, "unlimited"),
            (ENV_QUOTA_MAX_MEMORY_MB, "unlimited"),
            (ENV_QUOTA_MAX_CPUS, "unlimited"),
            (ENV_QUOTA_MAX_LIFETIME, "unlimited"),
            (ENV_QUOTA_CREATES_PER_MIN, "unlimited"),
            (ENV_QUOTA_CREATES_PER_HOUR, "unlimited"),
        ])
        .unwrap();
        assert_eq!(unlimited.quota, Quota::UNLIMITED);
        assert_eq!(unlimited.quota.unlimited_limits().len(), 6);
        assert!(defaults.secret_key.is_none());
        let set = config(&[
            (ENV_QUOTA_MAX_SANDBOXES, "5"),
            (ENV_QUOTA_MAX_CPUS, "2.5"),
            (ENV_QUOTA_MAX_LIFETIME, "2h"),
            (ENV_QUOTA_CREATES_PER_MIN, "0"),
            (ENV_QUOTA_CREATES_PER_HOUR, "50"),
        ])
        .unwrap();
        assert_eq!(set.quota.max_sandboxes, 5);
        assert_eq!(set.quota.max_cpus, Cpus::from_millis(2500));
        assert_eq!(set.quota.max_lifetime, Duration::from_secs(7200));
        assert_eq!(set.quota.creates_per_min, 0);
        assert_eq!(set.quota.creates_per_hour, 50);
    }

    #[test]
    fn the_key_file_defaults_into_the_data_dir_and_may_live_elsewhere() {
        let default = config(&[("AIRLOCK_DATA_DIR", "/srv/airlock")]).unwrap();
        assert_eq!(
            default.secret_key_file,
            Path::new("/srv/airlock/secret.key")
        );
        let elsewhere = config(&[(ENV_SECRET_KEY_FILE, "/run/keys/airlock.key")]).unwrap();
        assert_eq!(
            elsewhere.secret_key_file,
            Path::new("/run/keys/airlock.key")
        );
        let relative = config(&[(ENV_SECRET_KEY_FILE, "keys/airlock.key")]).unwrap_err();
        assert_eq!(relative.issues[0].var, ENV_SECRET_KEY_FILE);
    }

    #[test]
    fn bad_values_are_reported_together_and_the_key_is_redacted() {
        let key = "not-a-key-but-long-enough-to-look-like-one";
        let error = config(&[
            (ENV_QUOTA_MAX_SANDBOXES, "-1"),
            (ENV_QUOTA_MAX_CPUS, "0"),
            (ENV_SECRET_KEY, key),
        ])
        .unwrap_err();
        let vars: Vec<_> = error.issues.iter().map(|i| i.var).collect();
        assert_eq!(
            vars,
            [ENV_QUOTA_MAX_SANDBOXES, ENV_QUOTA_MAX_CPUS, ENV_SECRET_KEY]
        );
        assert!(!error.to_string().contains(key));
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(config(&[(ENV_SECRET_KEY, hex)])
            .unwrap()
            .secret_key
            .is_some());
    }
}
