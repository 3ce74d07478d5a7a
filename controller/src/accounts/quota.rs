//! Per-user quotas: operator defaults (`AIRLOCK_QUOTA_*`) with per-user overrides.
//!
//! A create is checked against the owner's effective [`Quota`] and current [`Usage`] by the
//! pure [`check`], which the store runs inside the same transaction that inserts the sandbox
//! (see `Store::create_sandbox_within_quota`), so parallel creates cannot overshoot. What
//! counts as used: sandboxes in `creating`, `running` or `stopping` (their number, memory and
//! CPUs), and the creates of the last minute and of the last hour (ended sandboxes included).

use std::fmt;
use std::time::Duration;

use crate::sandbox::{Cpus, SandboxSpec};

/// The create-rate window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// The hourly create window (the longest window a create row is kept for).
pub const HOUR_WINDOW: Duration = Duration::from_secs(3600);
/// A count, MiB or rate limit that is not set: no limit.
pub const UNLIMITED: u64 = u64::MAX;
/// A CPU limit that is not set.
pub const UNLIMITED_CPUS: Cpus = Cpus::from_millis(u32::MAX);
/// A lifetime limit that is not set.
pub const UNLIMITED_LIFETIME: Duration = Duration::MAX;

/// The limits that apply to one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Most sandboxes alive at once.
    pub max_sandboxes: u64,
    /// Most memory across the live sandboxes, in MiB.
    pub max_memory_mb: u64,
    /// Most CPUs across the live sandboxes.
    pub max_cpus: Cpus,
    /// Longest absolute timeout of one sandbox.
    pub max_lifetime: Duration,
    /// Most creates in any minute.
    pub creates_per_min: u64,
    /// Most creates in any hour, ended sandboxes included.
    pub creates_per_hour: u64,
}

/// A user's overrides; `None` keeps the operator default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaOverride {
    /// See [`Quota::max_sandboxes`].
    pub max_sandboxes: Option<u64>,
    /// See [`Quota::max_memory_mb`].
    pub max_memory_mb: Option<u64>,
    /// See [`Quota::max_cpus`].
    pub max_cpus: Option<Cpus>,
    /// See [`Quota::max_lifetime`].
    pub max_lifetime: Option<Duration>,
    /// See [`Quota::creates_per_min`].
    pub creates_per_min: Option<u64>,
    /// See [`Quota::creates_per_hour`].
    pub creates_per_hour: Option<u64>,
    /// See [`Resources::max_secrets`].
    pub max_secrets: Option<u64>,
    /// See [`Resources::max_volumes`].
    pub max_volumes: Option<u64>,
    /// See [`Resources::max_volume_bytes`].
    pub max_volume_bytes: Option<u64>,
}

/// The limits on what a user keeps (not sandboxes): the operator defaults
/// (`AIRLOCK_QUOTA_MAX_SECRETS`, `AIRLOCK_QUOTA_MAX_VOLUMES`, `AIRLOCK_QUOTA_MAX_VOLUME_BYTES`) or a user's overrides. Secrets and
/// volumes enforce them in the transaction that adds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Most secrets.
    pub max_secrets: u64,
    /// Most volumes.
    pub max_volumes: u64,
    /// Most bytes across the sizes of the user's volumes.
    pub max_volume_bytes: u64,
}

// === impl Resources ===

impl Resources {
    /// No limits.
    pub const UNLIMITED: Resources = Resources {
        max_secrets: UNLIMITED,
        max_volumes: UNLIMITED,
        max_volume_bytes: UNLIMITED,
    };

    /// These defaults with `overrides` applied.
    pub fn with(&self, overrides: &QuotaOverride) -> Resources {
        Resources {
            max_secrets: overrides.max_secrets.unwrap_or(self.max_secrets),
            max_volumes: overrides.max_volumes.unwrap_or(self.max_volumes),
            max_volume_bytes: overrides.max_volume_bytes.unwrap_or(self.max_volume_bytes),
        }
    }
}

// === impl QuotaOverride ===

