//! Certificates for Airlock: one private CA, the DinD server certificate and the controller's
//! client certificate, all ECDSA P-256, made with rcgen.
//!
//! [`init`] is idempotent. It keeps every valid file, re-issues only the leaves that are
//! expired, expire within [`RENEW_WITHIN_DAYS`], lack a requested SAN, or no longer match the
//! CA or their key, and reports what it did. Nothing is half-written: every file is written to
//! a temporary sibling and renamed into place, and key files are created with mode 0600.
//!
//! Layout (the names `DOCKER_CERT_PATH` and `dockerd --tlscacert/--tlscert/--tlskey` expect):
//! ```text
//! DIR/ca/{cert.pem,key.pem}
//! DIR/server/{ca.pem,cert.pem,key.pem}
//! DIR/client/{ca.pem,cert.pem,key.pem}
//! ```

mod fsio;
mod inspect;
mod issue;
pub mod mitm;
mod san;

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use crate::inspect::{inspect_cert, CertInfo};
pub use crate::san::{San, SanError};

/// Leaves that expire within this many days are re-issued by [`init`].
pub const RENEW_WITHIN_DAYS: i64 = 30;
/// Default leaf lifetime in days.
pub const DEFAULT_LEAF_DAYS: u32 = 825;
/// The CA's lifetime in days; a leaf never outlives its CA.
pub const CA_DAYS: u32 = 3650;

/// File and folder names of the layout written by [`init`].
pub mod layout {
    /// Folder holding the CA certificate and key.
    pub const CA_DIR: &str = "ca";
    /// Folder holding the DinD server's files.
    pub const SERVER_DIR: &str = "server";
    /// Folder holding the controller's client files.
    pub const CLIENT_DIR: &str = "client";
    /// The controller API's own server certificate (issued with `--api-san`).
    pub const API_DIR: &str = "api";
    /// A certificate.
    pub const CERT: &str = "cert.pem";
    /// A private key (mode 0600).
    pub const KEY: &str = "key.pem";
    /// A copy of the CA certificate beside a leaf.
    pub const CA: &str = "ca.pem";
}

/// What [`init`] should produce.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The output folder; created if missing.
    pub out: PathBuf,
    /// Extra SANs for the server certificate, beside `localhost`, `127.0.0.1` and `::1`.
    pub sans: Vec<San>,
    /// Lifetime of newly issued leaves, in days (1..=[`CA_DAYS`]).
    pub days: u32,
    /// SANs of the API's own server certificate (`api/`, beside the loopback names); none:
    /// no API certificate is issued.
    pub api_sans: Vec<San>,
}

/// One thing [`init`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The file, relative to the output folder.
    pub path: PathBuf,
    /// What happened to it.
    pub kind: ActionKind,
}

/// The kinds of [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// The file did not exist and was written.
    Created,
    /// The file was valid and left alone.
    Kept,
    /// The file was replaced, for the stated reason.
    Reissued(String),
    /// The file's mode was tightened to 0600.
    PermissionsFixed,
}

/// The outcome of [`init`]: one [`Action`] per file, in layout order.
#[derive(Debug, Clone, Default)]
pub struct InitReport {
    /// Every file touched or checked.
    pub actions: Vec<Action>,
}

/// Why [`init`] failed. Nothing was half-written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// The options are unusable.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A file system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create directory", "write", "read", ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An existing file could not be parsed; it is left untouched.
    #[error("{} is corrupt or not a PEM {expected}: {detail}; move it away to regenerate", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the file should have held.
        expected: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// rcgen refused to build a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

// === impl InitOptions ===

impl InitOptions {
    /// Options for `out` with no extra SANs and the default lifetime.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            sans: Vec::new(),
            days: DEFAULT_LEAF_DAYS,
            api_sans: Vec::new(),
        }
    }

    /// Adds a server SAN.
    pub fn san(mut self, san: San) -> Self {
        self.sans.push(san);
        self
    }

    fn validate(&self) -> Result<(), CertsError> {
        if self.days == 0 || self.days > CA_DAYS {
            return Err(CertsError::InvalidOption(format!(
                "--days must be between 1 and {CA_DAYS}, got {}",
                self.days
            )));
        }
        if self.out.as_os_str().is_empty() {
            return Err(CertsError::InvalidOption("--out must not be empty".into()));
        }
        Ok(())
    }
}

// === impl InitReport ===

impl InitReport {
    /// True when at least one file was written or changed.
    pub fn changed(&self) -> bool {
        self.actions.iter().any(|a| a.kind != ActionKind::Kept)
    }

    fn push(&mut self, path: impl AsRef<Path>, kind: ActionKind) {
        self.actions.push(Action {
            path: path.as_ref().to_path_buf(),
            kind,
        });
    }
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for action in &self.actions {
            let path = action.path.display();
            match &action.kind {
                ActionKind::Created => writeln!(f, "created   {path}")?,
                ActionKind::Kept => writeln!(f, "kept      {path}")?,
                ActionKind::Reissued(why) => writeln!(f, "reissued  {path} ({why})")?,
                ActionKind::PermissionsFixed => writeln!(f, "chmod 600 {path}")?,
            }
        }
        Ok(())
    }
}

/// Creates or refreshes the CA, server and client certificates under `opts.out`.
///
/// Idempotent: a second run with the same options keeps every file. See the module docs for
/// what is re-issued and when.
pub fn init(opts: &InitOptions) -> Result<InitReport, CertsError> {
    init_at(opts, OffsetDateTime::now_utc())
}

/// [`init`] with an explicit clock, so tests can move time forward.
pub fn init_at(opts: &InitOptions, now: OffsetDateTime) -> Result<InitReport, CertsError> {
    opts.validate()?;
    issue::run(opts, now)
}
