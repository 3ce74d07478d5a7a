//! A pool member's registration on the proxy: a running container on its own /29 that no
//! sandbox has claimed yet. Every request from its source addresses is refused
//! `sandbox_not_claimed` (403) before any credential check, DNS lookup or upstream connect.
//!
//! - `PUT /v1/members/{id}` [`PutMember`] → [`PutMemberReply`]: registers (or, at a newer
//!   generation, moves) the member's addresses. Fenced like a sandbox entry: older is refused,
//!   equal is idempotent, newer replaces. Addresses another member or a sandbox holds: `409`.
//! - `DELETE /v1/members/{id}`: forgets an unbound member (idempotent, `204`).
//! - `GET /v1/members` → [`MemberList`]: every unbound member, sorted by id.
//! - A claim binds the member: `PUT /v1/sandboxes/{id}` with [`crate::PutSandbox::member`]
//!   set replaces the member's registration with the sandbox entry in one step, on the same
//!   addresses (`409 member_mismatch` when they differ). A member already bound, or no longer
//!   registered, is a plain push: the addresses must then be free or already the sandbox's.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::PutOutcome;

/// `PUT /v1/members/{id}`: an unbound member's source addresses and generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// Source addresses the member's container connects from.
    pub source_addrs: Vec<IpAddr>,
    /// The controller's generation counter for the member: older is refused, equal is
    /// idempotent, newer replaces the registration.
    pub generation: u64,
}

/// The answer to `PUT /v1/members/{id}` (201 when registered, else 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutMemberReply {
    /// The member id.
    pub member_id: String,
    /// The generation now registered.
    pub generation: u64,
    /// What the push did.
    pub outcome: PutOutcome,
    /// The proxy process that holds the registration.
    pub boot_id: String,
}

/// `GET /v1/members`: every unbound member, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    /// The proxy process.
    pub boot_id: String,
    /// The unbound members.
    pub members: Vec<ListedMember>,
}

/// One row of [`MemberList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedMember {
    /// The member id.
    pub member_id: String,
    /// The registered generation.
    pub generation: u64,
    /// The registered source addresses.
    pub source_addrs: Vec<IpAddr>,
}

#[cfg(test)]
mod tests;
