//! Unbound pool members: containers that run on their own /29 with the proxy attached but that
//! no sandbox has claimed yet. Their source addresses are registered so that every request from
//! them is refused `sandbox_not_claimed` ([`IdentityError::SandboxNotClaimed`]) before any
//! credential is looked at; nothing is resolved or dialled for them, and no sandbox's ledger
//! share is charged (the refusal is recorded like an unknown source's).
//!
//! A member registration is fenced by its generation like a sandbox entry. A claim is a sandbox
//! push that names the member ([`Registry::upsert_claim`]): under one write lock the member's
//! registration is replaced by the sandbox entry on the same addresses.

use std::net::IpAddr;

use super::table::{normalise_addrs, Member, Sandboxes};
use super::{validate_sandbox_id, IdentityError, Registry, RegistryError, State, UpsertOutcome};

/// One row of [`Registry::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    /// The member id.
    pub member_id: String,
    /// The registered generation.
    pub generation: u64,
    /// The registered source addresses.
    pub source_addrs: Vec<IpAddr>,
}

// === impl Registry ===

impl Registry {
    /// Registers or moves an unbound member, fenced by its generation: older is refused
    /// (`StaleGeneration`), equal is idempotent (`Unchanged`, or `GenerationConflict` if the
    /// addresses differ), newer moves it. An address a sandbox or another member holds is
    /// refused (`AddressInUse`, `AddressHeldByMember`): a member that was claimed cannot be
    /// registered again over its sandbox.
    pub fn upsert_member(
        &self,
        member_id: &str,
        source_addrs: Vec<IpAddr>,
        generation: u64,
    ) -> Result<UpsertOutcome, RegistryError> {
        validate_member_id(member_id)?;
        let source_addrs = normalise_addrs(source_addrs)?;
        match &mut *self.write() {
            State::Standalone(_) => Err(RegistryError::Standalone),
            State::Controlled(sandboxes) => {
                sandboxes.upsert_member(member_id, source_addrs, generation)
            }
        }
    }

    /// Forgets an unbound member. Returns whether it was registered (a bound member is the
    /// sandbox's now and is not touched).
    pub fn remove_member(&self, member_id: &str) -> bool {
        match &mut *self.write() {
            State::Standalone(_) => false,
            State::Controlled(sandboxes) => sandboxes.remove_member(member_id),
        }
    }

    /// Every unbound member, sorted by id (empty in standalone mode).
    pub fn members(&self) -> Vec<MemberSummary> {
        let state = self.read();
        let State::Controlled(sandboxes) = &*state else {
            return Vec::new();
        };
        let mut rows: Vec<MemberSummary> = sandboxes
            .members
            .iter()
            .map(|(id, member)| MemberSummary {
                member_id: id.clone(),
                generation: member.generation,
                source_addrs: member.source_addrs.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        rows
    }

    /// How many unbound members are registered.
    pub fn member_count(&self) -> usize {
        match &*self.read() {
            State::Standalone(_) => 0,
            State::Controlled(sandboxes) => sandboxes.members.len(),
        }
    }
}

// === impl Sandboxes ===

impl Sandboxes {
    fn upsert_member(
        &mut self,
        member_id: &str,
        source_addrs: Vec<IpAddr>,
        generation: u64,
    ) -> Result<UpsertOutcome, RegistryError> {
        for addr in &source_addrs {
            if let Some(owner) = self.by_addr.get(addr) {
                return Err(RegistryError::AddressInUse {
                    addr: *addr,
                    owner: owner.clone(),
                });
            }
            if let Some(other) = self.member_addrs.get(addr).filter(|m| *m != member_id) {
                return Err(RegistryError::AddressHeldByMember {
                    addr: *addr,
                    member: other.clone(),
                });
            }
        }
        let next = Member {
            generation,
            source_addrs,
        };
        let outcome = match self.members.get(member_id) {
            None => UpsertOutcome::Created,
            Some(current) if generation < current.generation => {
                return Err(RegistryError::StaleGeneration {
                    current: current.generation,
                    offered: generation,
                })
            }
            Some(current) if generation == current.generation => {
                return if *current == next {
                    Ok(UpsertOutcome::Unchanged)
                } else {
                    Err(RegistryError::GenerationConflict { generation })
                };
            }
            Some(current) => UpsertOutcome::Replaced {
                previous: current.generation,
            },
        };
        self.remove_member(member_id);
        for addr in &next.source_addrs {
            self.member_addrs.insert(*addr, member_id.to_owned());
        }
        self.members.insert(member_id.to_owned(), next);
        Ok(outcome)
    }

    pub(super) fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(member) = self.members.remove(member_id) else {
            return false;
        };
        for addr in &member.source_addrs {
            self.member_addrs.remove(addr);
        }
        true
    }
}

/// Why a source no sandbox owns is refused: an unbound member's address is not claimed yet, any
/// other is unknown.
pub(super) fn unowned(sandboxes: &Sandboxes, src: IpAddr) -> IdentityError {
    if sandboxes.member_addrs.contains_key(&src) {
        IdentityError::SandboxNotClaimed
    } else {
        IdentityError::UnknownSource
    }
}

/// Checks a member id: the sandbox id grammar (it names an admin route too).
pub fn validate_member_id(id: &str) -> Result<(), RegistryError> {
    validate_sandbox_id(id).map_err(|_invalid| RegistryError::InvalidMemberId)
}

#[cfg(test)]
mod tests;
