//! `airlock admin …`: account management against the store, offline. `create-user` makes an
//! account (with a password read from stdin when `--password-stdin` is given: the first
//! line, without its newline); `create-token` prints a new API token once; `rotate-key`
//! re-encrypts every secret under a new key in one transaction. Each is audited (credential
//! `cli`).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::accounts::user::{Role, Scopes, TokenScope};
use crate::accounts::{self, CreateUser};
use crate::config::{parse_duration, Config};
use crate::secrets::vault::{KeySource, SecretKey, Vault, VaultError};
use crate::store::{NewAuditRecord, Store, StoreError};

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
        runtime.block_on(async {
            let store = Store::connect(&config.database).await?;
            let result = match self {
                Self::RotateKey(args) => rotate_key(config, &store, &args, out).await,
                other => other.run_on(&store, password, out).await,
            };
            store.close().await;
            result
        })
    }

    async fn run_on(
        self,
        store: &Store,
        password: Option<String>,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        match self {
            Self::CreateUser(args) => {
                let create = CreateUser {
                    email: args.email,
                    display_name: args.display_name,
                    role: args.role,
                    password,
                };
                let user = accounts::create_user(store, create).await?;
                audit(store, "admin.create-user", &user.email, None).await?;
                writeln!(out, "created {} {} ({})", user.role, user.email, user.id)?;
            }
            Self::CreateToken(args) => {
                audit(store, "admin.create-token", &args.email, Some(&args.name)).await?;
                let scopes: Scopes = args.scopes.into_iter().collect();
                let token =
                    accounts::create_token(store, &args.email, &args.name, scopes, args.expires_in)
                        .await?;
                writeln!(out, "{token}")?;
            }
            Self::RotateKey(_) => anyhow::bail!("rotate-key runs through AdminCommand::run"),
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
    let (old_key, source) = SecretKey::load_existing(config.secret_key.as_ref(), &config.data_dir)?;
    let new_key = SecretKey::read_file(&args.new_key_file)?;
    anyhow::ensure!(old_key != new_key, "the new key is the current key");
    let (old, new) = (Vault::new(&old_key), Vault::new(&new_key));
    let resealed = store
        .rotate_secrets(
            |check| old.matches(check),
            |secret| {
                let value = old.open_secret(secret.owner, &secret.name, &secret.sealed)?;
                Ok::<_, VaultError>(new.seal(secret.owner, &secret.name, &value))
            },
            new.check_value(),
        )
        .await
        .map_err(|error| match error {
            StoreError::KeyMismatch => anyhow::Error::from(VaultError::KeyMismatch {
                source_name: source.to_string(),
            }),
            other => other.into(),
        })??;
    audit(
        store,
        "admin.rotate-key",
        "secrets",
        Some(&format!("{resealed} re-encrypted")),
    )
    .await?;
    match &source {
        KeySource::File(path) => {
            new_key.write_file(path)?;
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

/// Appends an audit record for an offline admin action.
async fn audit(
    store: &Store,
    action: &str,
    object: &str,
    detail: Option<&str>,
) -> anyhow::Result<()> {
    let record = NewAuditRecord {
        token: Some("cli".to_owned()),
        action: action.to_owned(),
        object: Some(object.to_owned()),
        detail: detail.map(str::to_owned),
        ..NewAuditRecord::default()
    };
    store.append_audit(&record).await?;
    Ok(())
}

fn read_password(stdin: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}
