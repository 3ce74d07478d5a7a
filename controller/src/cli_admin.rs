//! `airlock admin …`: account management against the store, offline. `create-user` makes an
//! account (with a password read from stdin when `--password-stdin` is given: the first
//! line, without its newline); `create-token` prints a new API token once.

use std::io::{BufRead, Write};

use clap::{Args, Subcommand};

use crate::accounts::{self, CreateUser};
use crate::config::{parse_duration, Config};
use crate::store::Store;
use crate::user::{Role, Scopes, TokenScope};

/// `airlock admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user (the first admin, typically).
    CreateUser(CreateUserArgs),
    /// Create an API token for a user and print it (shown once).
    CreateToken(CreateTokenArgs),
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
            let result = self.run_on(&store, password, out).await;
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
                writeln!(out, "created {} {} ({})", user.role, user.email, user.id)?;
            }
            Self::CreateToken(args) => {
                let scopes: Scopes = args.scopes.into_iter().collect();
                let token =
                    accounts::create_token(store, &args.email, &args.name, scopes, args.expires_in)
                        .await?;
                writeln!(out, "{token}")?;
            }
        }
        Ok(())
    }
}

fn read_password(stdin: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}