impl QuotaOverride {
    /// The fields that differ from `before`, as `name before → after` (`default` for no
    /// override), joined by `, `; `unchanged` when none does. For the audit row.
    pub fn changes_from(&self, before: &QuotaOverride) -> String {
        fn text<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
            value.map_or_else(|| "default".to_owned(), show)
        }
        let count = |v: u64| v.to_string();
        let fields = [
            (
                "max_sandboxes",
                text(before.max_sandboxes, count),
                text(self.max_sandboxes, count),
            ),
            (
                "max_memory_mb",
                text(before.max_memory_mb, count),
                text(self.max_memory_mb, count),
            ),
            (
                "max_cpus",
                text(before.max_cpus, |c| c.to_string()),
                text(self.max_cpus, |c| c.to_string()),
            ),
            (
                "max_lifetime",
                text(before.max_lifetime, |d| format!("{}s", d.as_secs())),
                text(self.max_lifetime, |d| format!("{}s", d.as_secs())),
            ),
            (
                "creates_per_min",
                text(before.creates_per_min, count),
                text(self.creates_per_min, count),
            ),
            (
                "creates_per_hour",
                text(before.creates_per_hour, count),
                text(self.creates_per_hour, count),
            ),
            (
                "max_secrets",
                text(before.max_secrets, count),
                text(self.max_secrets, count),
            ),
            (
                "max_volumes",
                text(before.max_volumes, count),
                text(self.max_volumes, count),
            ),
            (
                "max_volume_bytes",
                text(before.max_volume_bytes, count),
                text(self.max_volume_bytes, count),
            ),
        ];
        let changed: Vec<String> = fields
            .into_iter()
            .filter(|(_, b, a)| b != a)
            .map(|(name, b, a)| format!("{name} {b} → {a}"))
            .collect();
        if changed.is_empty() {
            "unchanged".to_owned()
        } else {
            changed.join(", ")
        }
    }
}

/// What a user currently uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live sandboxes.
    pub sandboxes: u64,
    /// Their memory, in MiB.
    pub memory_mb: u64,
    /// Their CPUs.
    pub cpus_milli: u64,
    /// Creates in the last [`RATE_WINDOW`].
    pub recent_creates: u64,
    /// How long until the oldest of those leaves the window.
    pub rate_resets_in: Duration,
    /// Creates in the last [`HOUR_WINDOW`], ended sandboxes included.
    pub hour_creates: u64,
    /// How long until the oldest of those leaves the hour.
    pub hour_resets_in: Duration,
}

/// Which quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaKind {
    /// [`Quota::max_sandboxes`].
    MaxSandboxes,
    /// [`Quota::max_memory_mb`].
    MaxMemoryMb,
    /// [`Quota::max_cpus`].
    MaxCpus,
    /// [`Quota::max_lifetime`].
    MaxLifetime,
    /// [`Quota::creates_per_min`].
    CreatesPerMin,
    /// [`Quota::creates_per_hour`].
    CreatesPerHour,
    /// Most secrets one user stores (`AIRLOCK_QUOTA_MAX_SECRETS`).
    MaxSecrets,
    /// Most volumes (see [`crate::volume::VolumeQuota`]).
    MaxVolumes,
    /// Most bytes across the sizes of a user's volumes.
    MaxVolumeBytes,
}

/// An amount in a quota's unit: a count, MiB, seconds, or CPUs (fractional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    /// A whole number (sandboxes, MiB, seconds, creates).
    Whole(u64),
    /// CPUs in thousandths.
    CpusMilli(u64),
}

/// A create the quota refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota {kind} exceeded: limit {limit}, used {used}, requested {requested}")]
pub struct QuotaExceeded {
    /// Which quota.
    pub kind: QuotaKind,
    /// Its limit.
    pub limit: Amount,
    /// What is used now.
    pub used: Amount,
    /// What the create asked for on top.
    pub requested: Amount,
    /// For the create rates: when a create is accepted again.
    pub retry_after: Option<Duration>,
}

// === impl Quota ===

impl Quota {
    /// No limit at all (only what an operator writes as `unlimited` everywhere gets).
    pub const UNLIMITED: Quota = Quota {
        max_sandboxes: UNLIMITED,
        max_memory_mb: UNLIMITED,
        max_cpus: UNLIMITED_CPUS,
        max_lifetime: UNLIMITED_LIFETIME,
        creates_per_min: UNLIMITED,
        creates_per_hour: UNLIMITED,
    };

    /// The names of the limits that are unlimited, e.g. `["max_sandboxes"]`.
    pub fn unlimited_limits(&self) -> Vec<&'static str> {
        [
            ("max_sandboxes", self.max_sandboxes == UNLIMITED),
            ("max_memory_mb", self.max_memory_mb == UNLIMITED),
            ("max_cpus", self.max_cpus == UNLIMITED_CPUS),
            ("max_lifetime_s", self.max_lifetime == UNLIMITED_LIFETIME),
            ("creates_per_min", self.creates_per_min == UNLIMITED),
            ("creates_per_hour", self.creates_per_hour == UNLIMITED),
        ]
        .into_iter()
        .filter_map(|(name, unlimited)| unlimited.then_some(name))
        .collect()
    }

    /// The defaults with `overrides` applied.
    pub fn with(self, overrides: &QuotaOverride) -> Quota {
        Quota {
            max_sandboxes: overrides.max_sandboxes.unwrap_or(self.max_sandboxes),
            max_memory_mb: overrides.max_memory_mb.unwrap_or(self.max_memory_mb),
            max_cpus: overrides.max_cpus.unwrap_or(self.max_cpus),
            max_lifetime: overrides.max_lifetime.unwrap_or(self.max_lifetime),
            creates_per_min: overrides.creates_per_min.unwrap_or(self.creates_per_min),
            creates_per_hour: overrides.creates_per_hour.unwrap_or(self.creates_per_hour),
        }
    }
}

