//! Writes seed and CA files. The root is opened as given (an operator path); every component
//! below it is opened with `O_NOFOLLOW`, so a symlink planted in the image cannot carry a write
//! outside the root. Missing directories are created 0755. The trust files are written by
//! [`write_trust`].

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;

use rustix::fs::{fchmod, mkdirat, open, openat, Mode, OFlags};
use rustix::io::Errno;

use super::Failure;
use crate::frame::is_strictly_under;
use crate::trust;

/// One file to write.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    /// A normal absolute directory the path is under.
    pub root: &'a str,
    /// The file's normal absolute path.
    pub path: &'a str,
    pub content: &'a [u8],
    pub mode: u32,
}

/// The longest writable root `path` is under.
pub(super) fn root_for<'a>(path: &str, roots: &'a [String]) -> Option<&'a str> {
    roots
        .iter()
        .filter(|root| is_strictly_under(path, root))
        .max_by_key(|root| root.len())
        .map(String::as_str)
}

/// Writes `entry`, replacing a regular file already there.
pub(super) fn write(entry: &Entry<'_>) -> Result<(), Failure> {
    write_inner(entry).map_err(|error| Failure::Seed {
        path: entry.path.to_owned(),
        error: error.into(),
    })
}

fn write_inner(entry: &Entry<'_>) -> Result<(), Errno> {
    let root = entry.root.trim_end_matches('/');
    let relative = entry
        .path
        .strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(Errno::INVAL)?;
    let mut components: Vec<&str> = relative.split('/').collect();
    let name = components.pop().ok_or(Errno::INVAL)?;
    let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let mut dir: OwnedFd = open(
        if root.is_empty() { "/" } else { root },
        dir_flags,
        Mode::empty(),
    )?;
    for component in components {
        match mkdirat(&dir, component, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(error) => return Err(error),
        }
        dir = openat(&dir, component, dir_flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    // NONBLOCK: a FIFO planted at the path fails instead of blocking init.
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::TRUNC
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(entry.mode & 0o777);
    let fd = openat(&dir, name, flags, mode)?;
    // The umask narrowed the create mode, and an existing file kept its own.
    fchmod(&fd, mode)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(entry.content)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    Ok(())
}

/// Writes the CA to `ca_file` and the bundle (the image's system store, then the CA) beside
/// it, both 0444, then makes their directory 0555: the workload finds them as the trust
/// variables say and cannot add to them by accident (it owns them; they only decide what its
/// own clients trust).
pub(super) fn write_trust(ca_file: &str, ca_pem: &str) -> Result<(), Failure> {
    let (dir, _) = ca_file.rsplit_once('/').unwrap_or(("", ca_file));
    // The directory above the CA's (the trust tmpfs) is opened as given: a symlinked `/run`
    // in an image does not stop the write, and nothing below it is followed.
    let (root, _) = dir.rsplit_once('/').unwrap_or(("", dir));
    let bundle_file = format!("{dir}/{}", trust::BUNDLE_NAME);
    let bundle = trust::bundle(&system_bundle(), ca_pem);
    for (path, content) in [(ca_file, ca_pem.as_bytes()), (&bundle_file, &bundle)] {
        write(&Entry {
            root: if root.is_empty() { "/" } else { root },
            path,
            content,
            mode: 0o444,
        })?;
    }
    let dir = if dir.is_empty() { "/" } else { dir };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).map_err(|error| {
        Failure::Seed {
            path: dir.to_owned(),
            error,
        }
    })
}

/// The image's system bundle; empty when it is missing, unreadable or over the limit.
fn system_bundle() -> Vec<u8> {
    let read = || -> std::io::Result<Vec<u8>> {
        let file = std::fs::File::open(trust::SYSTEM_BUNDLE)?;
        let mut out = Vec::new();
        file.take(trust::MAX_SYSTEM_BUNDLE + 1)
            .read_to_end(&mut out)?;
        Ok(out)
    };
    read()
        .ok()
        .filter(|b| b.len() as u64 <= trust::MAX_SYSTEM_BUNDLE)
        .unwrap_or_default()
}
