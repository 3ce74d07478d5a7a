//! The controlled-mode table: sandboxes by id, the owner of each source address, the unbound
//! pool members (`super::members`), and the generation fencing of upserts. Only `Registry` uses
//! it, under its lock. An address is held by at most one sandbox or member at a time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{ClientCtx, RegistryError, SandboxEntry, UpsertOutcome};
use crate::budget::Budget;

/// The controlled-mode table: sandboxes by id, and the owner of each source address.
#[derive(Default)]
pub(super) struct Sandboxes {
    pub(super) by_id: HashMap<String, Slot>,
    pub(super) by_addr: HashMap<IpAddr, String>,
    /// Unbound pool members by id.
    pub(super) members: HashMap<String, Member>,
    /// The unbound member each source address belongs to.
    pub(super) member_addrs: HashMap<IpAddr, String>,
}

/// An unbound pool member's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) generation: u64,
    /// Canonical, sorted, deduplicated.
    pub(super) source_addrs: Vec<IpAddr>,
}

/// One registered generation plus the state that outlives it (the budget).
pub(super) struct Slot {
    pub(super) entry: SandboxEntry,
    pub(super) hash: [u8; 32],
    pub(super) budget: Arc<Budget>,
    pub(super) revoked: CancellationToken,
    /// `entry.ceiling`, shared with every request's context without a copy.
    ceiling: Option<Arc<str>>,
}

// === impl Sandboxes ===

impl Sandboxes {
    pub(super) fn owner_of(&self, src: IpAddr) -> Option<&Slot> {
        self.by_addr.get(&src).and_then(|id| self.by_id.get(id))
    }

    /// Registers or replaces a sandbox entry. With `member`, a claim: when that member is still
    /// unbound, its addresses must be exactly the entry's, and on success its registration is
    /// gone in the same step; when it is not (already bound, or never registered here), this is
    /// a plain push.
    pub(super) fn upsert(
        &mut self,
        entry: SandboxEntry,
        hash: [u8; 32],
        member: Option<&str>,
    ) -> Result<UpsertOutcome, RegistryError> {
        let binds = member.filter(|m| self.members.contains_key(*m));
        if let Some(member) = binds {
            if self.members[member].source_addrs != entry.source_addrs {
                return Err(RegistryError::MemberMismatch {
                    member: member.to_owned(),
                });
            }
        }
        self.check_addrs_free(&entry, binds)?;
        let outcome = self.upsert_checked(entry, hash)?;
        if let Some(member) = binds {
            self.remove_member(member);
        }
        Ok(outcome)
    }

    fn upsert_checked(
        &mut self,
        entry: SandboxEntry,
        hash: [u8; 32],
    ) -> Result<UpsertOutcome, RegistryError> {
        let sandbox_id = entry.sandbox_id.clone();
        let Some(slot) = self.by_id.get_mut(&sandbox_id) else {
            self.claim_addrs(&entry.source_addrs, &sandbox_id);
            let slot = Slot::new(entry, hash, None);
            self.by_id.insert(slot.entry.sandbox_id.clone(), slot);
            return Ok(UpsertOutcome::Created);
        };
        let previous = slot.entry.generation;
        if entry.generation < previous {
            return Err(RegistryError::StaleGeneration {
                current: previous,
                offered: entry.generation,
            });
        }
        if entry.generation == previous {
            return if same_content(&slot.entry, &entry) {
                slot.ceiling = entry.ceiling.as_deref().map(Arc::from);
                slot.entry.ceiling = entry.ceiling;
                Ok(UpsertOutcome::Unchanged)
            } else {
                Err(RegistryError::GenerationConflict {
                    generation: previous,
                })
            };
        }
        let old_addrs = std::mem::take(&mut slot.entry.source_addrs);
        slot.replace(entry, hash);
        for addr in &old_addrs {
            self.by_addr.remove(addr);
        }
        if let Some(slot) = self.by_id.get(&sandbox_id) {
            let addrs = slot.entry.source_addrs.clone();
            self.claim_addrs(&addrs, &sandbox_id);
        }
        Ok(UpsertOutcome::Replaced { previous })
    }

