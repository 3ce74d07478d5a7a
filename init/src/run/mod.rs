//! The init process, in order: signal handlers, `PR_SET_CHILD_SUBREAPER`, block on fd 0 for one
//! frame (idle timeout `AIRLOCK_POOL_MAX_IDLE`), detach fd 0 (`/dev/null`), write the seed and
//! CA files, `chdir`, start the workload in its own session, then forward signals and reap
//! until the workload exits, and exit with its status.
//!
//! Every failure before the workload runs is one line on stderr,
//! `airlock-init: {"error":"<code>","message":"..."}`, and an exit status from [`Failure`].

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::exit::REPORT_PREFIX;
use crate::frame::{self, FrameError, Rules};

pub mod enter;
pub mod env;
pub mod exec;
mod read;
mod seed;
mod signals;
mod supervise;

pub use crate::exit::{EXIT_BAD_FRAME, EXIT_CONFIG, EXIT_INTERNAL, EXIT_NO_FRAME};
pub use env::{CA_FILE_VAR, IDLE_VAR, WRITABLE_VAR};

/// The hidden first argument of the workload's first step (see `exec`).
pub const EXEC_FLAG: &str = "--airlock-exec";
/// The program exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Why init stopped before the workload ran.
#[derive(Debug)]
pub enum Failure {
    /// The frame was refused.
    Frame(FrameError),
    /// No frame arrived within the idle timeout.
    IdleTimeout { seconds: u64 },
    /// Stdin ended before a whole frame.
    Eof { got: usize },
    /// Reading stdin failed.
    Read(std::io::Error),
    /// A signal ended the wait for a frame.
    Signalled { signal: i32 },
    /// The workdir cannot be entered.
    Workdir { path: String, error: std::io::Error },
    /// A seed or CA file cannot be written.
    Seed { path: String, error: std::io::Error },
    /// Init's environment is invalid.
    Config { message: String },
    /// Init could not set itself up or start the workload.
    Internal {
        what: &'static str,
        error: std::io::Error,
    },
}

impl Failure {
    /// The stable reason in the stderr line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Frame(error) => error.code(),
            Self::IdleTimeout { .. } => "idle_timeout",
            Self::Eof { .. } => "eof_before_frame",
            Self::Read(_) => "stdin_read",
            Self::Signalled { .. } => "signalled",
            Self::Workdir { .. } => "workdir_missing",
            Self::Seed { .. } => "seed_write",
            Self::Config { .. } => "init_config",
            Self::Internal { .. } => "internal",
        }
    }

    /// The process exit status.
    pub fn exit(&self) -> u8 {
        match self {
            Self::Frame(_) | Self::Workdir { .. } | Self::Seed { .. } => EXIT_BAD_FRAME,
            Self::IdleTimeout { .. } | Self::Eof { .. } | Self::Read(_) => EXIT_NO_FRAME,
            Self::Signalled { signal } => 128u8.saturating_add(u8::try_from(*signal).unwrap_or(0)),
            Self::Config { .. } => EXIT_CONFIG,
            Self::Internal { .. } => EXIT_INTERNAL,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Frame(error) => error.to_string(),
            Self::IdleTimeout { seconds } => format!("no frame within {seconds}s"),
            Self::Eof { got } => format!("stdin closed after {got} bytes, before a whole frame"),
            Self::Read(error) => format!("reading stdin: {error}"),
            Self::Signalled { signal } => format!("signal {signal} before a frame"),
            Self::Workdir { path, error } => format!("workdir {path:?}: {error}"),
            Self::Seed { path, error } => format!("files: {path:?}: {error}"),
            Self::Config { message } => message.clone(),
            Self::Internal { what, error } => format!("{what}: {error}"),
        }
    }
}

/// Writes `airlock-init: {"error":code,"message":message}` on stderr.
pub fn report(code: &str, message: &str) {
    let line = serde_json::json!({ "error": code, "message": message });
    let _ = writeln!(std::io::stderr().lock(), "{REPORT_PREFIX}{line}");
}

