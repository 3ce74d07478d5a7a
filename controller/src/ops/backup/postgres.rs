//! Postgres dumps through the client tools on `PATH`: `pg_dump --format=custom` and
//! `pg_restore`. The connection URL reaches them as their `--dbname` (libpq reads the same
//! URL, `sslmode` and `sslrootcert` included).

use std::path::Path;
use std::process::Command;

use super::BackupError;

/// Runs `pg_dump` for `url` into `out`.
pub(super) fn dump(url: &str, out: &Path) -> Result<(), BackupError> {
    let mut command = Command::new("pg_dump");
    command
        .arg("--format=custom")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--file")
        .arg(out)
        .arg("--dbname")
        .arg(url);
    run("pg_dump", &mut command)
}

/// Runs `pg_restore` of `dump` into `url`: every object is dropped first (`--clean
/// --if-exists`), in one transaction that stops at the first error.
pub(super) fn restore(url: &str, dump: &Path) -> Result<(), BackupError> {
    let mut command = Command::new("pg_restore");
    command
        .arg("--clean")
        .arg("--if-exists")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg("--dbname")
        .arg(url)
        .arg(dump);
    run("pg_restore", &mut command)
}

fn run(tool: &'static str, command: &mut Command) -> Result<(), BackupError> {
    let output = command.output().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => BackupError::ToolMissing { tool },
        _ => BackupError::Tool {
            tool,
            message: error.to_string(),
        },
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(BackupError::Tool {
        tool,
        message: format!("{}: {}", output.status, stderr.trim()),
    })
}
