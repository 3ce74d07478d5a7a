//! `airlock admin backup --out FILE` and `airlock admin restore FILE`, offline.
//!
//! A backup is the database (SQLite: `VACUUM INTO`, a consistent copy even while the server
//! runs; Postgres: `pg_dump --format=custom`) and the secret key sealed with a passphrase from
//! `AIRLOCK_BACKUP_PASSPHRASE` (argon2id, then XChaCha20-Poly1305), in one tar (see
//! [`archive`]). Without the passphrase neither command runs.
//!
//! A restore refuses, each with its own code: a file of a newer format or schema, a wrong
//! passphrase (or a file edited since), a backend other than the configured one, and a target
//! that already holds a database or another key (unless `--force`). It then writes the
//! database and the key file, opens the store (older schemas are migrated up) and checks the
//! key against the restored key check value; the node checks are left to `airlock doctor`.

pub mod archive;
mod postgres;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::{Config, DatabaseConfig};
use crate::secrets::vault::{KeySource, SecretKey, Vault, VaultError, KEY_FILE};
use crate::store::{Backend, Store, StoreError};

use self::archive::{Manifest, MIN_PASSPHRASE};

/// The passphrase that seals the secret key into a backup (read by the two commands only).
pub const ENV_BACKUP_PASSPHRASE: &str = "AIRLOCK_BACKUP_PASSPHRASE";

/// Arguments of `airlock admin backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (mode 0600; replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `airlock admin restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Replace an existing database and key file.
    #[arg(long)]
    pub force: bool,
}

/// Why a backup or restore failed; each has a stable code and an exit status.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No passphrase.
    #[error(
        "backup_passphrase_missing: set {ENV_BACKUP_PASSPHRASE} (at least {MIN_PASSPHRASE} \
         characters); it seals the secret key inside the backup"
    )]
    NoPassphrase,
    /// The passphrase is too short.
    #[error("backup_passphrase_weak: {ENV_BACKUP_PASSPHRASE} must be at least {MIN_PASSPHRASE} characters")]
    WeakPassphrase,
    /// A client tool is not on `PATH`.
    #[error(
        "backup_tool_missing: {tool} is not on PATH; install the Postgres client tools of \
         your server's major version (Debian: postgresql-client), or back up with your \
         provider's snapshots and the secret key file (docs/operator.md, Backup and restore)"
    )]
    ToolMissing {
        /// `pg_dump` or `pg_restore`.
        tool: &'static str,
    },
    /// A client tool failed.
    #[error("backup_tool_failed: {tool}: {message}")]
    Tool {
        /// `pg_dump` or `pg_restore`.
        tool: &'static str,
        /// Its status and stderr.
        message: String,
    },
    /// The passphrase does not open the sealed key (or the file was edited).
    #[error(
        "backup_wrong_passphrase: {ENV_BACKUP_PASSPHRASE} does not open this backup's key \
         (or the file was changed after it was written)"
    )]
    WrongPassphrase,
    /// The file was written by a newer Airlock.
    #[error("backup_format_newer: backup format version {version} is newer than this binary's")]
    FormatNewer {
        /// The file's version.
        version: u32,
    },
    /// The database in the file was migrated by a newer Airlock.
    #[error(
        "backup_schema_newer: the backup's schema is {backup}, this binary knows up to \
         {known}; restore it with a matching or newer Airlock"
    )]
    SchemaNewer {
        /// The backup's schema.
        backup: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// The file's backend is not the configured one.
    #[error(
        "backup_backend_mismatch: the backup holds a {backup} database, the configuration \
         ({}) names {configured}",
        crate::config::ENV_DATABASE_URL
    )]
    BackendMismatch {
        /// The backup's.
        backup: String,
        /// The configured one.
        configured: &'static str,
    },
    /// The target already holds data.
    #[error("restore_target_not_empty: {what} already exists; move it away or pass --force")]
    TargetNotEmpty {
        /// The database or the key file.
        what: String,
    },
    /// `AIRLOCK_SECRET_KEY` is set to another key.
    #[error(
        "restore_key_conflict: {} is set to a key other than the backup's; unset it so the \
         restored {KEY_FILE} is used",
        crate::config::ENV_SECRET_KEY
    )]
    KeyConflict,
    /// The file is not a readable backup.
    #[error("backup_corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing a file failed.
    #[error("backup_io: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("backup_store: {0}")]
    Store(#[from] StoreError),
    /// The key could not be read or does not match the database.
    #[error("backup_key: {0}")]
    Vault(#[from] VaultError),
}

// === impl BackupError ===

impl BackupError {
    /// The `sysexits.h` status the CLI exits with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoPassphrase
            | Self::WeakPassphrase
            | Self::BackendMismatch { .. }
            | Self::KeyConflict => 64,
            Self::WrongPassphrase
            | Self::FormatNewer { .. }
            | Self::SchemaNewer { .. }
            | Self::Corrupt(_) => 65,
            Self::ToolMissing { .. } => 69,
            Self::TargetNotEmpty { .. } => 73,
            Self::Io { .. } => 74,
            Self::Tool { .. } | Self::Store(_) | Self::Vault(_) => 1,
        }
    }

    pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn passphrase(given: Option<&str>) -> Result<&str, BackupError> {
    match given {
        None | Some("") => Err(BackupError::NoPassphrase),
        Some(p) if p.chars().count() < MIN_PASSPHRASE => Err(BackupError::WeakPassphrase),
        Some(p) => Ok(p),
    }
}

fn backend_name(database: &DatabaseConfig) -> &'static str {
    match database {
        DatabaseConfig::Sqlite { .. } => "sqlite",
        DatabaseConfig::Postgres { .. } => "postgres",
    }
}

