//! `airlock images …` subcommands: argument types and their runners.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::load::{self, Node};
use super::progress::{figures, TextProgress};
use crate::config::Config;
use crate::config::DEFAULT_NODE;
use crate::docker::DockerClient;
use crate::store::Store;

/// `airlock images …`
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Verify `docker save` / OCI-layout archives (and a SHA256SUMS beside or inside them),
    /// then import them into every node over mTLS and record their digests.
    Load(LoadArgs),
    /// Save images from a daemon (DOCKER_HOST or the local socket) into one tar with a
    /// SHA256SUMS member, for transfer to an air-gapped host.
    Bundle(BundleArgs),
    /// Verify archives without loading them (no daemon needed).
    Verify(VerifyArgs),
    /// List the images recorded as loaded.
    List,
}

/// Arguments of `airlock images load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Archive files, or folders holding `*.tar`, `*.tar.gz`, `*.tgz`.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

/// Arguments of `airlock images bundle`.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Where to write the bundle.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Images to save, as the source daemon names them.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Arguments of `airlock images verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archive files or folders.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

// === impl ImagesCommand ===

impl ImagesCommand {
    /// Runs the subcommand on a fresh runtime; reports go to `out`.
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async move {
            match self {
                ImagesCommand::Load(args) => load_cmd(args, out).await,
                ImagesCommand::Bundle(args) => bundle_cmd(args, out).await,
                ImagesCommand::Verify(args) => verify_cmd(args, out).await,
                ImagesCommand::List => list_cmd(out).await,
            }
        })
    }
}

async fn verify_all(
    paths: &[PathBuf],
    out: &mut impl Write,
) -> anyhow::Result<Vec<super::VerifiedArchive>> {
    let mut verified = Vec::new();
    for path in paths {
        for file in load::collect(path)? {
            let archive = load::verify_async(file).await?;
            writeln!(
                out,
                "verified {} ({:.1} MB, sha256 {}): {}",
                archive.path.display(),
                archive.bytes as f64 / 1e6,
                archive.sha256,
                archive
                    .images
                    .iter()
                    .map(|i| format!("{} {}", i.tags.join(","), i.id))
                    .collect::<Vec<_>>()
                    .join("; ")
            )?;
            verified.push(archive);
        }
    }
    Ok(verified)
}

async fn verify_cmd(args: VerifyArgs, out: &mut impl Write) -> anyhow::Result<()> {
    verify_all(&args.paths, out).await.map(drop)
}

async fn load_cmd(args: LoadArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    // Every archive is verified before the first byte goes to any node.
    let archives = verify_all(&args.paths, out).await?;
    let store = Store::connect(&config.database)
        .await
        .context("opening the store")?;
    let client = DockerClient::connect(&config.docker)
        .await
        .context("connecting to the node")?;
    let nodes = [Node {
        name: DEFAULT_NODE.to_owned(),
        client,
    }];
    let tty = std::io::stdout().is_terminal();
    let mut progress = TextProgress::new(std::io::stdout(), tty);
    for archive in &archives {
        let records = load::load_into_nodes(archive, &nodes, Some(&store), &mut progress).await?;
        for record in records {
            writeln!(
                out,
                "recorded {} {} on node {}",
                record.reference, record.image_id, record.node
            )?;
        }
    }
    store.close().await;
    Ok(())
}

async fn bundle_cmd(args: BundleArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = DockerClient::from_docker_env()?
        .negotiated()
        .await
        .context("connecting to the source daemon")?;
    let started = std::time::Instant::now();
    let archive = super::bundle::bundle(&client, &args.images, &args.out).await?;
    let transfer = load::Transfer {
        label: archive.label(),
        node: args.out.display().to_string(),
        sent: archive.bytes,
        total: archive.bytes,
        elapsed: started.elapsed(),
    };
    writeln!(
        out,
        "wrote {} ({}); sha256 {}",
        args.out.display(),
        figures(&transfer),
        archive.sha256
    )?;
    Ok(())
}

async fn list_cmd(out: &mut impl Write) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let store = Store::connect(&config.database).await?;
    for record in store.list_images().await? {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            record.node, record.reference, record.image_id, record.loaded_at, record.source
        )?;
    }
    store.close().await;
    Ok(())
}
