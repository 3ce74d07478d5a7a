//! The path rules of a host folder, at registration and at every mount.
//!
//! Registration ([`register`]) applies, in order, each with its own refusal:
//! 1. the path is absolute ([`PathRefusal::NotAbsolute`]);
//! 2. no `..` segment, NUL or control character ([`PathRefusal::Invalid`]);
//! 3. it exists ([`PathRefusal::NotFound`]);
//! 4. it is a directory ([`PathRefusal::NotDirectory`]);
//! 5. its realpath lies under the realpath of the root, compared component by component, so
//!    `/data2` is not under `/data` ([`PathRefusal::OutsideRoot`]);
//! 6. it is not the root itself ([`PathRefusal::IsRoot`]);
//! 7. its realpath is unique ([`PathRefusal::Duplicate`]);
//! 8. it neither contains nor lies inside another folder's realpath
//!    ([`PathRefusal::Overlaps`]).
//!
//! A mount ([`recheck`]) resolves the stored path again: rules 1 to 6 once more, and a
//! realpath other than the stored one is [`PathRefusal::Changed`] (a folder swapped for a
//! symlink, or a parent renamed). The caller binds the realpath this returns.
//!
//! The filesystem is read here only: `canonicalize` (realpath), `metadata`, and one level of
//! `read_dir` for [`available`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Most candidates [`available`] lists.
pub const MAX_AVAILABLE: usize = 1000;

/// Why a folder path is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRefusal {
    /// Not absolute.
    NotAbsolute,
    /// A `..` segment, a NUL or a control character.
    Invalid,
    /// Nothing at the path (or a component is missing).
    NotFound,
    /// Not a directory.
    NotDirectory,
    /// The realpath lies outside the folders root.
    OutsideRoot,
    /// The realpath is the folders root itself.
    IsRoot,
    /// Another folder has the same realpath.
    Duplicate {
        /// That folder's name.
        folder: String,
    },
    /// The realpath contains, or lies inside, another folder's.
    Overlaps {
        /// That folder's name.
        folder: String,
    },
    /// At a mount: the realpath is not the one registered.
    Changed,
    /// The path could not be read (permissions, I/O).
    Unreadable(String),
}

/// A registered folder's realpath, as the overlap checks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The folder's name.
    pub name: String,
    /// Its realpath.
    pub realpath: PathBuf,
}

/// One candidate directory under the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The entry's name.
    pub name: String,
    /// The path to register (the root as configured, joined with the name).
    pub path: PathBuf,
}

// === impl PathRefusal ===

impl PathRefusal {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAbsolute => "folder_path_not_absolute",
            Self::Invalid => "folder_path_invalid",
            Self::NotFound => "folder_path_not_found",
            Self::NotDirectory => "folder_path_not_directory",
            Self::OutsideRoot => "folder_path_outside_root",
            Self::IsRoot => "folder_path_is_root",
            Self::Duplicate { .. } => "folder_path_duplicate",
            Self::Overlaps { .. } => "folder_path_overlaps",
            Self::Changed => "folder_path_changed",
            Self::Unreadable(_) => "folder_path_unreadable",
        }
    }
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("must be an absolute path"),
            Self::Invalid => {
                f.write_str("must not hold a `..` segment, a NUL or a control character")
            }
            Self::NotFound => f.write_str("does not exist"),
            Self::NotDirectory => f.write_str("is not a directory"),
            Self::OutsideRoot => f.write_str("resolves outside the folders root"),
            Self::IsRoot => f.write_str("resolves to the folders root itself"),
            Self::Duplicate { folder } => {
                write!(f, "resolves to the same directory as folder `{folder}`")
            }
            Self::Overlaps { folder } => {
                write!(f, "contains or lies inside folder `{folder}`")
            }
            Self::Changed => f.write_str(
                "no longer resolves to the directory registered; delete the folder and \
                 register it again",
            ),
            Self::Unreadable(why) => write!(f, "cannot be read: {why}"),
        }
    }
}

/// Rules 1 and 2: the text of `path` alone.
pub fn check_syntax(path: &str) -> Result<(), PathRefusal> {
    if !path.starts_with('/') {
        return Err(PathRefusal::NotAbsolute);
    }
    if path.chars().any(char::is_control) || path.split('/').any(|segment| segment == "..") {
        return Err(PathRefusal::Invalid);
    }
    Ok(())
}

/// Rules 1 to 4: the realpath of `path`, a directory.
pub fn resolve(path: &str) -> Result<PathBuf, PathRefusal> {
    check_syntax(path)?;
    let real = std::fs::canonicalize(path).map_err(|error| io_refusal(&error))?;
    let meta = std::fs::metadata(&real).map_err(|error| io_refusal(&error))?;
    if !meta.is_dir() {
        return Err(PathRefusal::NotDirectory);
    }
    Ok(real)
}

/// The realpath of the folders root.
pub fn resolve_root(root: &Path) -> io::Result<PathBuf> {
    std::fs::canonicalize(root)
}

/// Rules 5 and 6: `real` strictly under `root_real`, component by component.
pub fn check_under_root(real: &Path, root_real: &Path) -> Result<(), PathRefusal> {
    if real == root_real {
        return Err(PathRefusal::IsRoot);
    }
    if !real.starts_with(root_real) {
        return Err(PathRefusal::OutsideRoot);
    }
    Ok(())
}

/// Rules 7 and 8 against the folders already registered.
pub fn check_against(real: &Path, registered: &[Registered]) -> Result<(), PathRefusal> {
    for other in registered {
        if other.realpath == real {
            return Err(PathRefusal::Duplicate {
                folder: other.name.clone(),
            });
        }
        if other.realpath.starts_with(real) || real.starts_with(&other.realpath) {
            return Err(PathRefusal::Overlaps {
                folder: other.name.clone(),
            });
        }
    }
    Ok(())
}

/// Every registration rule: the realpath to store.
pub fn register(
    path: &str,
    root_real: &Path,
    registered: &[Registered],
) -> Result<PathBuf, PathRefusal> {
    let real = resolve(path)?;
    check_under_root(&real, root_real)?;
    check_against(&real, registered)?;
    Ok(real)
}

/// The mount-time check: `path` still resolves, under the root, to `stored`; the realpath
/// to bind.
pub fn recheck(path: &str, stored: &Path, root_real: &Path) -> Result<PathBuf, PathRefusal> {
    let real = match resolve(path) {
        Ok(real) => real,
        Err(PathRefusal::NotFound | PathRefusal::NotDirectory) => return Err(PathRefusal::Changed),
        Err(other) => return Err(other),
    };
    check_under_root(&real, root_real)?;
    if real != stored {
        return Err(PathRefusal::Changed);
    }
    Ok(real)
}

/// One level of directories under `root` (symlinks followed, but only those resolving to a
/// directory under the root are listed), sorted by name, at most [`MAX_AVAILABLE`]; and
/// whether the list was cut.
pub fn available(root: &Path) -> io::Result<(Vec<Candidate>, bool)> {
    let root_real = resolve_root(root)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = root.join(&name);
        let Some(text) = path.to_str() else {
            continue;
        };
        let fits = resolve(text).is_ok_and(|real| check_under_root(&real, &root_real).is_ok());
        if fits {
            found.push(Candidate { name, path });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    let cut = found.len() > MAX_AVAILABLE;
    found.truncate(MAX_AVAILABLE);
    Ok((found, cut))
}

fn io_refusal(error: &io::Error) -> PathRefusal {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => PathRefusal::NotFound,
        _ => PathRefusal::Unreadable(error.kind().to_string()),
    }
}

#[cfg(test)]
mod tests;
