//! The store lock: `<data_dir>/airlock.lock`, held with `flock(2)` for as long as a process
//! uses the store. `airlock serve` holds it shared (several servers may share a store);
//! `airlock admin rotate-key` needs it exclusive and refuses while any server on this host
//! holds it, so no server keeps sealing with the old key mid-rotation. The kernel drops the
//! lock when the process ends, however it ends. Servers on other hosts (a shared Postgres)
//! are not seen: stop them first.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file's name under the data dir.
pub const LOCK_FILE: &str = "airlock.lock";

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A server holds the store.
    #[error(
        "a running `airlock serve` holds the store ({}); stop every server first",
        .0.display()
    )]
    Held(PathBuf),
    /// The lock file could not be opened or locked.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What `airlock serve` holds: shared.
pub fn serving(data_dir: &Path) -> Result<StoreLock, LockError> {
    take(data_dir, FlockOperation::NonBlockingLockShared)
}

/// What a command that must run alone holds: exclusive, refused while any server holds it.
pub fn alone(data_dir: &Path) -> Result<StoreLock, LockError> {
    take(data_dir, FlockOperation::NonBlockingLockExclusive)
}

fn take(data_dir: &Path, operation: FlockOperation) -> Result<StoreLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match flock(&file, operation) {
        Ok(()) => Ok(StoreLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LockError::Held(path)),
        Err(errno) => Err(io(errno.into())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn servers_share_and_a_lone_command_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let one = serving(dir.path()).unwrap();
        let two = serving(dir.path()).unwrap();
        assert!(matches!(alone(dir.path()), Err(LockError::Held(_))));
        drop(one);
        assert!(matches!(alone(dir.path()), Err(LockError::Held(_))));
        drop(two);
        let lone = alone(dir.path()).unwrap();
        assert!(matches!(serving(dir.path()), Err(LockError::Held(_))));
        drop(lone);
    }
}
