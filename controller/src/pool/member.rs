//! [`MemberState`]: a member's life (`warming → ready → claiming → claimed`, or
//! `destroying`), decided by one function, [`MemberState::transition`].

use crate::sandbox::string_enum;

string_enum! {
    /// Where a pool member is in its life.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum MemberState as "member state" {
        /// The row exists; its network and container are being made and started.
        Warming = "warming",
        /// Started and blocked in `airlock-init`, waiting for a claim.
        Ready = "ready",
        /// Taken by a claim whose sandbox row committed; the binding is being pushed.
        Claiming = "claiming",
        /// Its frame was written: the member is the sandbox now, and the sandbox's lifecycle
        /// owns the container.
        Claimed = "claimed",
        /// Being removed (failed, too old, on an old runtime or image, or a failed claim);
        /// never handed out again.
        Destroying = "destroying",
    }
}

/// Something that happened to a member; the input of [`MemberState::transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// Its container started and blocks in `airlock-init`.
    Ready,
    /// A claim took it (in the transaction that creates the sandbox row).
    Claim,
    /// The frame reached it: the claim is complete.
    Bound,
    /// It is to be removed.
    Destroy,
}

/// An event that the member's state does not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply `{event}` to a pool member that is {from}")]
pub struct MemberTransitionError {
    /// The state the member was in.
    pub from: MemberState,
    /// The event's name (see [`MemberEvent::name`]).
    pub event: &'static str,
}

// === impl MemberState ===

impl MemberState {
    /// The state that follows `event`, or why the event does not apply.
    ///
    /// A claimed member belongs to its sandbox, so nothing destroys it as a member; a
    /// second destroy while destroying is accepted and changes nothing.
    pub fn transition(self, event: MemberEvent) -> Result<MemberState, MemberTransitionError> {
        use MemberState::{Claimed, Claiming, Destroying, Ready, Warming};
        match (self, event) {
            (Warming, MemberEvent::Ready) => Ok(Ready),
            (Ready, MemberEvent::Claim) => Ok(Claiming),
            (Claiming, MemberEvent::Bound) => Ok(Claimed),
            (Warming | Ready | Claiming | Destroying, MemberEvent::Destroy) => Ok(Destroying),
            (from, event) => Err(MemberTransitionError {
                from,
                event: event.name(),
            }),
        }
    }

    /// The states that accept `event`: the store's fence for it.
    pub fn accepting(event: MemberEvent) -> Vec<MemberState> {
        Self::ALL
            .into_iter()
            .filter(|state| state.transition(event).is_ok())
            .collect()
    }
}

// === impl MemberEvent ===

impl MemberEvent {
    /// A short name for errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Claim => "claim",
            Self::Bound => "bound",
            Self::Destroy => "destroy",
        }
    }
}
