//! Key hygiene on disk, checked at every `airlock serve` start: the data dir is 0700 and the
//! SQLite database (with its `-wal` and `-shm` files) and `secret.key` are 0600. A missing
//! data dir is created 0700; a looser mode found on any of them is tightened, and each fix is
//! returned as a warning for the log (someone else could have read the file meanwhile).

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, DatabaseConfig};

/// Creates the data dir 0700 when it is missing (before anything writes into it).
pub fn create_data_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Tightens the data dir to 0700 and the database and key files to 0600; returns one
/// warning per mode it had to change.
pub fn harden(config: &Config) -> io::Result<Vec<String>> {
    let mut fixes = Vec::new();
    tighten(&config.data_dir, 0o700, &mut fixes)?;
    let mut files: Vec<PathBuf> = vec![config.secret_key_file.clone()];
    if let DatabaseConfig::Sqlite { path } = &config.database {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(PathBuf::from(name));
        }
    }
    for file in files {
        tighten(&file, 0o600, &mut fixes)?;
    }
    Ok(fixes)
}

/// Sets `path` to `mode` if it exists with any bit beyond it.
fn tighten(path: &Path, mode: u32, fixes: &mut Vec<String>) -> io::Result<()> {
    let found = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if found & !mode != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
        fixes.push(format!(
            "{} was mode {found:o}; set to {mode:o}",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_modes_are_tightened_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        create_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        let config = Config::from_lookup(|var| {
            (var == "AIRLOCK_DATA_DIR").then(|| data.display().to_string())
        })
        .unwrap();
        for name in [
            "airlock.db",
            "airlock.db-wal",
            crate::secrets::vault::KEY_FILE,
        ] {
            std::fs::write(data.join(name), b"x").unwrap();
            std::fs::set_permissions(data.join(name), Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        let fixes = harden(&config).unwrap();
        assert_eq!(fixes.len(), 4, "{fixes:?}");
        assert_eq!(mode(&data), 0o700);
        for name in [
            "airlock.db",
            "airlock.db-wal",
            crate::secrets::vault::KEY_FILE,
        ] {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
        // Already tight: nothing to report.
        assert!(harden(&config).unwrap().is_empty());
    }
}
