//! The `airlock` command line: argument types and the subcommands that need no server.

use std::io::Write;
use std::path::PathBuf;

use airlock_certs::{InitOptions, San, DEFAULT_LEAF_DAYS};
use clap::{Args, Parser, Subcommand};

/// Airlock: a self-hosted sandbox controller for AI agents.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: the API, over the store and the DinD node (configured by
    /// `AIRLOCK_*` environment variables).
    Serve,
    /// Manage the CA, the DinD server certificate and the controller's client certificate.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Manage accounts offline, directly in the store (`AIRLOCK_DATABASE_URL` /
    /// `AIRLOCK_DATA_DIR`); no server needs to run.
    #[command(subcommand)]
    Admin(crate::ops::admin::AdminCommand),
    /// Set or show the node's warm pools, offline in the store (a running server applies a
    /// change within seconds).
    #[command(subcommand)]
    Pools(crate::ops::pools::PoolsCommand),
    /// Verify, load and bundle image archives (no registry needed).
    #[command(subcommand)]
    Images(crate::images::command::ImagesCommand),
    /// Check the deployment (DinD, TLS, storage, INPUT rules, proxy, store, images, disk,
    /// certificates) and print a pass/fail table; exit 1 when a check fails.
    Doctor(crate::ops::doctor::DoctorArgs),
    /// Container health check: GET /healthz (or --path) on the API; exit 1 unless 200.
    Health(crate::ops::health::HealthArgs),
}

/// `airlock certs …`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create or refresh the certificates under DIR. Idempotent: valid files are kept, and
    /// only leaves that are expired, expire within 30 days or lack a requested SAN are
    /// re-issued.
    Init(CertsInit),
}

/// Arguments of `airlock certs init`.
#[derive(Debug, Args)]
pub struct CertsInit {
    /// Output folder; gets ca/, server/ and client/ (and api/ with `--api-san`).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A DNS name or IP the controller dials the DinD by (repeatable). localhost, 127.0.0.1
    /// and ::1 are always included.
    #[arg(long = "san", value_name = "NAME|IP")]
    pub sans: Vec<San>,
    /// A DNS name or IP clients reach the API by (repeatable): issues api/cert.pem and
    /// api/key.pem for `AIRLOCK_TLS_CERT`/`AIRLOCK_TLS_KEY`, signed by the same CA (clients
    /// trust ca/cert.pem). localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "api-san", value_name = "NAME|IP")]
    pub api_sans: Vec<San>,
    /// Lifetime of newly issued leaf certificates, in days.
    #[arg(long, default_value_t = DEFAULT_LEAF_DAYS, value_name = "N")]
    pub days: u32,
}

// === impl CertsInit ===

impl CertsInit {
    /// Runs the command and writes the report to `out`.
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let dir = self.out.display().to_string();
        let opts = InitOptions {
            out: self.out,
            sans: self.sans,
            days: self.days,
            api_sans: self.api_sans,
        };
        let report = airlock_certs::init(&opts)?;
        write!(out, "{report}")?;
        let verdict = if report.changed() {
            "updated"
        } else {
            "up to date"
        };
        writeln!(out, "certificates in {dir} are {verdict}")?;
        Ok(())
    }
}
