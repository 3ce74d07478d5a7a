//! A sandbox's mounts: the create request's `mounts` and `home`, checked, and then bound to
//! the owner's volumes.
//!
//! Pure. A checked mount list holds:
//! - at most [`MAX_MOUNTS`] mounts besides the home;
//! - every target is a [`ContainerPath`], never `/`, never at or under [`FORBIDDEN_TARGETS`]
//!   nor at or under the controller's own mounts ([`RESERVED_TARGETS`]);
//! - no two targets are equal or nested, and no volume is mounted twice;
//! - host folders are refused (not available yet), by field;
//! - a home volume (`"home": {"volume": …}`) becomes a read-write mount at [`HOME_DIR`].
//!
//! A mount is *bound* once the create found the owner's volume of that name (its id and
//! Docker name); only bound mounts reach Docker.

use std::collections::{BTreeMap, HashSet};

use super::path::ContainerPath;
use super::spec::HOME_DIR;
use super::{FieldError, Problem};
use crate::volume::{VolumeId, VolumeName};

/// Most mounts per sandbox (the home not counted).
pub const MAX_MOUNTS: usize = 8;
/// Targets no mount may use or lie under: the kernel's and the system's own trees, and the
/// controller's.
pub const FORBIDDEN_TARGETS: [&str; 5] = ["/proc", "/sys", "/dev", "/etc", "/run/airlock"];
/// The controller's own mounts (the tmpfs `/tmp` and the home).
pub const RESERVED_TARGETS: [&str; 2] = ["/tmp", HOME_DIR];

/// Where a requested mount comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// One of the owner's volumes, by name.
    Volume(String),
    /// A registered host folder, by name (not available yet: refused).
    Folder(String),
}

/// One requested mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountRequest {
    /// The source.
    pub source: MountSource,
    /// The target path in the sandbox.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// The volume a mount was bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundVolume {
    /// The volume.
    pub id: VolumeId,
    /// Its Docker volume.
    pub docker_name: String,
}

/// One checked mount of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The owner's volume name.
    pub volume: VolumeName,
    /// Where it is mounted.
    pub target: ContainerPath,
    /// Read-only.
    pub read_only: bool,
    /// Set once the create found the volume.
    pub bound: Option<BoundVolume>,
}

/// Checks `mounts` and the home volume name; returns the mounts (the home's last) or every
/// problem found.
pub fn check_mounts(
    mounts: Vec<MountRequest>,
    home: Option<&str>,
) -> Result<Vec<Mount>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if mounts.len() > MAX_MOUNTS {
        errors.push(error("mounts", Problem::TooMany { max: MAX_MOUNTS }));
    }
    let mut checked: Vec<Mount> = Vec::with_capacity(mounts.len() + 1);
    let mut volumes = HashSet::new();
    for (i, mount) in mounts.into_iter().enumerate() {
        let volume =
            match mount.source {
                MountSource::Folder(_) => {
                    errors.push(error(format!("mounts[{i}].folder"), Problem::Unsupported {
                    what: "host folders are not available on this controller yet; use a volume",
                }));
                    None
                }
                MountSource::Volume(name) => match VolumeName::parse(&name) {
                    Ok(name) if !volumes.insert(name.clone()) => {
                        errors.push(error(format!("mounts[{i}].volume"), Problem::Duplicate));
                        None
                    }
                    Ok(name) => Some(name),
                    Err(problem) => {
                        errors.push(error(format!("mounts[{i}].volume"), problem));
                        None
                    }
                },
            };
        let field = format!("mounts[{i}].target");
        let target = match check_target(&mount.target, &checked) {
            Ok(target) => Some(target),
            Err(problem) => {
                errors.push(error(field, problem));
                None
            }
        };
        if let (Some(volume), Some(target)) = (volume, target) {
            checked.push(Mount {
                volume,
                target,
                read_only: mount.read_only,
                bound: None,
            });
        }
    }
    if let Some(name) = home {
        match VolumeName::parse(name) {
            Ok(name) if volumes.contains(&name) => {
                errors.push(error("home.volume", Problem::Duplicate));
            }
            Ok(volume) => checked.push(Mount {
                volume,
                target: ContainerPath::parse(HOME_DIR).map_err(|_never| Vec::new())?,
                read_only: false,
                bound: None,
            }),
            Err(problem) => errors.push(error("home.volume", problem)),
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// Binds every mount to its volume from `found` (name → volume); returns the first name not
/// found.
pub fn bind(
    mounts: &mut [Mount],
    found: &BTreeMap<VolumeName, BoundVolume>,
) -> Result<(), VolumeName> {
    for mount in mounts {
        let bound = found
            .get(&mount.volume)
            .ok_or_else(|| mount.volume.clone())?;
        mount.bound = Some(bound.clone());
    }
    Ok(())
}

fn check_target(text: &str, earlier: &[Mount]) -> Result<ContainerPath, Problem> {
    let target = ContainerPath::parse(text).map_err(|_bad| Problem::Malformed {
        expected: super::path::EXPECTED_PATH,
    })?;
    if target.is_root() {
        return Err(Problem::Reserved);
    }
    let under = |list: &[&str]| {
        list.iter().any(|p| {
            ContainerPath::parse(p).is_ok_and(|p| target.is_within(&p) || p.is_within(&target))
        })
    };
    if under(&FORBIDDEN_TARGETS) || under(&RESERVED_TARGETS) {
        return Err(Problem::Reserved);
    }
    let nested = earlier
        .iter()
        .any(|m| target.is_within(&m.target) || m.target.is_within(&target));
    if nested {
        return Err(Problem::Overlaps);
    }
    Ok(target)
}

fn error(field: impl Into<String>, problem: Problem) -> FieldError {
    FieldError {
        field: field.into(),
        problem,
    }
}

#[cfg(test)]
mod tests;