/// Whether `spec` may be created on top of `usage` under `quota`. Checked in a fixed order:
/// lifetime, create rate (per minute, then per hour), sandbox count, memory, CPUs.
pub fn check(quota: &Quota, usage: &Usage, spec: &SandboxSpec) -> Result<(), QuotaExceeded> {
    let whole = Amount::Whole;
    let exceeded = |kind, limit, used, requested| QuotaExceeded {
        kind,
        limit,
        used,
        requested,
        retry_after: None,
    };
    let lifetime = spec.timeout().as_secs();
    if spec.timeout() > quota.max_lifetime {
        let limit = whole(quota.max_lifetime.as_secs());
        return Err(exceeded(
            QuotaKind::MaxLifetime,
            limit,
            whole(lifetime),
            whole(lifetime),
        ));
    }
    if usage.recent_creates >= quota.creates_per_min {
        return Err(QuotaExceeded {
            retry_after: Some(usage.rate_resets_in.max(Duration::from_secs(1))),
            ..exceeded(
                QuotaKind::CreatesPerMin,
                whole(quota.creates_per_min),
                whole(usage.recent_creates),
                whole(1),
            )
        });
    }
    if usage.hour_creates >= quota.creates_per_hour {
        return Err(QuotaExceeded {
            retry_after: Some(usage.hour_resets_in.max(Duration::from_secs(1))),
            ..exceeded(
                QuotaKind::CreatesPerHour,
                whole(quota.creates_per_hour),
                whole(usage.hour_creates),
                whole(1),
            )
        });
    }
    if usage.sandboxes >= quota.max_sandboxes {
        return Err(exceeded(
            QuotaKind::MaxSandboxes,
            whole(quota.max_sandboxes),
            whole(usage.sandboxes),
            whole(1),
        ));
    }
    let limits = spec.limits();
    if usage.memory_mb.saturating_add(limits.memory_mb) > quota.max_memory_mb {
        return Err(exceeded(
            QuotaKind::MaxMemoryMb,
            whole(quota.max_memory_mb),
            whole(usage.memory_mb),
            whole(limits.memory_mb),
        ));
    }
    let cpus = u64::from(limits.cpus.millis());
    let cpu_limit = u64::from(quota.max_cpus.millis());
    if quota.max_cpus != UNLIMITED_CPUS && usage.cpus_milli.saturating_add(cpus) > cpu_limit {
        return Err(exceeded(
            QuotaKind::MaxCpus,
            Amount::CpusMilli(u64::from(quota.max_cpus.millis())),
            Amount::CpusMilli(usage.cpus_milli),
            Amount::CpusMilli(cpus),
        ));
    }
    Ok(())
}

// === impl QuotaKind ===

impl QuotaKind {
    /// The name in API errors and the quota document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxSandboxes => "max_sandboxes",
            Self::MaxMemoryMb => "max_memory_mb",
            Self::MaxCpus => "max_cpus",
            Self::MaxLifetime => "max_lifetime_s",
            Self::CreatesPerMin => "creates_per_min",
            Self::CreatesPerHour => "creates_per_hour",
            Self::MaxSecrets => "max_secrets",
            Self::MaxVolumes => "max_volumes",
            Self::MaxVolumeBytes => "max_volume_bytes",
        }
    }
}

impl fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Amount ===

impl Amount {
    /// As a JSON number: whole numbers stay integers, CPUs become fractional.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Self::Whole(n) => serde_json::Value::from(n),
            #[allow(clippy::cast_precision_loss)] // Thousandths of CPUs: far below 2^52.
            Self::CpusMilli(m) => serde_json::Value::from(m as f64 / 1000.0),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Whole(n) => write!(f, "{n}"),
            Self::CpusMilli(m) => match u32::try_from(*m) {
                Ok(m) => write!(f, "{}", Cpus::from_millis(m)),
                Err(_) => write!(f, "{m}m"),
            },
        }
    }
}

#[cfg(test)]
mod tests;