/// `airlock admin backup`: writes the configured database and the sealed key to `args.out`.
pub async fn backup(
    config: &Config,
    args: &BackupArgs,
    given: Option<&str>,
    out: &mut impl Write,
) -> Result<(), BackupError> {
    let passphrase = passphrase(given)?;
    let (key, source) =
        SecretKey::load_existing(config.secret_key.as_ref(), &config.secret_key_file)?;
    let store = Store::connect(&config.database).await?;
    let result = async {
        Vault::open(&store, &key, &source).await?;
        let schema = store.schema_version().await?;
        let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty());
        let tmp = tempfile::tempdir_in(parent.unwrap_or(Path::new(".")))
            .map_err(BackupError::io(&args.out))?;
        let (name, dump) = match &config.database {
            DatabaseConfig::Sqlite { .. } => {
                let dump = tmp.path().join("database.sqlite");
                store.vacuum_into(&dump).await?;
                ("database.sqlite", dump)
            }
            DatabaseConfig::Postgres { url } => {
                let dump = tmp.path().join("database.pgdump");
                postgres::dump(url.expose(), &dump)?;
                ("database.pgdump", dump)
            }
        };
        let backend = backend_name(&config.database);
        let manifest = Manifest::new(backend, schema, name, archive::sha256_file(&dump)?);
        let sealed = manifest.seal(passphrase, &key.to_bytes())?;
        archive::write(&args.out, &manifest, &dump, &sealed)?;
        let bytes = std::fs::metadata(&args.out).map_or(0, |m| m.len());
        writeln!(
            out,
            "backup written to {} ({backend}, schema {schema}, {bytes} bytes); the secret key \
             inside is sealed with {ENV_BACKUP_PASSPHRASE}",
            args.out.display()
        )
        .map_err(BackupError::io(&args.out))?;
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// `airlock admin restore`: checks the file, then writes the database and the key file and
/// checks that the key opens the restored store.
pub async fn restore(
    config: &Config,
    args: &RestoreArgs,
    given: Option<&str>,
    out: &mut impl Write,
) -> Result<(), BackupError> {
    let passphrase = passphrase(given)?;
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(BackupError::io(data_dir))?;
    let tmp = tempfile::tempdir_in(data_dir).map_err(BackupError::io(data_dir))?;
    let dump = tmp.path().join("database");
    let opened = archive::read(&args.file, &dump)?;
    let manifest = &opened.manifest;
    let configured = backend_name(&config.database);
    if manifest.backend != configured {
        return Err(BackupError::BackendMismatch {
            backup: manifest.backend.clone(),
            configured,
        });
    }
    let backend = match &config.database {
        DatabaseConfig::Sqlite { .. } => Backend::Sqlite,
        DatabaseConfig::Postgres { .. } => Backend::Postgres,
    };
    let known = Store::known_schema(backend);
    if manifest.schema > known {
        return Err(BackupError::SchemaNewer {
            backup: manifest.schema,
            known,
        });
    }
    let key = SecretKey::from_bytes(manifest.open(passphrase, &opened.sealed_key)?);
    let key_path = config.secret_key_file.clone();
    let source = match &config.secret_key {
        Some(env) if SecretKey::parse(env.expose()).as_ref() != Some(&key) => {
            return Err(BackupError::KeyConflict)
        }
        Some(_) => KeySource::Env,
        None => {
            let other = SecretKey::read_file(&key_path).is_ok_and(|current| current != key);
            if other && !args.force {
                return Err(BackupError::TargetNotEmpty {
                    what: key_path.display().to_string(),
                });
            }
            KeySource::File(key_path.clone())
        }
    };
    match &config.database {
        DatabaseConfig::Sqlite { path } => restore_sqlite(path, &dump, args.force)?,
        DatabaseConfig::Postgres { url } => {
            if !args.force && !Store::postgres_is_empty(url.expose()).await? {
                return Err(BackupError::TargetNotEmpty {
                    what: "the Postgres database".to_owned(),
                });
            }
            postgres::restore(url.expose(), &dump)?;
        }
    }
    if matches!(source, KeySource::File(_)) {
        key.write_file(&key_path)?;
    }
    let store = Store::connect(&config.database).await?;
    let checked = Vault::open(&store, &key, &source).await;
    let sizes = store.table_sizes().await;
    store.close().await;
    checked?;
    let rows: i64 = sizes?.iter().map(|t| t.rows).sum();
    writeln!(
        out,
        "restored {} ({}, schema {} taken {}; migrated to {known}); {rows} rows; the secret \
         key opens the restored key check value ({source}).\nNext: run `airlock doctor`, then \
         start the server.",
        args.file.display(),
        manifest.backend,
        manifest.schema,
        manifest.created_at,
    )
    .map_err(BackupError::io(&args.file))?;
    Ok(())
}

/// Moves the restored SQLite file into place (0600), removing a stale WAL and shared-memory
/// file; refuses an existing database without `force`.
fn restore_sqlite(path: &Path, dump: &Path, force: bool) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() && !force {
        return Err(BackupError::TargetNotEmpty {
            what: path.display().to_string(),
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(BackupError::io(dir))?;
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            std::fs::remove_file(&side).map_err(BackupError::io(&side))?;
        }
    }
    std::fs::set_permissions(dump, std::fs::Permissions::from_mode(0o600))
        .map_err(BackupError::io(dump))?;
    if std::fs::rename(dump, path).is_err() {
        // Another file system: copy instead.
        std::fs::copy(dump, path).map_err(BackupError::io(path))?;
    }
    Ok(())
}
