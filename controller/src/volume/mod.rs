//! Volume domain types: the id, the name rules, the create request and its validation, how a
//! quota is enforced on a node, and the per-user volume quota check.
//!
//! Pure: no I/O, no serde and no sqlx derives. Invariants:
//! - a [`VolumeSpec`] only comes from [`VolumeRequest::validate`] (or the store): its name
//!   matches `^[a-z0-9][a-z0-9_.-]{0,62}$`, its size lies in `1..=AIRLOCK_MAX_VOLUME_MB`, and
//!   its labels stay out of `airlock.*`;
//! - the Docker volume of a volume is named [`docker_name`] of its id, a fresh UUIDv7, so a
//!   Docker name is never reused (an XFS project quota would not follow a reused name);
//! - [`check`] decides a create from the owner's [`VolumeQuota`] and [`VolumeUsage`]; the
//!   store runs it inside the transaction that inserts the row.

use std::collections::BTreeMap;
use std::fmt;

use crate::accounts::quota::{Amount, QuotaExceeded, QuotaKind, UNLIMITED};
use crate::sandbox::spec::label_problems;
use crate::sandbox::{string_enum, uuid_id, FieldError, Problem};

/// Prefix of every managed Docker volume's name.
pub const DOCKER_NAME_PREFIX: &str = "airlock-vol-";
/// Longest volume name.
pub const MAX_NAME: usize = 63;
/// What a volume name must look like, for error messages.
pub const EXPECTED_NAME: &str =
    "1 to 63 of `a-z`, `0-9`, `_`, `.`, `-`, starting with a letter or digit";
/// Bytes in a MiB.
const MIB: u64 = 1024 * 1024;

uuid_id! {
    /// A volume's id: a UUIDv7.
    pub struct VolumeId;
}

/// A valid volume name (unique per owner).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeName(String);

string_enum! {
    /// How a volume's size is enforced on its node.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum QuotaMode as "quota mode" {
        /// Sampled usage; a volume over its size refuses new read-write mounts.
        Soft = "soft",
        /// The filesystem's project quota (XFS `prjquota`): writes past the size fail.
        Hard = "hard",
    }
}

/// An unvalidated `POST /v1/volumes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeRequest {
    /// The name.
    pub name: String,
    /// The size in MiB.
    pub size_mb: u64,
    /// User labels.
    pub labels: BTreeMap<String, String>,
}

/// A validated volume request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The name.
    pub name: VolumeName,
    /// The size in MiB, within the operator maximum.
    pub size_mb: u64,
    /// User labels (never under `airlock.`).
    pub labels: BTreeMap<String, String>,
}

/// The volume limits of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeQuota {
    /// Most volumes.
    pub max_volumes: u64,
    /// Most bytes across the sizes of the user's volumes.
    pub max_volume_bytes: u64,
}

/// A user's overrides of the volume quota; `None` keeps the operator default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeQuotaOverride {
    /// See [`VolumeQuota::max_volumes`].
    pub max_volumes: Option<u64>,
    /// See [`VolumeQuota::max_volume_bytes`].
    pub max_volume_bytes: Option<u64>,
}

/// What a user's volumes take now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeUsage {
    /// How many volumes.
    pub volumes: u64,
    /// The sum of their sizes, in bytes.
    pub bytes: u64,
}

/// The Docker volume name of volume `id`.
pub fn docker_name(id: VolumeId) -> String {
    format!("{DOCKER_NAME_PREFIX}{id}")
}

// === impl VolumeName ===

impl VolumeName {
    /// Checks `text` against `^[a-z0-9][a-z0-9_.-]{0,62}$`.
    pub fn parse(text: &str) -> Result<VolumeName, Problem> {
        let mut chars = text.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
        if text.len() > MAX_NAME {
            return Err(Problem::TooLong { max: MAX_NAME });
        }
        if !first_ok || !rest_ok {
            return Err(Problem::Malformed {
                expected: EXPECTED_NAME,
            });
        }
        Ok(VolumeName(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl VolumeRequest ===

impl VolumeRequest {
    /// Checks every field against `max_size_mb`; returns every problem at once.
    pub fn validate(self, max_size_mb: u64) -> Result<VolumeSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = VolumeName::parse(&self.name).map_err(|problem| FieldError {
            field: "name".to_owned(),
            problem,
        });
        let size_problem = if self.size_mb == 0 {
            Some(Problem::BelowMinimum {
                min: "1".to_owned(),
            })
        } else if self.size_mb > max_size_mb {
            Some(Problem::AboveMaximum {
                max: max_size_mb.to_string(),
            })
        } else {
            None
        };
        if let Some(problem) = size_problem {
            errors.push(FieldError {
                field: "size_mb".to_owned(),
                problem,
            });
        }
        errors.extend(label_problems(&self.labels));
        match name {
            Ok(name) if errors.is_empty() => Ok(VolumeSpec {
                name,
                size_mb: self.size_mb,
                labels: self.labels,
            }),
            Ok(_) => Err(errors),
            Err(error) => {
                errors.insert(0, error);
                Err(errors)
            }
        }
    }
}

// === impl VolumeSpec ===

impl VolumeSpec {
    /// Rebuilds a spec that was validated when it was stored.
    pub fn from_stored(
        name: VolumeName,
        size_mb: u64,
        labels: BTreeMap<String, String>,
    ) -> VolumeSpec {
        VolumeSpec {
            name,
            size_mb,
            labels,
        }
    }

    /// The size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_mb.saturating_mul(MIB)
    }
}

// === impl VolumeQuota ===

impl VolumeQuota {
    /// No limit.
    pub const UNLIMITED: VolumeQuota = VolumeQuota {
        max_volumes: UNLIMITED,
        max_volume_bytes: UNLIMITED,
    };

    /// The defaults with `overrides` applied.
    pub fn with(self, overrides: &VolumeQuotaOverride) -> VolumeQuota {
        VolumeQuota {
            max_volumes: overrides.max_volumes.unwrap_or(self.max_volumes),
            max_volume_bytes: overrides.max_volume_bytes.unwrap_or(self.max_volume_bytes),
        }
    }
}

/// Whether a volume of `size_mb` may be created on top of `usage` under `quota`: the count
/// first, then the bytes.
pub fn check(quota: &VolumeQuota, usage: &VolumeUsage, size_mb: u64) -> Result<(), QuotaExceeded> {
    let whole = Amount::Whole;
    if usage.volumes >= quota.max_volumes {
        return Err(QuotaExceeded {
            kind: QuotaKind::MaxVolumes,
            limit: whole(quota.max_volumes),
            used: whole(usage.volumes),
            requested: whole(1),
            retry_after: None,
        });
    }
    let bytes = size_mb.saturating_mul(MIB);
    if usage.bytes.saturating_add(bytes) > quota.max_volume_bytes {
        return Err(QuotaExceeded {
            kind: QuotaKind::MaxVolumeBytes,
            limit: whole(quota.max_volume_bytes),
            used: whole(usage.bytes),
            requested: whole(bytes),
            retry_after: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
