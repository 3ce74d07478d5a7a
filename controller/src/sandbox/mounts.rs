//! A sandbox's mounts: the create request's `mounts` and `home`, checked, and then bound to
//! the owner's volumes.
//!
//! Pure. A checked mount list holds:
//! - at most [`MAX_MOUNTS`] mounts besides the home;
//! - every target is a [`ContainerPath`], never `/`, never at or under [`FORBIDDEN_TARGETS`]
//!   nor at or under the controller's own mounts ([`RESERVED_TARGETS`]);
//! - no two targets are equal or nested, and no volume is mounted twice;
//! - no volume and no host folder is mounted twice;
//! - a home volume (`"home": {"volume": …}`) becomes a read-write mount at [`HOME_DIR`].
//!
//! A mount is *bound* once the create found the owner's volume of that name (its id and
//! Docker name), or a folder granted to the owner whose path still resolves to its
//! registered realpath, read-only when its mode says so ([`BoundFolder`]); only bound mounts
//! reach Docker.

use std::collections::{BTreeMap, HashSet};

use super::path::ContainerPath;
use super::spec::HOME_DIR;
use super::{FieldError, Problem, SandboxSpec};
use crate::folder::{FolderId, FolderName};
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
    /// A registered host folder, by name.
    Folder(String),
    /// Both or neither of a volume and a folder: refused by field.
    Ambiguous,
}

/// One requested mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountRequest {
    /// The source.
    pub source: MountSource,
    /// The target path in the sandbox.
    pub target: String,
    /// Read-only; `None`: read-write for a volume, the mode's default for a folder.
    pub read_only: Option<bool>,
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

/// A host folder bound at create: the realpath to bind, checked again just now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundFolder {
    /// The folder.
    pub id: FolderId,
    /// Its realpath (equal to the registered one).
    pub realpath: String,
    /// Read-only (always, for an `ro` folder).
    pub read_only: bool,
}

/// One checked mount of a host folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderMount {
    /// The folder's name.
    pub folder: FolderName,
    /// Where it is mounted.
    pub target: ContainerPath,
    /// Read-only as asked (`None`: the folder's mode decides).
    pub read_only: Option<bool>,
    /// Set once the create found the folder and resolved it again.
    pub bound: Option<BoundFolder>,
}

/// The checked mounts: volumes (the home's last) and host folders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Volume mounts.
    pub volumes: Vec<Mount>,
    /// Host folder mounts.
    pub folders: Vec<FolderMount>,
}

/// Checks `mounts` and the home volume name; returns the mounts or every problem found.
pub fn check_mounts(
    mounts: Vec<MountRequest>,
    home: Option<&str>,
) -> Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    if mounts.len() > MAX_MOUNTS {
        errors.push(error("mounts", Problem::TooMany { max: MAX_MOUNTS }));
    }
    let mut checked: Vec<Mount> = Vec::with_capacity(mounts.len() + 1);
    let mut folders: Vec<FolderMount> = Vec::new();
    let mut targets: Vec<ContainerPath> = Vec::with_capacity(mounts.len() + 1);
    let mut volumes = HashSet::new();
    let mut folder_names = HashSet::new();
    for (i, mount) in mounts.into_iter().enumerate() {
        let source = match mount.source {
            MountSource::Ambiguous => {
                errors.push(error(
                    format!("mounts[{i}]"),
                    Problem::Malformed {
                        expected: "exactly one of `volume` or `folder`",
                    },
                ));
                None
            }
            MountSource::Folder(name) => match FolderName::parse(&name) {
                Ok(name) if !folder_names.insert(name.clone()) => {
                    errors.push(error(format!("mounts[{i}].folder"), Problem::Duplicate));
                    None
                }
                Ok(name) => Some(MountSource::Folder(name.to_string())),
                Err(problem) => {
                    errors.push(error(format!("mounts[{i}].folder"), problem));
                    None
                }
            },
            MountSource::Volume(name) => match VolumeName::parse(&name) {
                Ok(name) if !volumes.insert(name.clone()) => {
                    errors.push(error(format!("mounts[{i}].volume"), Problem::Duplicate));
                    None
                }
                Ok(name) => Some(MountSource::Volume(name.to_string())),
                Err(problem) => {
                    errors.push(error(format!("mounts[{i}].volume"), problem));
                    None
                }
            },
        };
        let field = format!("mounts[{i}].target");
        let target = match check_target(&mount.target, &targets) {
            Ok(target) => Some(target),
            Err(problem) => {
                errors.push(error(field, problem));
                None
            }
        };
        let (Some(source), Some(target)) = (source, target) else {
            continue;
        };
        targets.push(target.clone());
        match source {
            MountSource::Volume(name) => checked.push(Mount {
                volume: VolumeName::parse(&name).map_err(|_never| Vec::new())?,
                target,
                read_only: mount.read_only.unwrap_or(false),
                bound: None,
            }),
            MountSource::Ambiguous => {}
            MountSource::Folder(name) => folders.push(FolderMount {
                folder: FolderName::parse(&name).map_err(|_never| Vec::new())?,
                target,
                read_only: mount.read_only,
                bound: None,
            }),
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
        Ok(Checked {
            volumes: checked,
            folders,
        })
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

fn check_target(text: &str, earlier: &[ContainerPath]) -> Result<ContainerPath, Problem> {
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
        .any(|m| target.is_within(m) || m.is_within(&target));
    if nested {
        return Err(Problem::Overlaps);
    }
    Ok(target)
}

// === impl SandboxSpec ===

impl SandboxSpec {
    /// The host folder mounts.
    pub fn folders(&self) -> &[FolderMount] {
        &self.folders
    }

    /// Adds the stored folder mounts to a spec rebuilt from the store.
    pub(crate) fn with_stored_folders(mut self, folders: Vec<FolderMount>) -> SandboxSpec {
        self.folders = folders;
        self
    }

    /// Binds every folder mount with `bind` (by name, in order); the first refusal wins.
    pub(crate) fn bind_folders<E>(
        mut self,
        mut bind: impl FnMut(&FolderMount) -> Result<BoundFolder, E>,
    ) -> Result<SandboxSpec, E> {
        for mount in &mut self.folders {
            mount.bound = Some(bind(mount)?);
        }
        Ok(self)
    }
}

fn error(field: impl Into<String>, problem: Problem) -> FieldError {
    FieldError {
        field: field.into(),
        problem,
    }
}

#[cfg(test)]
mod tests;
