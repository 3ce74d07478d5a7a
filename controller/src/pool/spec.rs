//! [`PoolSpec`]: one configured pool, validated from a [`PoolRequest`] with every problem
//! named by its field (`image`, `user`, `size`, `max_idle_s`, `shape.<limit>`, `scratch_mb`).

use std::time::Duration;

use super::PoolKey;
use crate::images::allow::AllowList;
use crate::sandbox::user::UidRanges;
use crate::sandbox::{FieldError, ImageRef, Limits, LimitsRequest, Problem, RootFs, RunAs};

/// Most members one pool keeps.
pub const MAX_POOL_SIZE: u64 = 128;
/// Most members all of a node's pools keep together.
pub const MAX_POOL_TOTAL: u64 = 256;
/// Shortest `max_idle_s`.
pub const MIN_IDLE_S: u64 = 10;
/// Longest `max_idle_s` (a day).
pub const MAX_IDLE_S: u64 = 86_400;
/// `max_idle_s` of a pool that names none.
pub const DEFAULT_IDLE_S: u64 = 3_600;

/// One pool as the operator wrote it, not yet checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolRequest {
    /// The image reference; the members run its digest.
    pub image: String,
    /// `uid[:gid]` (a missing gid takes the uid); `None`: the user the image's `USER`
    /// resolves to, exactly as for a create without one.
    pub user: Option<String>,
    /// How many ready members to keep.
    pub size: Option<u64>,
    /// Seconds a member may wait unclaimed before it is replaced.
    pub max_idle_s: Option<u64>,
    /// The limits members are created with (each missing one takes the default).
    pub shape: LimitsRequest,
    /// Size of an optional scratch `/workspace` volume, in MiB.
    pub scratch_mb: Option<u64>,
}

/// The operator bounds a pool is checked against.
#[derive(Clone, Debug)]
pub struct PoolBounds {
    /// The largest limits one sandbox may have (`AIRLOCK_MAX_*`).
    pub limits: Limits,
    /// The uids sandboxes may run as (`AIRLOCK_ALLOWED_UIDS`).
    pub allowed_uids: UidRanges,
    /// The largest volume, in MiB (`AIRLOCK_MAX_VOLUME_MB`).
    pub max_volume_mb: u64,
    /// The allowed images (`AIRLOCK_IMAGES`); `None` allows any.
    pub allow: Option<AllowList>,
}

/// A validated pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// The image reference (resolved to a digest by the pool service).
    pub image: ImageRef,
    /// The user, when the pool names one.
    pub user: Option<RunAs>,
    /// How many ready members to keep (1..=[`MAX_POOL_SIZE`]).
    pub size: u64,
    /// How long a member may wait unclaimed.
    pub max_idle: Duration,
    /// The limits members are created with.
    pub shape: Limits,
    /// The scratch volume's size, if any.
    pub scratch_mb: Option<u64>,
}

// === impl PoolRequest ===

impl PoolRequest {
    /// Checks every field; returns the pool or every problem found.
    pub fn validate(self, bounds: &PoolBounds) -> Result<PoolSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let image = ImageRef::parse(&self.image)
            .map_err(|problem| errors.push(field("image", problem)))
            .ok();
        let user = match self
            .user
            .as_deref()
            .map(|u| parse_user(u, &bounds.allowed_uids))
        {
            None => None,
            Some(Ok(user)) => Some(user),
            Some(Err(problem)) => {
                errors.push(field("user", problem));
                None
            }
        };
        let size = match self.size {
            None => {
                errors.push(field("size", Problem::Required));
                0
            }
            Some(size) => within("size", size, 1, MAX_POOL_SIZE, &mut errors),
        };
        let idle = self.max_idle_s.unwrap_or(DEFAULT_IDLE_S);
        let idle = within("max_idle_s", idle, MIN_IDLE_S, MAX_IDLE_S, &mut errors);
        let shape = match self.shape.check(&bounds.limits) {
            Ok(shape) => shape,
            Err(problems) => {
                errors.extend(problems.into_iter().map(|e| FieldError {
                    field: e.field.replacen("limits.", "shape.", 1),
                    problem: e.problem,
                }));
                Limits::DEFAULT
            }
        };
        let disk = "shape.disk_mb";
        if self.shape.disk_mb.is_some() && !errors.iter().any(|e| e.field == disk) {
            // A disk limit is fixed at create, and a claim asking for one goes cold anyway.
            let problem = Problem::Refused("a pool's members cannot have a disk limit".to_owned());
            errors.push(field(disk, problem));
        }
        let scratch_mb = self
            .scratch_mb
            .map(|mb| within("scratch_mb", mb, 1, bounds.max_volume_mb, &mut errors));
        match image {
            Some(image) if errors.is_empty() => Ok(PoolSpec {
                image,
                user,
                size,
                max_idle: Duration::from_secs(idle),
                shape,
                scratch_mb,
            }),
            _ => Err(errors),
        }
    }
}

// === impl PoolSpec ===

impl PoolSpec {
    /// The key of this pool's members once the image resolved to `digest` and the user to
    /// `user` (the pool's own, or the image's as [`crate::sandbox::user`] picks it). Pools
    /// have no TTY and a read-only root.
    pub fn key(&self, digest: &str, user: RunAs) -> PoolKey {
        PoolKey {
            image_digest: digest.to_owned(),
            user,
            tty: false,
            rootfs: RootFs::ReadOnly,
        }
    }
}

/// Checks a node's pools together: at most [`MAX_POOL_TOTAL`] members in all, and no two
/// pools with the same image and user (they would share a key). Fields are `[i].image`
/// relative to the list.
pub fn check_total(pools: &[PoolSpec]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let total: u64 = pools.iter().map(|p| p.size).sum();
    if total > MAX_POOL_TOTAL {
        errors.push(field(
            "",
            Problem::Refused(format!(
                "the pools keep {total} members together, more than {MAX_POOL_TOTAL}"
            )),
        ));
    }
    for (i, pool) in pools.iter().enumerate() {
        let earlier = &pools[..i];
        if earlier
            .iter()
            .any(|p| p.image == pool.image && p.user == pool.user)
        {
            errors.push(field(&format!("[{i}].image"), Problem::Duplicate));
        }
    }
    errors
}

fn field(name: &str, problem: Problem) -> FieldError {
    FieldError {
        field: name.to_owned(),
        problem,
    }
}

fn within(name: &str, value: u64, min: u64, max: u64, errors: &mut Vec<FieldError>) -> u64 {
    if value < min {
        errors.push(field(
            name,
            Problem::BelowMinimum {
                min: min.to_string(),
            },
        ));
    } else if value > max {
        errors.push(field(
            name,
            Problem::AboveMaximum {
                max: max.to_string(),
            },
        ));
    }
    value
}

fn parse_user(text: &str, allowed: &UidRanges) -> Result<RunAs, Problem> {
    let malformed = Problem::Malformed {
        expected: "a numeric uid[:gid]",
    };
    let (uid, gid) = text.split_once(':').unwrap_or((text, text));
    let uid: u32 = uid.trim().parse().map_err(|_bad| malformed.clone())?;
    let gid: u32 = gid.trim().parse().map_err(|_bad| malformed)?;
    if uid == 0 {
        return Err(Problem::Root);
    }
    if !allowed.contains(uid) {
        return Err(Problem::Refused(format!(
            "uid {uid} is outside AIRLOCK_ALLOWED_UIDS"
        )));
    }
    Ok(RunAs { uid, gid })
}