    /// Refuses an entry naming an address that another sandbox owns, or that an unbound member
    /// other than `binds` holds.
    fn check_addrs_free(
        &self,
        entry: &SandboxEntry,
        binds: Option<&str>,
    ) -> Result<(), RegistryError> {
        for addr in &entry.source_addrs {
            if let Some(owner) = self.by_addr.get(addr).filter(|o| **o != entry.sandbox_id) {
                return Err(RegistryError::AddressInUse {
                    addr: *addr,
                    owner: owner.clone(),
                });
            }
            if let Some(member) = self
                .member_addrs
                .get(addr)
                .filter(|m| Some(m.as_str()) != binds)
            {
                return Err(RegistryError::AddressHeldByMember {
                    addr: *addr,
                    member: member.clone(),
                });
            }
        }
        Ok(())
    }

    fn claim_addrs(&mut self, addrs: &[IpAddr], sandbox_id: &str) {
        for addr in addrs {
            self.by_addr.insert(*addr, sandbox_id.to_owned());
        }
    }

    pub(super) fn remove(&mut self, sandbox_id: &str) -> bool {
        let Some(slot) = self.by_id.remove(sandbox_id) else {
            return false;
        };
        for addr in &slot.entry.source_addrs {
            self.by_addr.remove(addr);
        }
        slot.revoked.cancel();
        true
    }
}

// === impl Slot ===

impl Slot {
    pub(super) fn new(entry: SandboxEntry, hash: [u8; 32], budget: Option<Arc<Budget>>) -> Self {
        let (max_conns, max_bytes) = (entry.policy.max_connections(), entry.policy.max_bytes());
        let budget = match budget {
            Some(budget) => {
                budget.set_limits(max_conns, max_bytes);
                budget
            }
            None => Arc::new(Budget::new(max_conns, max_bytes)),
        };
        Self {
            ceiling: entry.ceiling.as_deref().map(Arc::from),
            entry,
            hash,
            budget,
            revoked: CancellationToken::new(),
        }
    }

    /// Installs a new generation: same budget (new limits), fresh token, old token cancelled.
    pub(super) fn replace(&mut self, entry: SandboxEntry, hash: [u8; 32]) {
        let next = Slot::new(entry, hash, Some(Arc::clone(&self.budget)));
        let old = std::mem::replace(self, next);
        old.revoked.cancel();
    }

    pub(super) fn ctx(&self, sandbox: Option<String>) -> ClientCtx {
        ClientCtx {
            sandbox,
            generation: self.entry.generation,
            policy: Arc::clone(&self.entry.policy),
            budget: Arc::clone(&self.budget),
            revoked: self.revoked.clone(),
            ceiling: self.ceiling(),
            inspection: self.entry.inspection.clone(),
        }
    }

    pub(super) fn ceiling(&self) -> Option<Arc<str>> {
        self.ceiling.clone()
    }
}

/// Canonicalises addresses (mapped IPv4 becomes IPv4), sorts and dedups them, lowercases the hash.
pub(super) fn normalise(mut entry: SandboxEntry) -> Result<SandboxEntry, RegistryError> {
    entry.source_addrs = normalise_addrs(std::mem::take(&mut entry.source_addrs))?;
    entry.credential_hash.make_ascii_lowercase();
    Ok(entry)
}

/// Canonicalises source addresses (mapped IPv4 becomes IPv4), sorts and dedups them; none is
/// refused.
pub(super) fn normalise_addrs(mut addrs: Vec<IpAddr>) -> Result<Vec<IpAddr>, RegistryError> {
    if addrs.is_empty() {
        return Err(RegistryError::NoSourceAddrs);
    }
    for addr in &mut addrs {
        *addr = addr.to_canonical();
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Idempotency check for an equal generation: same addresses, credential and policy.
fn same_content(a: &SandboxEntry, b: &SandboxEntry) -> bool {
    a.source_addrs == b.source_addrs
        && a.credential_hash == b.credential_hash
        && a.policy_spec == b.policy_spec
        && a.inspection.as_ref().map(|i| i.fingerprint())
            == b.inspection.as_ref().map(|i| i.fingerprint())
}
