//! Files in and out of a running sandbox or a volume, through Docker's archive API.
//! Commands: [`Upload`] (a tar, rewritten by [`tar`], or raw bytes for one file),
//! [`Download`] (a tar, or raw bytes of one regular file), [`ListFiles`], [`StatFile`].
//!
//! Invariants:
//! - every upload is streamed through [`tar::Rewriter`]: only files, directories and symlinks
//!   reach Docker, owned by the sandbox user, without setuid/setgid/sticky bits, never under a
//!   symlink of the same archive, within 1 GiB and 100k entries; Docker extracts with
//!   `noOverwriteDirNonDir`, so an existing symlink in the target is never followed as a
//!   directory; the rewritten archive is staged whole first (`stage`: in the node's staging
//!   memory while it has room, else on the controller's disk), so an archive refused anywhere
//!   leaves nothing in the target;
//! - a sandbox is reached only while it runs, a volume through a never-started helper that
//!   mounts it read-only for reads and read-write for writes; a write is refused while a
//!   sandbox holds the volume read-write, and the helper is removed after each request;
//! - Docker's archive API sees a container's root filesystem and its volumes, never its
//!   tmpfs mounts (measured on dockerd 20.10: a write is refused as "rootfs is marked
//!   read-only", a read returns the image's directory under the tmpfs); paths on the
//!   sandbox's tmpfs (`/tmp`, the home tmpfs, `/run/airlock`) are refused with `path_on_tmpfs`;
//! - another user's sandbox or volume is missing like an unknown one; each write is audited
//!   with its path, bytes and entries, and each refused write with its path and the
//!   refusal's code and reason; reads are not;
//! - a node stages at most a few uploads at once, and one user fewer (`slots`): staging cannot
//!   fill the controller's disk; the memory they are staged in is bounded for the node
//!   (`AIRLOCK_UPLOAD_MEMORY_MB`), past which an upload moves to disk.

mod place;
mod slots;
mod stage;
mod stream;
pub mod tar;

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::audit::{AuditLog, Command};
use crate::docker::client::files::PathStat;
use crate::docker::{DockerClient, DockerError};
use crate::sandbox::path::{PathProblem, EXPECTED_PATH};
use crate::sandbox::{RunAs, SandboxId};
use crate::store::{Store, StoreError};
use crate::volume::VolumeId;
pub use slots::{SlotLimit, MAX_STAGED_PER_NODE, MAX_STAGED_PER_USER};
pub use stream::{Downloaded, ListedFile, Listing};

/// Most bytes of one uploaded archive.
pub const MAX_UPLOAD_BYTES: u64 = 1 << 30;
/// Most entries of one uploaded archive.
pub const MAX_UPLOAD_ENTRIES: u64 = 100_000;
/// Most entries one listing returns.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Deepest listing.
pub const MAX_LIST_DEPTH: u32 = 32;

/// The files service; cheap to clone.
#[derive(Clone, Debug)]
pub struct Files {
    store: Store,
    docker: DockerClient,
    audit: AuditLog,
    settings: FilesSettings,
    uploads: slots::UploadSlots,
    memory: stage::StagingMemory,
}

/// What the files service needs from the configuration.
#[derive(Clone, Debug)]
pub struct FilesSettings {
    /// The image of the never-started volume helper (any image will do; it never runs).
    pub helper_image: String,
    /// Who owns what is uploaded into a volume (no sandbox user to take it from).
    pub volume_owner: RunAs,
    /// This node's name (the helper's `airlock.node` label).
    pub node: String,
    /// Where uploads are staged whole before Docker sees them when the staging memory is
    /// full (`<AIRLOCK_DATA_DIR>/uploads`).
    pub staging_dir: std::path::PathBuf,
    /// Bytes of memory the node's uploads may be staged in at once (`AIRLOCK_UPLOAD_MEMORY_MB`).
    pub staging_memory_bytes: u64,
}

/// Where files live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A running sandbox, at container paths.
    Sandbox(SandboxId),
    /// A volume, at paths from its root.
    Volume(VolumeId),
}

