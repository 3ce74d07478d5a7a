//! `airlock pools …`: the node's pool document, offline, against the store (no server needs
//! to run; a running one applies a change within its next tick, about two seconds). `set`
//! replaces the document with a file's (or stdin's, `-`) JSON array, checked against this
//! configuration's bounds exactly as `PUT /v1/pools` checks it; `show` prints the stored
//! document. Both run the API's commands ([`SetPools`], [`GetPoolConfig`]) as the CLI actor.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::audit::{Actor, AuditLog};
use crate::config::{Config, DEFAULT_NODE};
use crate::pool_config::{GetPoolConfig, PoolConfig, PoolConfigError, PoolConfigView, SetPools};
use crate::store::Store;

/// `airlock pools …`
#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Replace the node's pools with a JSON array of
    /// `{image, user?, size, max_idle_s?, shape?: {cpus?, memory_mb?, pids?}, scratch_mb?}`
    /// (`[]`: no pools). Stays until it is set again or `AIRLOCK_POOLS` changes.
    Set(SetArgs),
    /// Print the node's stored pool document and who wrote it.
    Show,
}

/// Arguments of `airlock pools set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The document's file; `-` reads stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

// === impl PoolsCommand ===

impl PoolsCommand {
    /// Runs the command against the configured store.
    pub fn run(
        self,
        config: &Config,
        stdin: &mut impl Read,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let document = match &self {
            Self::Set(args) if args.file.as_os_str() == "-" => {
                let mut text = String::new();
                stdin.read_to_string(&mut text).context("reading stdin")?;
                Some(text)
            }
            Self::Set(args) => Some(
                std::fs::read_to_string(&args.file)
                    .with_context(|| format!("reading {}", args.file.display()))?,
            ),
            Self::Show => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let view = runtime.block_on(async {
            let store = Store::connect(&config.database).await?;
            let service = PoolConfig::new(
                store.clone(),
                AuditLog::new(store.clone()),
                DEFAULT_NODE.to_owned(),
                config.pool_bounds(),
            );
            let actor = Actor::cli();
            let view = match document {
                Some(document) => service.run(&actor, SetPools { document }).await,
                None => service.run(&actor, GetPoolConfig).await,
            };
            store.close().await;
            view.map_err(refusal)
        })?;
        print(&view, out)?;
        Ok(())
    }
}

/// A refused document, every problem on its own line.
fn refusal(error: PoolConfigError) -> anyhow::Error {
    match error {
        PoolConfigError::Invalid(problems) => {
            let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            anyhow::anyhow!("the pool document is invalid:\n{}", lines.join("\n"))
        }
        other => other.into(),
    }
}

fn print(view: &PoolConfigView, out: &mut impl Write) -> std::io::Result<()> {
    let by = view
        .updated_by
        .map(|u| format!(" by {u}"))
        .unwrap_or_default();
    writeln!(out, "node {}: source {}{by}", view.node, view.source)?;
    for (i, pool) in view.pools.iter().enumerate() {
        let user = pool.user.map(|u| format!(" user {u}")).unwrap_or_default();
        writeln!(
            out,
            "  [{i}] {}{user}: {} members, idle {} s",
            pool.image.as_str(),
            pool.size,
            pool.max_idle.as_secs()
        )?;
    }
    for problem in &view.problems {
        writeln!(out, "  fails the bounds now: {problem}")?;
    }
    writeln!(out, "{}", view.document)
}
