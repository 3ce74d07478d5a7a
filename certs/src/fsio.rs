//! File writes that never leave a half-written file: write a temporary sibling, fsync it,
//! then rename it over the target. Keys are created 0600 from the first byte.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::CertsError;

/// File modes used by the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Certificates: world-readable.
    Public,
    /// Private keys: owner only.
    Secret,
}

/// One file to be written.
#[derive(Debug)]
pub(crate) struct PendingFile {
    pub(crate) path: PathBuf,
    pub(crate) contents: String,
    pub(crate) mode: Mode,
}

/// A temporary file that has been written and synced but not yet renamed into place.
#[derive(Debug)]
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CertsError + 'a {
    move |source| CertsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

/// Creates `dir` (and parents) with the given mode if missing.
pub(crate) fn ensure_dir(dir: &Path, mode: u32) -> Result<(), CertsError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CertsError::Io {
            op: "use as a directory",
            path: dir.to_path_buf(),
            source: std::io::Error::new(ErrorKind::AlreadyExists, "exists and is not a directory"),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(io_err("set permissions on", dir))
        }
        Err(e) => Err(io_err("inspect", dir)(e)),
    }
}

/// Reads a file, returning `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CertsError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| CertsError::Corrupt {
                path: path.to_path_buf(),
                expected: "text file",
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Tightens a key file to 0600; returns true when its mode had to change.
pub(crate) fn restrict(path: &Path) -> Result<bool, CertsError> {
    let meta = fs::metadata(path).map_err(io_err("inspect", path))?;
    if meta.permissions().mode() & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(Mode::Secret.bits()))
        .map_err(io_err("set permissions on", path))?;
    Ok(true)
}

/// Writes every file, all or nothing as far as the file system allows: every temporary file is
/// written and synced before the first rename, and temporaries are removed on failure.
pub(crate) fn write_all(files: &[PendingFile]) -> Result<(), CertsError> {
    let mut staged = Vec::with_capacity(files.len());
    for file in files {
        match stage(file) {
            Ok(s) => staged.push(s),
            Err(e) => {
                discard(&staged);
                return Err(e);
            }
        }
    }
    for (i, s) in staged.iter().enumerate() {
        if let Err(e) = fs::rename(&s.tmp, &s.target) {
            discard(&staged[i..]);
            return Err(io_err("rename into", &s.target)(e));
        }
    }
    Ok(())
}

fn stage(file: &PendingFile) -> Result<Staged, CertsError> {
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = file
        .path
        .with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(file.mode.bits())
        .open(&tmp)
        .map_err(io_err("write", &tmp))?;
    let result = out
        .write_all(file.contents.as_bytes())
        .and_then(|()| out.sync_all())
        // A pre-existing temporary file keeps its old mode; make sure it is right.
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(file.mode.bits())));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    Ok(Staged {
        tmp,
        target: file.path.clone(),
    })
}

fn discard(staged: &[Staged]) {
    for s in staged {
        // Best effort: the error being returned is the one worth reporting.
        let _ = fs::remove_file(&s.tmp);
    }
}