/// A request body: bytes as they arrive.
pub type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// What an upload carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadForm {
    /// A tar archive, extracted into the directory `path`.
    Archive,
    /// The raw bytes of the one file `path`, of this many bytes (the `Content-Length`;
    /// refused without one).
    Content {
        /// The declared length.
        length: Option<u64>,
    },
}

/// `PUT …/files?path=DIR` (a tar) and `PUT …/files/content?path=FILE` (raw bytes).
pub struct Upload {
    /// Where.
    pub place: Place,
    /// The path as given.
    pub path: String,
    /// Tar or raw.
    pub form: UploadForm,
    /// The body.
    pub body: BodyStream,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("place", &self.place)
            .field("path", &self.path)
            .field("form", &self.form)
            .finish_non_exhaustive()
    }
}

/// What an upload wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Entries written.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// `GET …/files?path=P`: a tar, or with `raw` the bytes of a regular file.
#[derive(Clone, Debug)]
pub struct Download {
    /// Where.
    pub place: Place,
    /// The path as given.
    pub path: String,
    /// Raw bytes when the path is a regular file.
    pub raw: bool,
}

/// `GET …/files/list?path=&depth=`.
#[derive(Clone, Debug)]
pub struct ListFiles {
    /// Where.
    pub place: Place,
    /// The path as given.
    pub path: String,
    /// 1..=[`MAX_LIST_DEPTH`].
    pub depth: u32,
}

/// `GET …/files/stat?path=`.
#[derive(Clone, Debug)]
pub struct StatFile {
    /// Where.
    pub place: Place,
    /// The path as given.
    pub path: String,
}

/// Why a files command failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// No such sandbox or volume, or the caller may not see it.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The sandbox is not running.
    #[error("the sandbox is {0}, not running")]
    NotRunning(String),
    /// The path is malformed.
    #[error("path: {0}")]
    BadPath(String),
    /// A query field is out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Nothing at the path.
    #[error("nothing at `{0}`")]
    PathNotFound(String),
    /// The path is not on a writable mount.
    #[error("`{0}` is not on a writable mount (a read-write volume, or a writable root)")]
    PathNotWritable(String),
    /// The path is on a tmpfs, which Docker's archive API cannot see.
    #[error("`{0}` is on a tmpfs, which the files API cannot reach; use a volume")]
    PathOnTmpfs(String),
    /// The upload target is not a directory.
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    /// A sandbox holds the volume read-write.
    #[error("sandbox {0} holds the volume read-write")]
    VolumeBusy(SandboxId),
    /// The archive is refused.
    #[error("bad archive: {0}")]
    BadArchive(String),
    /// Over a cap.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A raw upload without its length.
    #[error("a raw upload needs a Content-Length header")]
    LengthRequired,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(#[from] DockerError),
    /// Too many uploads are being staged: the caller's own, or the node's.
    #[error("{}", match .0 {
        SlotLimit::User => "you have the most uploads in progress one user may have (2); retry when one ends",
        SlotLimit::Node => "the node is staging the most uploads it takes at once (4); retry shortly",
    })]
    TooManyUploads(SlotLimit),
    /// The upload could not be staged on the controller's disk.
    #[error("staging the upload: {0}")]
    Staging(std::io::Error),
}

impl From<tar::TarError> for FilesError {
    fn from(error: tar::TarError) -> Self {
        match error {
            tar::TarError::TooLarge(what) => Self::TooLarge(what),
            bad @ tar::TarError::Bad { .. } => Self::BadArchive(bad.to_string()),
        }
    }
}

