//! Sandbox domain types: the id, the lifecycle state machine and the typed end reason.
//!
//! Invariants:
//! - Every state change goes through [`SandboxState::transition`]; nothing else decides which
//!   state follows which.
//! - Each enum that the store persists has exactly one `as_str`/`FromStr` pair, and the
//!   migrations back it with a `CHECK` constraint listing the same strings.
//! - Pure: no I/O, no serde and no sqlx derives (those live at the API and store boundaries).

pub mod end;
mod image;
mod limits;
pub mod mounts;
pub mod names;
pub mod path;
pub mod presets;
pub mod selftest;
pub mod spec;
mod string_enum;
pub mod subnet;
pub mod timeouts;
pub mod user;
mod uuid_id;

pub use end::{EndKind, EndReason, EndReasonError, SIGKILL_EXIT};
pub use image::{ImageRef, MAX_IMAGE_REF};
pub use limits::{Cpus, Limits, Maximums};
pub use spec::{
    EnvVar, FieldError, Home, LimitsRequest, Problem, RootFs, RunAs, SandboxRequest, SandboxSpec,
    HOME_DIR,
};

pub(crate) use string_enum::string_enum;
pub(crate) use uuid_id::uuid_id;

uuid_id! {
    /// A sandbox's id: a UUIDv7, so ids sort roughly by creation time and serve as list
    /// cursors.
    pub struct SandboxId;
}

string_enum! {
    /// Where a sandbox is in its life, as last observed (`creating → running → stopping →
    /// exited | failed | lost`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum SandboxState as "sandbox state" {
        /// The row exists; the network and container are being made.
        Creating = "creating",
        /// The container runs.
        Running = "running",
        /// A stop was requested: SIGTERM sent, SIGKILL after the grace period.
        Stopping = "stopping",
        /// The container ended (by itself, by stop, timeout, idleness, OOM or kill).
        Exited = "exited",
        /// The sandbox could not be created or started, or an error ended it.
        Failed = "failed",
        /// The container vanished, or came back `Exited (255)` after a DinD restart.
        Lost = "lost",
    }
}

string_enum! {
    /// What the owner wants to exist, kept apart from what Docker reports ([`SandboxState`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum DesiredState as "desired state" {
        /// The sandbox should run until it ends.
        Running = "running",
        /// The sandbox should be stopped.
        Stopped = "stopped",
        /// The sandbox and everything labelled for it should be removed.
        Deleted = "deleted",
    }
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

// === impl SandboxState ===

impl SandboxState {
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

#[cfg(test)]
mod tests;
