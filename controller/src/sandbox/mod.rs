//! Sandbox domain types: the id, the lifecycle state machine and the typed end reason.
//!
//! Invariants:
//! - Every state change goes through [`SandboxState::transition`]; nothing else decides which
//!   state follows which.
//! - Each enum that the store persists has exactly one `as_str`/`FromStr` pair, and the
//!   migrations back it with a `CHECK` constraint listing the same strings.
//! - Pure: no I/O, no serde and no sqlx derives (those live at the API and store boundaries).

mod image;
mod limits;
pub mod spec;
pub mod subnet;
pub mod timeouts;

pub use image::{ImageRef, MAX_IMAGE_REF};
pub use limits::{Cpus, Limits, Maximums};
pub use spec::{
    EnvVar, FieldError, LimitsRequest, Problem, RootFs, RunAs, SandboxRequest, SandboxSpec,
};

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A sandbox's id: a UUIDv7, so ids sort roughly by creation time and serve as list cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SandboxId(Uuid);

/// Where a sandbox is in its life, as last observed (`creating → running → stopping →
/// exited | failed | lost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SandboxState {
    /// The row exists; the network and container are being made.
    Creating,
    /// The container runs.
    Running,
    /// A stop was requested: SIGTERM sent, SIGKILL after the grace period.
    Stopping,
    /// The container ended (by itself, by stop, timeout, idleness, OOM or kill).
    Exited,
    /// The sandbox could not be created or started, or an error ended it.
    Failed,
    /// The container vanished, or came back `Exited (255)` after a DinD restart.
    Lost,
}

/// What the owner wants to exist, kept apart from what Docker reports ([`SandboxState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DesiredState {
    /// The sandbox should run until it ends.
    Running,
    /// The sandbox should be stopped.
    Stopped,
    /// The sandbox and everything labelled for it should be removed.
    Deleted,
}

/// Something that happened to a sandbox; the input of [`SandboxState::transition`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxEvent {
    /// The container started.
    Started,
    /// Somebody (the owner, a timeout, the reconciler) asked the sandbox to stop.
    StopRequested,
    /// The sandbox ended, for this reason.
    Ended(EndReason),
}

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

/// The kind of an [`EndReason`], without its data: what the `end_reason` column stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndKind {
    /// See [`EndReason::Exited`].
    Exited,
    /// See [`EndReason::Stopped`].
    Stopped,
    /// See [`EndReason::Timeout`].
    Timeout,
    /// See [`EndReason::Idle`].
    Idle,
    /// See [`EndReason::Oom`].
    Oom,
    /// See [`EndReason::Killed`].
    Killed,
    /// See [`EndReason::Lost`].
    Lost,
    /// See [`EndReason::Error`].
    Error,
}

/// An event that the current state does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply `{event}` to a sandbox that is {from}")]
pub struct TransitionError {
    /// The state the sandbox was in.
    pub from: SandboxState,
    /// The event's name (see [`SandboxEvent::name`]).
    pub event: &'static str,
}

/// A stored string that names no variant of a persisted enum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct ParseEnumError {
    /// Which enum was parsed.
    pub what: &'static str,
    /// The offending value.
    pub value: String,
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

// === impl SandboxId ===

impl SandboxId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID read from the store or a URL.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for SandboxId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SandboxId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

// === impl SandboxState ===

impl SandboxState {
    /// Every state, in lifecycle order.
    pub const ALL: [SandboxState; 6] = [
        Self::Creating,
        Self::Running,
        Self::Stopping,
        Self::Exited,
        Self::Failed,
        Self::Lost,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }

    /// Whether the sandbox has ended; no event moves it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Exited | Self::Failed | Self::Lost)
    }

    /// Whether the container may be started now.
    pub fn can_start(self) -> bool {
        self == Self::Creating
    }

    /// Whether a stop request does something now.
    pub fn can_stop(self) -> bool {
        matches!(self, Self::Creating | Self::Running)
    }

    /// Whether the sandbox's objects may be removed without stopping it first.
    pub fn can_delete(self) -> bool {
        self.is_terminal()
    }

    /// The state that follows `event`, or why the event does not apply.
    ///
    /// A second stop request while stopping is accepted and changes nothing, so stop is
    /// idempotent; any event on an ended sandbox is refused.
    pub fn transition(self, event: &SandboxEvent) -> Result<SandboxState, TransitionError> {
        use SandboxEvent::{Ended, Started, StopRequested};
        use SandboxState::{Creating, Running, Stopping};
        match (self, event) {
            (Creating, Started) => Ok(Running),
            (Creating | Running | Stopping, StopRequested) => Ok(Stopping),
            (Creating | Running | Stopping, Ended(reason)) => Ok(reason.final_state()),
            (from, event) => Err(TransitionError {
                from,
                event: event.name(),
            }),
        }
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxState {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                what: "sandbox state",
                value: s.to_owned(),
            })
    }
}

// === impl DesiredState ===

impl DesiredState {
    /// Every desired state.
    pub const ALL: [DesiredState; 3] = [Self::Running, Self::Stopped, Self::Deleted];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DesiredState {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                what: "desired state",
                value: s.to_owned(),
            })
    }
}

// === impl SandboxEvent ===

impl SandboxEvent {
    /// A short name for errors and the event log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::StopRequested => "stop_requested",
            Self::Ended(_) => "ended",
        }
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

// === impl EndKind ===

impl EndKind {
    /// Every kind.
    pub const ALL: [EndKind; 8] = [
        Self::Exited,
        Self::Stopped,
        Self::Timeout,
        Self::Idle,
        Self::Oom,
        Self::Killed,
        Self::Lost,
        Self::Error,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Stopped => "stopped",
            Self::Timeout => "timeout",
            Self::Idle => "idle",
            Self::Oom => "oom",
            Self::Killed => "killed",
            Self::Lost => "lost",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for EndKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndKind {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                what: "end reason",
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests;