impl FilesError {
    /// The error code the API answers with (one source for the answer and the audit row).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::NotRunning(_) => "sandbox_not_running",
            Self::BadPath(_) | Self::Invalid { .. } => "invalid_request",
            Self::PathNotFound(_) => "path_not_found",
            Self::PathNotWritable(_) => "path_not_writable",
            Self::PathOnTmpfs(_) => "path_on_tmpfs",
            Self::NotADirectory(_) => "not_a_directory",
            Self::VolumeBusy(_) => "volume_in_use",
            Self::BadArchive(_) => "bad_archive",
            Self::TooLarge(_) => "too_large",
            Self::LengthRequired => "length_required",
            Self::TooManyUploads(_) => "too_many_uploads",
            Self::Store(_) | Self::Docker(_) | Self::Staging(_) => "internal",
        }
    }

    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadPath(_) | Self::Invalid { .. } | Self::BadArchive(_) => 400,
            Self::NotFound(_) | Self::PathNotFound(_) => 404,
            Self::NotRunning(_)
            | Self::PathNotWritable(_)
            | Self::PathOnTmpfs(_)
            | Self::NotADirectory(_)
            | Self::VolumeBusy(_) => 409,
            Self::LengthRequired => 411,
            Self::TooLarge(_) => 413,
            Self::TooManyUploads(_) => 429,
            Self::Store(_) | Self::Docker(_) | Self::Staging(_) => 500,
        }
    }
}

fn bad_path(problem: PathProblem) -> FilesError {
    let message = match problem {
        PathProblem::TooLong => "longer than 4096 bytes".to_owned(),
        PathProblem::Nul => "holds a NUL byte".to_owned(),
        PathProblem::Malformed => format!("must be {EXPECTED_PATH}"),
    };
    FilesError::BadPath(message)
}

/// The type of a Go `os.FileMode`.
pub fn kind_of_mode(mode: u32) -> &'static str {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const SPECIAL: u32 = (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
    if mode & DIR != 0 {
        "dir"
    } else if mode & SYMLINK != 0 {
        "symlink"
    } else if mode & SPECIAL != 0 {
        "other"
    } else {
        "file"
    }
}

/// The stat of one path, as the API shows it.
pub fn listed_from_stat(stat: &PathStat) -> ListedFile {
    ListedFile {
        name: stat.name.clone(),
        kind: kind_of_mode(stat.mode),
        size: u64::try_from(stat.size).unwrap_or(0),
        mode: stat.mode & 0o777 | go_special_bits(stat.mode),
        mtime: stat.mtime.clone(),
        link_target: (!stat.link_target.is_empty()).then(|| stat.link_target.clone()),
    }
}

fn go_special_bits(mode: u32) -> u32 {
    let mut bits = 0;
    if mode & (1 << 23) != 0 {
        bits |= 0o4000;
    }
    if mode & (1 << 22) != 0 {
        bits |= 0o2000;
    }
    if mode & (1 << 20) != 0 {
        bits |= 0o1000;
    }
    bits
}

// === impl Files ===

impl Files {
    /// The service over `store` and `docker`, filing writes to `audit`.
    pub fn new(
        store: Store,
        docker: DockerClient,
        audit: AuditLog,
        settings: FilesSettings,
    ) -> Self {
        Self {
            store,
            docker,
            audit,
            memory: stage::StagingMemory::new(settings.staging_memory_bytes),
            settings,
            uploads: slots::UploadSlots::default(),
        }
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &crate::audit::Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_file_modes_read_as_types_and_bits() {
        assert_eq!(kind_of_mode((1 << 31) | 0o755), "dir");
        assert_eq!(kind_of_mode((1 << 27) | 0o777), "symlink");
        assert_eq!(kind_of_mode((1 << 26) | (1 << 21) | 0o600), "other");
        assert_eq!(kind_of_mode(0o644), "file");
        let stat = PathStat {
            name: "tool".to_owned(),
            size: 12,
            mode: (1 << 23) | 0o755,
            mtime: None,
            link_target: String::new(),
        };
        let listed = listed_from_stat(&stat);
        assert_eq!(
            (listed.kind, listed.mode, listed.size),
            ("file", 0o4755, 12)
        );
        assert_eq!(listed.link_target, None);
    }

    #[test]
    fn refusals_keep_the_entry_and_the_reason() {
        let error = FilesError::from(tar::TarError::Bad {
            entry: Some("../x".to_owned()),
            reason: "a `..` segment".to_owned(),
        });
        assert_eq!(error.to_string(), "bad archive: ../x: a `..` segment");
        let error = FilesError::from(tar::TarError::TooLarge("100000 entries".to_owned()));
        assert_eq!(error.to_string(), "too large: 100000 entries");
    }
}
