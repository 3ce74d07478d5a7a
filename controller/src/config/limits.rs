//! The operator's maximums for one sandbox (`AIRLOCK_MAX_*`) and the default timeout.

use super::reader::Reader;
use super::values::{parse_duration, positive};
use crate::sandbox::{Cpus, Limits, Maximums};

/// Most CPUs one sandbox may ask for.
pub const ENV_MAX_CPUS: &str = "AIRLOCK_MAX_CPUS";
/// Default of [`ENV_MAX_CPUS`].
pub const DEFAULT_MAX_CPUS: &str = "2";
/// Most memory one sandbox may ask for, in MiB.
pub const ENV_MAX_MEMORY_MB: &str = "AIRLOCK_MAX_MEMORY_MB";
/// Default of [`ENV_MAX_MEMORY_MB`].
pub const DEFAULT_MAX_MEMORY_MB: &str = "2048";
/// Most processes one sandbox may ask for.
pub const ENV_MAX_PIDS: &str = "AIRLOCK_MAX_PIDS";
/// Default of [`ENV_MAX_PIDS`].
pub const DEFAULT_MAX_PIDS: &str = "1024";
/// Largest writable-layer size in MiB; unset means disk limits may not be asked for.
pub const ENV_MAX_DISK_MB: &str = "AIRLOCK_MAX_DISK_MB";
/// Longest absolute timeout.
pub const ENV_MAX_TIMEOUT: &str = "AIRLOCK_MAX_TIMEOUT";
/// Default of [`ENV_MAX_TIMEOUT`].
pub const DEFAULT_MAX_TIMEOUT: &str = "24h";
/// Timeout of a sandbox that asks for none.
pub const ENV_DEFAULT_TIMEOUT: &str = "AIRLOCK_DEFAULT_TIMEOUT";
/// Default of [`ENV_DEFAULT_TIMEOUT`].
pub const DEFAULT_DEFAULT_TIMEOUT: &str = "1h";
/// Most sandbox /29s one user's sandboxes may hold at once, so no tenant can use up the pools
/// (`unlimited` lifts it).
pub const ENV_MAX_SUBNETS_PER_USER: &str = "AIRLOCK_MAX_SUBNETS_PER_USER";
/// Default of [`ENV_MAX_SUBNETS_PER_USER`].
pub const DEFAULT_MAX_SUBNETS_PER_USER: &str = "256";

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn subnets_per_user(&mut self) -> Option<u64> {
        self.parse_with(
            ENV_MAX_SUBNETS_PER_USER,
            DEFAULT_MAX_SUBNETS_PER_USER,
            |v| match v {
                "unlimited" => Ok(u64::MAX),
                _ => positive(v, "a positive number of subnets or `unlimited`"),
            },
        )
    }

    pub(super) fn maximums(&mut self) -> Option<Maximums> {
        let cpus = self.parse_with(ENV_MAX_CPUS, DEFAULT_MAX_CPUS, |v| {
            v.parse::<f64>()
                .ok()
                .and_then(Cpus::from_f64)
                .filter(|c| *c >= Cpus::MIN)
                .ok_or("a number of CPUs of at least 0.01")
        });
        let memory_mb = self.parse_with(ENV_MAX_MEMORY_MB, DEFAULT_MAX_MEMORY_MB, |v| {
            positive(v, "a positive number of MiB")
        });
        let pids = self.parse_with(ENV_MAX_PIDS, DEFAULT_MAX_PIDS, |v| {
            positive(v, "a positive number of processes")
        });
        let disk_mb = self.optional(ENV_MAX_DISK_MB, |v| positive(v, "a positive number of MiB"));
        let timeout = self.parse_with(ENV_MAX_TIMEOUT, DEFAULT_MAX_TIMEOUT, parse_duration);
        let default_timeout =
            self.parse_with(ENV_DEFAULT_TIMEOUT, DEFAULT_DEFAULT_TIMEOUT, parse_duration);
        let (timeout, default_timeout) = (timeout?, default_timeout?);
        if default_timeout > timeout {
            let value = self
                .raw(ENV_DEFAULT_TIMEOUT)
                .unwrap_or_else(|| DEFAULT_DEFAULT_TIMEOUT.to_owned());
            self.issue(
                ENV_DEFAULT_TIMEOUT,
                &value,
                false,
                "a duration no longer than AIRLOCK_MAX_TIMEOUT",
            );
            return None;
        }
        let limits = Limits {
            cpus: cpus?,
            memory_mb: memory_mb?,
            pids: pids?,
            disk_mb: disk_mb?,
        };
        Some(Maximums {
            limits,
            timeout,
            default_timeout,
        })
    }
}
