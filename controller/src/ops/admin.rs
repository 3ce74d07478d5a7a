//! `airlock admin …`: account management against the store, offline. `create-user` makes an
//! account (with a password read from stdin when `--password-stdin` is given: the first
//! line, without its newline); `create-token` prints a new API token once; `rotate-key`
//! re-encrypts every secret under a new key in one transaction. They run the same commands
//! as the API (`accounts::CreateUser`, `accounts::CreateToken`, `secrets::RotateKey`), as the
//! CLI actor, whose audit rows name the credential `cli`. `audit export` streams a time range
//! of the trail to stdout as JSON lines.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::accounts::user::{Role, Scopes, TokenScope};
use crate::accounts::{Accounts, CreateToken, CreateUser, TokenOwner};
use crate::audit::{Actor, AuditLog, ListAudit, PruneAudit};
use crate::config::{parse_duration, Config};
use crate::secrets::vault::{KeySource, SecretKey};
use crate::secrets::{RotateKey, Secrets};
use crate::store::{AuditRecord, Store};

/// `airlock admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user (the first admin, typically).
    CreateUser(CreateUserArgs),
    /// Create an API token for a user and print it (shown once).
    CreateToken(CreateTokenArgs),
    /// Re-encrypt every secret with a new key, in one transaction. The current key is
    /// `AIRLOCK_SECRET_KEY` or `<data_dir>/secret.key`; the file is replaced by the new key
    /// (when the key comes from the environment, set it to the new key before restarting).
    RotateKey(RotateKeyArgs),
    /// Write the database and the secret key (sealed with `AIRLOCK_BACKUP_PASSPHRASE`) to
    /// one file; safe while the server runs.
    Backup(super::backup::BackupArgs),
    /// Restore a backup written by `airlock admin backup` into the configured store and data
    /// dir (the server must be stopped), then check the key; run `airlock doctor` after.
    Restore(super::backup::RestoreArgs),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `airlock admin audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Delete the rows written before `--before` (RFC 3339), writing a row of its own.
    Prune(AuditPruneArgs),
    /// Write the rows of a time range to stdout, oldest first, one JSON object a line (for a
    /// SIEM). Reading the trail files no row.
    Export(AuditExportArgs),
}

/// Arguments of `airlock admin audit export`.
#[derive(Debug, Args)]
pub struct AuditExportArgs {
    /// Rows written at or after this instant (RFC 3339), e.g. `2026-01-01T00:00:00Z`.
    #[arg(long, value_parser = parse_rfc3339)]
    pub since: time::OffsetDateTime,
    /// Rows written strictly before this instant (RFC 3339); all since `--since` when absent.
    #[arg(long, value_parser = parse_rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
}

/// How `airlock admin audit export` writes rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object a line, the fields of `GET /v1/audit`'s items.
    Jsonl,
}

/// Arguments of `airlock admin audit prune`.
#[derive(Debug, Args)]
pub struct AuditPruneArgs {
    /// Rows written strictly before this instant go, e.g. `2026-01-01T00:00:00Z`.
    #[arg(long, value_parser = parse_rfc3339)]
    pub before: time::OffsetDateTime,
}

fn parse_rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("an RFC 3339 time like 2026-01-01T00:00:00Z ({e})"))
}

/// Arguments of `airlock admin rotate-key`.
#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// A file holding the new key: 32 bytes as 64 hex digits or base64.
    #[arg(long)]
    pub new_key_file: PathBuf,
}

/// Arguments of `airlock admin create-user`.
#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// The account's email.
    #[arg(long)]
    pub email: String,
    /// `admin`, `member` or `viewer`.
    #[arg(long, default_value = "member")]
    pub role: Role,
    /// Display name (default: the email).
    #[arg(long, default_value = "")]
    pub display_name: String,
    /// Read the password from the first line of stdin (otherwise the user has none and can
    /// only use API tokens).
    #[arg(long)]
    pub password_stdin: bool,
}

/// Arguments of `airlock admin create-token`.
#[derive(Debug, Args)]
pub struct CreateTokenArgs {
    /// The owner's email.
    #[arg(long)]
    pub email: String,
    /// A name to recognise the token by.
    #[arg(long)]
    pub name: String,
    /// `sandboxes:read`, `sandboxes:write` or `admin` (repeatable).
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<TokenScope>,
    /// Lifetime such as `30d` or `12h`; never expires when absent.
    #[arg(long, value_parser = parse_duration)]
    pub expires_in: Option<std::time::Duration>,
}

// === impl AdminCommand ===

impl AdminCommand {
    /// Runs the command against the configured store, reading stdin for a password if asked.
    pub fn run(
        self,
        config: &Config,
        stdin: &mut impl BufRead,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let password = match &self {
            Self::CreateUser(args) if args.password_stdin => Some(read_password(stdin)?),
            _ => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let passphrase = std::env::var(super::backup::ENV_BACKUP_PASSPHRASE).ok();
        let passphrase = passphrase.as_deref();
        runtime.block_on(async {
            match &self {
                Self::Backup(args) => {
                    return Ok(super::backup::backup(config, args, passphrase, out).await?)
                }
                Self::Restore(args) => {
                    return Ok(super::backup::restore(config, args, passphrase, out).await?)
                }
                _ => {}
            }
            let store = Store::connect(&config.database).await?;
            let result = match self {
                Self::RotateKey(args) => rotate_key(config, &store, &args, out).await,
                other => other.run_on(&store, config, password, out).await,
            };
            store.close().await;
            result
        })
    }

    async fn run_on(
        self,
        store: &Store,
        config: &Config,
        password: Option<String>,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let audit = AuditLog::new(store.clone());
        let accounts = Accounts::new(store.clone(), audit, config.quota);
        let actor = Actor::cli();
        match self {
            Self::CreateUser(args) => {
                let create = CreateUser {
                    email: args.email,
                    display_name: args.display_name,
                    role: args.role,
                    password,
                };
                let user = accounts.run(&actor, create).await?;
                writeln!(out, "created {} {} ({})", user.role, user.email, user.id)?;
            }
            Self::CreateToken(args) => {
                let create = CreateToken {
                    owner: TokenOwner::Email(args.email),
                    name: args.name,
                    scopes: args.scopes.into_iter().collect::<Scopes>(),
                    expires_in: args.expires_in,
                };
                let issued = accounts.run(&actor, create).await?;
                writeln!(out, "{}", issued.text)?;
            }
            Self::Audit(AuditCommand::Prune(args)) => {
                let prune = PruneAudit {
                    before: args.before,
                };
                let deleted = AuditLog::new(store.clone()).run(&actor, prune).await?;
                writeln!(
                    out,
                    "deleted {deleted} audit row(s) written before {}; the prune is audited",
                    args.before
                )?;
            }
            Self::Audit(AuditCommand::Export(args)) => {
                export_audit(&AuditLog::new(store.clone()), &actor, &args, out).await?;
            }
            Self::RotateKey(_) | Self::Backup(_) | Self::Restore(_) => {
                anyhow::bail!("this command runs through AdminCommand::run")
            }
        }
        Ok(())
    }
}

/// `airlock admin rotate-key`: checks the current key against the stored check value,
/// re-seals every secret and the check value under the new key in one transaction, then
/// replaces the key file (or says to change `AIRLOCK_SECRET_KEY`).
async fn rotate_key(
    config: &Config,
    store: &Store,
    args: &RotateKeyArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // No server may seal with the old key meanwhile.
    let _alone = crate::ops::store_lock::alone(&config.data_dir)?;
    let (old, source) =
        SecretKey::load_existing(config.secret_key.as_ref(), &config.secret_key_file)?;
    let new = SecretKey::read_file(&args.new_key_file)?;
    let secrets = Secrets::new(store.clone(), AuditLog::new(store.clone()), None);
    let rotate = RotateKey {
        old,
        source: source.clone(),
        new: new.clone(),
    };
    let resealed = secrets.run(&Actor::cli(), rotate).await?;
    match &source {
        KeySource::File(path) => {
            new.write_file(path)?;
            writeln!(
                out,
                "re-encrypted {resealed} secret(s); {} now holds the new key",
                path.display()
            )?;
        }
        KeySource::Env => writeln!(
            out,
            "re-encrypted {resealed} secret(s); set {} to the new key (from {}) before the \
             next start",
            crate::config::ENV_SECRET_KEY,
            args.new_key_file.display()
        )?,
    }
    Ok(())
}

/// `airlock admin audit export`: pages the range oldest first and writes each row as it comes.
async fn export_audit(
    log: &AuditLog,
    actor: &Actor,
    args: &AuditExportArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ExportFormat::Jsonl = args.format;
    let mut list = ListAudit {
        since: Some(args.since),
        until: args.until,
        cursor: None,
        oldest_first: true,
        limit: crate::audit::MAX_PAGE,
    };
    loop {
        let page = log.run(actor, list).await?;
        for record in &page.items {
            serde_json::to_writer(&mut *out, &export_line(record))?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        match page.next {
            Some(next) => list.cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// One exported row: the fields `GET /v1/audit` returns.
fn export_line(record: &AuditRecord) -> serde_json::Value {
    let r = &record.record;
    let at = record
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({
        "id": record.id,
        "at": at,
        "user_id": r.user.map(|u| u.to_string()),
        "credential": r.token,
        "action": r.action,
        "object": r.object,
        "source_ip": r.source_ip,
        "status": r.status,
        "detail": r.detail,
        "count": r.count.max(1),
    })
}

fn read_password(stdin: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}
