//! Warm pools: the pure types. A pool keeps started containers (**members**) blocked in
//! `airlock-init` until a create claims one; this module holds what they are, with no I/O.
//!
//! - [`PoolKey`] is what makes two members interchangeable (image digest, user, TTY,
//!   security profile); limits are not part of it, they are fixed at claim.
//! - [`PoolSpec`] is one configured pool, validated by [`PoolRequest::validate`] with every
//!   problem named by its field; [`check_total`] bounds a node's pools together.
//! - [`doc`] reads and checks a node's pool document (`AIRLOCK_POOLS`, `PUT /v1/pools`).
//! - [`MemberState::transition`] is the one state machine of a member; the store derives its
//!   fences from it.
//!
//! Pools are identified by their key ([`PoolKey::hash`], the `airlock.pool` label), not by a
//! stored id: a node's pools are one stored document (`store::pool_config`), not rows.

pub mod doc;
mod key;
mod member;
mod spec;

pub use key::{PoolKey, POOL_KEY_HASH_LEN};
pub use member::{MemberEvent, MemberState, MemberTransitionError};
pub use spec::{
    check_total, PoolBounds, PoolRequest, PoolSpec, DEFAULT_IDLE_S, MAX_IDLE_S, MAX_POOL_SIZE,
    MAX_POOL_TOTAL, MIN_IDLE_S,
};

use crate::sandbox::{names, uuid_id, SandboxId};

uuid_id! {
    /// A pool member's id: a UUIDv7, so members sort roughly by creation time.
    pub struct MemberId;
}

impl MemberId {
    /// The sandbox a claim turns this member into: the same UUID. A member's container and
    /// network are made under the sandbox's names and labels (labels are immutable), so once
    /// claimed, everything that finds a sandbox's objects finds the member's.
    pub fn sandbox_id(self) -> SandboxId {
        SandboxId::from_uuid(self.as_uuid())
    }
}

/// The Docker network a member is created on: its sandbox's, [`MemberId::sandbox_id`].
pub fn member_network_name(id: MemberId) -> String {
    names::network_name(id.sandbox_id())
}

#[cfg(test)]
mod tests;
