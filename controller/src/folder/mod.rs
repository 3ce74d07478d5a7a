//! Host folder domain types: the id, the name, the mode, and the registration and mount-time
//! path rules ([`path`]).
//!
//! A host folder is a directory under the operator's `AIRLOCK_FOLDERS_ROOT` that an admin
//! registered and granted to users. Invariants:
//! - a folder's `path` never changes after registration (delete and register again);
//! - its `realpath` lies strictly under the realpath of the root (component-wise, so `/data2`
//!   is never under `/data`), is unique, and neither contains nor lies inside another
//!   registered folder's;
//! - every mount resolves `path` again and refuses a changed realpath
//!   ([`path::PathRefusal::Changed`]); an `ro` folder is never mounted read-write.
//!
//! No store, no Docker. [`path`] reads the filesystem (realpath, metadata, one directory
//! listing) and nothing else.

pub mod path;

use std::fmt;

use crate::sandbox::{string_enum, uuid_id, Problem};
use crate::volume::VolumeName;

uuid_id! {
    /// A folder's id: a UUIDv7.
    pub struct FolderId;
}

string_enum! {
    /// What a folder allows a sandbox.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum FolderMode as "folder mode" {
        /// Read-only: every mount is read-only, and asking for read-write is refused.
        ReadOnly = "ro",
        /// Read-write: a mount is read-write unless it asks for read-only.
        ReadWrite = "rw",
    }
}

/// A valid folder name (unique on the controller): the volume name rules,
/// `^[a-z0-9][a-z0-9_.-]{0,62}$`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FolderName(String);

// === impl FolderName ===

impl FolderName {
    /// Checks `text` against the name rules.
    pub fn parse(text: &str) -> Result<FolderName, Problem> {
        VolumeName::parse(text).map(|name| FolderName(name.as_str().to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl FolderMode ===

impl FolderMode {
    /// Whether a mount asking for `read_only` (`None`: the folder's default) is read-only;
    /// `Err` when it asks for read-write on a read-only folder.
    pub fn mount_read_only(self, read_only: Option<bool>) -> Result<bool, ReadOnlyFolder> {
        match (self, read_only) {
            (Self::ReadOnly, Some(false)) => Err(ReadOnlyFolder),
            (Self::ReadOnly, _) => Ok(true),
            (Self::ReadWrite, asked) => Ok(asked.unwrap_or(false)),
        }
    }
}

/// A read-write mount asked of a read-only folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOnlyFolder;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ro_folder_is_never_mounted_read_write() {
        let ro = FolderMode::ReadOnly;
        assert_eq!(ro.mount_read_only(None), Ok(true));
        assert_eq!(ro.mount_read_only(Some(true)), Ok(true));
        assert_eq!(ro.mount_read_only(Some(false)), Err(ReadOnlyFolder));
        let rw = FolderMode::ReadWrite;
        assert_eq!(rw.mount_read_only(None), Ok(false));
        assert_eq!(rw.mount_read_only(Some(true)), Ok(true));
        assert_eq!(rw.mount_read_only(Some(false)), Ok(false));
    }

    #[test]
    fn names_follow_the_volume_rules() {
        assert!(FolderName::parse("datasets").is_ok());
        assert!(FolderName::parse("Data").is_err());
        assert!(FolderName::parse("").is_err());
        assert!(FolderName::parse("../x").is_err());
        assert_eq!("ro".parse::<FolderMode>().ok(), Some(FolderMode::ReadOnly));
        assert!("rx".parse::<FolderMode>().is_err());
    }
}
