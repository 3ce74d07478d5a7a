//! Why a sandbox ended: the typed [`EndReason`], its stored [`EndKind`], and how a
//! container's exit status reads as a reason.

use std::fmt;

use airlock_init::exit::{
    EXIT_BAD_FRAME, EXIT_CONFIG, EXIT_INTERNAL, EXIT_NO_FRAME, REPORT_PREFIX,
};

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

/// `airlock-init`'s own exits before the workload runs, each with the prefix of the message
/// a sandbox that ends so gets. One table: a status not in it is the workload's.
const INIT_EXITS: [(u8, &str); 4] = [
    // A refused frame, or one it could not apply (workdir, seed files).
    (EXIT_BAD_FRAME, "init_config"),
    // Init's own environment, as the controller set it.
    (EXIT_CONFIG, "init_config"),
    // No frame within the idle timeout, or stdin closed before a whole one.
    (EXIT_NO_FRAME, "init_no_frame"),
    // Init itself could not set up or start the workload.
    (EXIT_INTERNAL, "init_internal"),
];

/// An exit status `airlock-init` uses for its own failures before the workload runs. Whether
/// init or the workload exited with it is told by the container's last log line
/// ([`InitExit::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitExit {
    prefix: &'static str,
}

impl InitExit {
    /// The init exit a container's status may be: a code from the table, not an OOM kill.
    pub fn of(exit_code: Option<i64>, oom_killed: bool) -> Option<Self> {
        let code = exit_code?;
        INIT_EXITS
            .iter()
            .find(|(status, _)| i64::from(*status) == code && !oom_killed)
            .map(|(_, prefix)| Self { prefix })
    }

    /// The message prefix (`init_config`, `init_no_frame`, `init_internal`).
    pub fn prefix(self) -> &'static str {
        self.prefix
    }

    /// How the sandbox ended, given the last line of its container's log when that line was
    /// written on stderr: init's `airlock-init: {...}` line means init gave up (`failed`,
    /// reason `error`, message `<prefix>: {...}`); anything else, or none, means the workload
    /// exited with the same status itself (`None`: read the exit as usual).
    pub fn reason(self, last_stderr_line: Option<&str>) -> Option<EndReason> {
        let report = last_stderr_line?.trim_end().strip_prefix(REPORT_PREFIX)?;
        Some(EndReason::Error {
            message: Some(format!("{}: {}", self.prefix, report.trim())),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"airlock-init: {"error":"idle_timeout","message":"no frame within 60s"}"#;

    fn message(reason: Option<EndReason>) -> Option<String> {
        reason.and_then(|r| r.message().map(str::to_owned))
    }

    #[test]
    fn each_init_exit_with_inits_last_line_fails_with_its_prefix() {
        let report = r#"{"error":"idle_timeout","message":"no frame within 60s"}"#;
        for (code, prefix) in [
            (64, "init_config"),
            (78, "init_config"),
            (75, "init_no_frame"),
            (70, "init_internal"),
        ] {
            let exit = InitExit::of(Some(code), false).unwrap();
            assert_eq!(exit.prefix(), prefix);
            let reason = exit.reason(Some(LINE));
            assert_eq!(
                reason.as_ref().map(EndReason::final_state),
                Some(SandboxState::Failed)
            );
            assert_eq!(
                message(reason),
                Some(format!("{prefix}: {report}")),
                "{code}"
            );
        }
    }

    #[test]
    fn a_workload_exiting_with_an_init_status_itself_is_not_misread() {
        let exit = InitExit::of(Some(75), false).unwrap();
        // The workload's own last line, or no stderr line last: read the exit as usual.
        assert_eq!(exit.reason(Some("retry later")), None);
        assert_eq!(exit.reason(None), None);
        assert_eq!(exit.reason(Some(&format!("x {LINE}"))), None);
        // Other statuses, and an OOM kill, are never init's.
        for code in [Some(0), Some(1), Some(3), Some(65), Some(137), None] {
            assert_eq!(InitExit::of(code, false), None, "{code:?}");
        }
        assert_eq!(InitExit::of(Some(64), true), None);
    }
}