/// Init's settings, from its own environment (set by the controller, never by the frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long to wait for a frame; `None` waits forever.
    pub idle: Option<Duration>,
    /// Roots seed files may be written under.
    pub writable_roots: Vec<String>,
    /// Where `ca_pem` is written.
    pub ca_file: String,
}

impl Settings {
    /// Reads [`IDLE_VAR`], [`WRITABLE_VAR`] and [`CA_FILE_VAR`] from `get`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, Failure> {
        let idle = match get(IDLE_VAR) {
            None => None,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(seconds) => Some(Duration::from_secs(seconds)),
                Err(_) => {
                    return Err(Failure::Config {
                        message: format!("{IDLE_VAR}={raw:?} is not a number of seconds"),
                    })
                }
            },
        };
        let writable_roots: Vec<String> = get(WRITABLE_VAR)
            .unwrap_or_default()
            .split(':')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = writable_roots
            .iter()
            .find(|r| !frame::is_normal_absolute(r))
        {
            return Err(Failure::Config {
                message: format!("{WRITABLE_VAR}: {bad:?} is not a normal absolute path"),
            });
        }
        let ca_file = get(CA_FILE_VAR).unwrap_or_else(|| crate::trust::CA_FILE.to_owned());
        if !frame::is_normal_absolute(&ca_file) || ca_file == "/" {
            return Err(Failure::Config {
                message: format!("{CA_FILE_VAR}: {ca_file:?} is not a normal absolute path"),
            });
        }
        Ok(Self {
            idle,
            writable_roots,
            ca_file,
        })
    }
}

/// Runs init; the exit code is the workload's, or a [`Failure`]'s.
pub fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            report(failure.code(), &failure.message());
            ExitCode::from(failure.exit())
        }
    }
}

fn run() -> Result<u8, Failure> {
    let signals = signals::Signals::install().map_err(|error| Failure::Internal {
        what: "installing signal handlers",
        error,
    })?;
    // Orphans below us are ours to reap even when this is not PID 1.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| {
        Failure::Internal {
            what: "PR_SET_CHILD_SUBREAPER",
            error: e.into(),
        }
    })?;
    let settings = Settings::from_env(|name| std::env::var(name).ok())?;
    let bytes = read::frame(&signals, settings.idle);
    // Whatever happened, nothing after the frame reaches anyone: fd 0 becomes /dev/null.
    detach_stdin()?;
    let body = bytes?;
    let rules = Rules::airlock(settings.writable_roots.clone());
    let frame = frame::parse_body(&body, &rules).map_err(Failure::Frame)?;
    if let Some(pem) = &frame.ca_pem {
        seed::write_trust(&settings.ca_file, pem)?;
    }
    for file in &frame.files {
        let root = seed::root_for(&file.path, &settings.writable_roots).unwrap_or("/");
        seed::write(&seed::Entry {
            root,
            path: &file.path,
            content: file.content.as_bytes(),
            mode: file.mode,
        })?;
    }
    let env = env::child_env(std::env::vars_os(), &frame.env, &frame.airlock_env, &rules);
    std::env::set_current_dir(&frame.workdir).map_err(|error| Failure::Workdir {
        path: frame.workdir.clone(),
        error,
    })?;
    let child = supervise::spawn(&frame.argv, env)?;
    Ok(supervise::run(child, &signals))
}

fn detach_stdin() -> Result<(), Failure> {
    let null = std::fs::File::open("/dev/null").map_err(|error| Failure::Internal {
        what: "opening /dev/null",
        error,
    })?;
    rustix::stdio::dup2_stdin(&null).map_err(|e| Failure::Internal {
        what: "dup2(/dev/null, 0)",
        error: e.into(),
    })
}

#[cfg(test)]
mod tests;
