//! Why a sandbox ended: the typed [`EndReason`], its stored [`EndKind`], and how a
//! container's exit status reads as a reason.

use std::fmt;

use super::string_enum::string_enum;
use super::SandboxState;

/// The exit code of a process ended by SIGKILL (128 + 9): without a stop request, the
/// sandbox was `killed` from outside.
pub const SIGKILL_EXIT: i64 = 137;

/// Why a sandbox ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The main process exited by itself with this code.
    Exited {
        /// The exit code Docker reported.
        code: i64,
    },
    /// A stop request ended it.
    Stopped,
    /// The absolute `timeout_s` passed.
    Timeout,
    /// No output and no exec for `idle_timeout_s`.
    Idle,
    /// Docker reported `OOMKilled`.
    Oom,
    /// It was killed without a stop request (SIGKILL from outside).
    Killed,
    /// The container vanished.
    Lost,
    /// The controller could not create, start or watch it.
    Error {
        /// A short, operator-facing description, when there is one.
        message: Option<String>,
    },
}

string_enum! {
    /// The kind of an [`EndReason`], without its data: what the `end_reason` column stores.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum EndKind as "end reason" {
        /// See [`EndReason::Exited`].
        Exited = "exited",
        /// See [`EndReason::Stopped`].
        Stopped = "stopped",
        /// See [`EndReason::Timeout`].
        Timeout = "timeout",
        /// See [`EndReason::Idle`].
        Idle = "idle",
        /// See [`EndReason::Oom`].
        Oom = "oom",
        /// See [`EndReason::Killed`].
        Killed = "killed",
        /// See [`EndReason::Lost`].
        Lost = "lost",
        /// See [`EndReason::Error`].
        Error = "error",
    }
}

/// A stored end reason whose columns do not fit together (e.g. `exited` without a code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("end reason `{kind}` does not fit exit code {exit_code:?}")]
pub struct EndReasonError {
    /// The stored kind.
    pub kind: EndKind,
    /// The stored exit code.
    pub exit_code: Option<i64>,
}

/// The prefix of the message of a sandbox whose `airlock-init` refused to start it.
pub const INIT_CONFIG: &str = "init_config";

/// A sandbox whose `airlock-init` refused its frame or could not apply it (`report` is init's
/// JSON line): it ends `failed`, reason `error`, with an `init_config: ...` message.
pub fn init_config(report: &str) -> EndReason {
    EndReason::Error {
        message: Some(format!("{INIT_CONFIG}: {report}")),
    }
}

// === impl EndReason ===

impl EndReason {
    /// The kind, as stored in the `end_reason` column.
    pub fn kind(&self) -> EndKind {
        match self {
            Self::Exited { .. } => EndKind::Exited,
            Self::Stopped => EndKind::Stopped,
            Self::Timeout => EndKind::Timeout,
            Self::Idle => EndKind::Idle,
            Self::Oom => EndKind::Oom,
            Self::Killed => EndKind::Killed,
            Self::Lost => EndKind::Lost,
            Self::Error { .. } => EndKind::Error,
        }
    }

    /// The exit code, for a process that exited by itself.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            Self::Exited { code } => Some(*code),
            _ => None,
        }
    }

    /// The error message, for [`EndReason::Error`].
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Error { message } => message.as_deref(),
            _ => None,
        }
    }

    /// The terminal state this reason leads to.
    pub fn final_state(&self) -> SandboxState {
        match self {
            Self::Lost => SandboxState::Lost,
            Self::Error { .. } => SandboxState::Failed,
            _ => SandboxState::Exited,
        }
    }

    /// Rebuilds a reason from its stored columns.
    pub fn from_parts(
        kind: EndKind,
        exit_code: Option<i64>,
        message: Option<String>,
    ) -> Result<EndReason, EndReasonError> {
        let reason = match (kind, exit_code) {
            (EndKind::Exited, Some(code)) => Self::Exited { code },
            (EndKind::Stopped, None) => Self::Stopped,
            (EndKind::Timeout, None) => Self::Timeout,
            (EndKind::Idle, None) => Self::Idle,
            (EndKind::Oom, None) => Self::Oom,
            (EndKind::Killed, None) => Self::Killed,
            (EndKind::Lost, None) => Self::Lost,
            (EndKind::Error, None) => Self::Error { message },
            (kind, exit_code) => return Err(EndReasonError { kind, exit_code }),
        };
        Ok(reason)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exited({code})"),
            Self::Error {
                message: Some(message),
            } => write!(f, "error: {message}"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

/// How a container that is no longer running ended, from its exit code and OOM flag, when
/// nobody asked it to stop.
pub fn from_exit(exit_code: Option<i64>, oom_killed: bool) -> EndReason {
    match exit_code {
        _ if oom_killed => EndReason::Oom,
        // SIGKILL without a stop request: see `EndReason::Killed`.
        Some(SIGKILL_EXIT) => EndReason::Killed,
        Some(code) => EndReason::Exited { code },
        None => EndReason::Lost,
    }
}
