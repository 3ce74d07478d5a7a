//! Registry errors: why a client was not identified (the proxy answers 407 or 403), and why
//! the admin API refused an entry (409 for conflicts, 400 for bad input). Each has a stable
//! snake_case `code()` used as the JSON `error` field and the ledger reason.

use std::net::IpAddr;

/// Why a client was not identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The source is registered but no `Proxy-Authorization` was sent (407).
    #[error("proxy authentication required")]
    MissingCredential,
    /// The credential is malformed, wrong, or belongs to another sandbox (403).
    #[error("the proxy credential does not match this source")]
    BadCredential,
    /// No sandbox is registered for the source address (403).
    #[error("no sandbox is registered for this source address")]
    UnknownSource,
    /// The source address is an unbound pool member's: no sandbox has claimed it yet (403).
    /// Decided before any credential is looked at.
    #[error("this address belongs to a pool member that no sandbox has claimed")]
    SandboxNotClaimed,
}

/// Why an upsert was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The offered generation is older than the registered one.
    #[error("generation {offered} is older than the registered generation {current}")]
    StaleGeneration {
        /// The registered generation.
        current: u64,
        /// The generation in the refused entry.
        offered: u64,
    },
    /// The same generation was pushed with different content.
    #[error(
        "generation {generation} is already registered with different content; bump the generation"
    )]
    GenerationConflict {
        /// The generation both entries carry.
        generation: u64,
    },
    /// A source address already belongs to another sandbox.
    #[error("source address {addr} already belongs to sandbox {owner}")]
    AddressInUse {
        /// The contested address.
        addr: IpAddr,
        /// The sandbox that holds it.
        owner: String,
    },
    /// A source address belongs to an unbound pool member other than the one the push binds.
    #[error("source address {addr} belongs to the unbound pool member {member}")]
    AddressHeldByMember {
        /// The contested address.
        addr: IpAddr,
        /// The member that holds it.
        member: String,
    },
    /// A claim names a member registered on other source addresses than the entry's.
    #[error("member {member} is registered on other source addresses than this entry's")]
    MemberMismatch {
        /// The member the push binds.
        member: String,
    },
    /// The sandbox id is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("sandbox id must be 1..=128 characters of [A-Za-z0-9._-]")]
    InvalidSandboxId,
    /// The member id is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("member id must be 1..=128 characters of [A-Za-z0-9._-]")]
    InvalidMemberId,
    /// The credential hash is not 64 hex digits.
    #[error("credential_hash must be the hex SHA-256 of the token (64 hex digits)")]
    InvalidCredentialHash,
    /// The ceiling label is empty, too long, or not printable ASCII.
    #[error("ceiling must be 1..=128 printable ASCII characters")]
    InvalidCeiling,
    /// The entry has no source address.
    #[error("source_addrs must name at least one address")]
    NoSourceAddrs,
    /// The registry runs in standalone mode and takes no entries.
    #[error("the proxy runs in standalone mode and takes no sandbox entries")]
    Standalone,
    /// The registry runs in controlled mode and has no default policy.
    #[error("the proxy runs in controlled mode and has no default policy")]
    Controlled,
}

// === impl IdentityError ===

impl IdentityError {
    /// The stable error code (the JSON `error` field and the ledger reason).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredential => "proxy_auth_required",
            Self::BadCredential => "bad_credential",
            Self::UnknownSource => "unknown_source",
            Self::SandboxNotClaimed => "sandbox_not_claimed",
        }
    }

    /// The HTTP status: 407 when a credential is missing, 403 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingCredential => 407,
            Self::BadCredential | Self::UnknownSource | Self::SandboxNotClaimed => 403,
        }
    }
}

// === impl RegistryError ===

impl RegistryError {
    /// The stable error code for the admin API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::StaleGeneration { .. } => "stale_generation",
            Self::GenerationConflict { .. } => "generation_conflict",
            Self::AddressInUse { .. } | Self::AddressHeldByMember { .. } => "address_in_use",
            Self::MemberMismatch { .. } => "member_mismatch",
            Self::InvalidSandboxId => "invalid_sandbox_id",
            Self::InvalidMemberId => "invalid_member_id",
            Self::InvalidCredentialHash => "invalid_credential_hash",
            Self::NoSourceAddrs => "no_source_addrs",
            Self::InvalidCeiling => "invalid_ceiling",
            Self::Standalone => "standalone_mode",
            Self::Controlled => "controlled_mode",
        }
    }

    /// The HTTP status for the admin API: 409 for conflicts, 400 for bad input.
    pub fn status(&self) -> u16 {
        match self {
            Self::StaleGeneration { .. }
            | Self::GenerationConflict { .. }
            | Self::AddressInUse { .. }
            | Self::AddressHeldByMember { .. }
            | Self::MemberMismatch { .. }
            | Self::Standalone
            | Self::Controlled => 409,
            Self::InvalidSandboxId
            | Self::InvalidMemberId
            | Self::InvalidCredentialHash
            | Self::NoSourceAddrs
            | Self::InvalidCeiling => 400,
        }
    }
}
