//! The identity registry: which sandbox is this client, and which policy applies to it?
//!
//! Two modes:
//! - **standalone**: every source gets the default policy, no credential is needed, and the
//!   sandbox is `None`. All clients share one [`Budget`] built from that policy's limits; the
//!   generation starts at 0 and counts [`Registry::replace_default_policy`] calls.
//! - **controlled**: the registry starts empty and every source is denied (fail closed) until the
//!   controller pushes a [`SandboxEntry`] through the admin API.
//!
//! In controlled mode a request must come from a source address registered for a sandbox **and**
//! carry `Proxy-Authorization: Basic base64("<sandbox_id>:<token>")` for that same sandbox, where
//! SHA-256(token) equals the stored `credential_hash`. The hash comparison is constant-time.
//!
//! Entries are fenced by a generation: a lower generation than the current one is refused (a
//! stale writer), an equal one is idempotent, and a higher one replaces the entry and cancels the
//! old generation's [`CancellationToken`] so the proxy closes tunnels that ran under it. The
//! sandbox's [`Budget`] survives replacements; only its limits change.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use airlock_egress_policy::{Policy, PolicySpec};
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::inspect::Inspection;
use table::{normalise, Sandboxes, Slot};

mod credential;
mod error;
mod members;
mod table;

pub(crate) use credential::parse_hash;
pub use credential::{basic_credential, credential_hash};
pub use error::{IdentityError, RegistryError};
pub use members::{validate_member_id, MemberSummary};

/// Longest accepted sandbox id.
const MAX_SANDBOX_ID_LEN: usize = 128;
/// Longest accepted ceiling label.
const MAX_CEILING_LEN: usize = 128;

/// The identity registry. Cheap to query from many tasks at once ([`Registry::identify`] takes a
/// read lock only).
pub struct Registry {
    boot_id: String,
    state: RwLock<State>,
}

/// A sandbox's registration, as pushed by the controller.
#[derive(Clone)]
pub struct SandboxEntry {
    /// The sandbox id; also the user part of the Basic credential.
    pub sandbox_id: String,
    /// Source addresses the sandbox connects from (IPv4-mapped addresses are canonicalised).
    pub source_addrs: Vec<IpAddr>,
    /// Lowercase hex SHA-256 of the sandbox's proxy token.
    pub credential_hash: String,
    /// The compiled policy.
    pub policy: Arc<Policy>,
    /// The policy as pushed (kept to compare idempotent re-pushes and to report it back).
    pub policy_spec: PolicySpec,
    /// The controller's generation counter for this sandbox.
    pub generation: u64,
    /// Which operator ceiling the policy was checked against (e.g. `role:member@3f2a9c1e`),
    /// stamped on every ledger event of the sandbox; at most 128 printable ASCII characters.
    pub ceiling: Option<String>,
    /// The compiled inspected endpoints, CA and credential values, when the policy has any.
    pub inspection: Option<Arc<Inspection>>,
}

/// Who a client is and what applies to it, for the lifetime of one request or tunnel.
#[derive(Debug, Clone)]
pub struct ClientCtx {
    /// The sandbox id, or `None` in standalone mode.
    pub sandbox: Option<String>,
    /// The policy generation (0 in standalone mode).
    pub generation: u64,
    /// The policy to evaluate requests against.
    pub policy: Arc<Policy>,
    /// The sandbox's budget, shared by all its connections.
    pub budget: Arc<Budget>,
    /// Cancelled when this generation is replaced or the sandbox is removed: close the request
    /// or tunnel then.
    pub revoked: CancellationToken,
    /// The entry's ceiling label, for the ledger.
    pub ceiling: Option<Arc<str>>,
    /// Inspected endpoints, if the policy has any.
    pub inspection: Option<Arc<Inspection>>,
}

/// The sandbox a source address is registered to, before (or without) checking a credential:
/// what the ledger needs to attribute a refusal that came before identification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOwner {
    /// The sandbox id.
    pub sandbox: String,
    /// Its registered generation.
    pub generation: u64,
    /// Its ceiling label.
    pub ceiling: Option<Arc<str>>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// A new sandbox was registered.
    Created,
    /// A newer generation replaced the old one (whose token was cancelled).
    Replaced {
        /// The generation that was replaced.
        previous: u64,
    },
    /// The same generation with the same content was already registered.
    Unchanged,
}

/// One row of [`Registry::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSummary {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The registered generation.
    pub generation: u64,
    /// The registered source addresses.
    pub source_addrs: Vec<IpAddr>,
}

enum State {
    // Boxed: one standalone slot per process, so the indirection costs nothing that matters.
    Standalone(Box<Slot>),
    Controlled(Sandboxes),
}

// === impl Registry ===

impl Registry {
    /// A registry where every source gets `policy` (and `inspection`), with no credential and
    /// no sandbox id.
    pub fn standalone(policy: Arc<Policy>, inspection: Option<Arc<Inspection>>) -> Self {
        let entry = SandboxEntry {
            sandbox_id: String::new(),
            source_addrs: Vec::new(),
            credential_hash: String::new(),
            policy,
            policy_spec: PolicySpec::default(),
            generation: 0,
            ceiling: None,
            inspection,
        };
        Self::with_state(State::Standalone(Box::new(Slot::new(entry, [0; 32], None))))
    }

    /// An empty registry that denies every source until an entry is pushed (fail closed).
    pub fn controlled() -> Self {
        Self::with_state(State::Controlled(Sandboxes::default()))
    }

    fn with_state(state: State) -> Self {
        let bytes: [u8; 16] = rand::random();
        Self {
            boot_id: credential::hex(&bytes),
            state: RwLock::new(state),
        }
    }

    /// Random per process start; the controller re-pushes every entry when it changes.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// Whether this registry is in controlled mode.
    pub fn is_controlled(&self) -> bool {
        matches!(*self.read(), State::Controlled(_))
    }

    /// Identifies a client by its source address and raw `Proxy-Authorization` header value.
    ///
    /// Controlled mode checks, in order: a sandbox owns the source address (else
    /// `SandboxNotClaimed` for an unbound pool member's address, `UnknownSource` for any other,
    /// whatever credential was sent), a credential is present (else `MissingCredential`), and
    /// it is that sandbox's id and token (else `BadCredential`).
    pub fn identify(
        &self,
        src: IpAddr,
        proxy_authorization: Option<&[u8]>,
    ) -> Result<ClientCtx, IdentityError> {
        let state = self.read();
        let sandboxes = match &*state {
            State::Standalone(slot) => return Ok(slot.ctx(None)),
            State::Controlled(sandboxes) => sandboxes,
        };
        let src = src.to_canonical();
        let slot = sandboxes
            .owner_of(src)
            .ok_or_else(|| members::unowned(sandboxes, src))?;
        let header = proxy_authorization.ok_or(IdentityError::MissingCredential)?;
        let stored = credential::StoredCredential {
            sandbox_id: &slot.entry.sandbox_id,
            hash: &slot.hash,
        };
        credential::verify(header, &stored).map_err(|_mismatch| IdentityError::BadCredential)?;
        Ok(slot.ctx(Some(slot.entry.sandbox_id.clone())))
    }

    /// The client at `src` by its source address alone, for the origin-form gateway, which
    /// checks the sandbox's placeholder instead of a proxy credential ([`crate::gateway`]).
    /// Standalone: the one policy; controlled: the sandbox registered for `src`.
    pub(crate) fn identify_source(&self, src: IpAddr) -> Result<ClientCtx, IdentityError> {
        match &*self.read() {
            State::Standalone(slot) => Ok(slot.ctx(None)),
            State::Controlled(sandboxes) => {
                let src = src.to_canonical();
                let slot = sandboxes
                    .owner_of(src)
                    .ok_or_else(|| members::unowned(sandboxes, src))?;
                Ok(slot.ctx(Some(slot.entry.sandbox_id.clone())))
            }
        }
    }

    /// The sandbox registered for source address `src` (controlled mode), without checking any
    /// credential. Only for attributing ledger events; never for admitting a request.
    pub fn owner_of(&self, src: IpAddr) -> Option<SourceOwner> {
        match &*self.read() {
            State::Standalone(_) => None,
            State::Controlled(sandboxes) => {
                sandboxes
                    .owner_of(src.to_canonical())
                    .map(|slot| SourceOwner {
                        sandbox: slot.entry.sandbox_id.clone(),
                        generation: slot.entry.generation,
                        ceiling: slot.ceiling(),
                    })
            }
        }
    }

    /// Registers or replaces a sandbox entry, fenced by its generation: older is refused
    /// (`StaleGeneration`), equal is idempotent (`Unchanged`, or `GenerationConflict` if the
    /// content differs; a new ceiling label alone is taken over in place, because it changes
    /// no decision), newer replaces the entry and cancels the old generation's token.
    pub fn upsert(&self, entry: SandboxEntry) -> Result<UpsertOutcome, RegistryError> {
        self.upsert_claim(entry, None)
    }

    /// [`Registry::upsert`], and with `member` a pool member's claim: when that member is still
    /// unbound its addresses must be exactly the entry's (else `MemberMismatch`), and its
    /// registration is replaced by the entry in the same step. A member no longer registered
    /// (already bound, or lost with a proxy restart) makes this a plain push.
    pub fn upsert_claim(
        &self,
        entry: SandboxEntry,
        member: Option<&str>,
    ) -> Result<UpsertOutcome, RegistryError> {
        if let Some(member) = member {
            validate_member_id(member)?;
        }
        validate_sandbox_id(&entry.sandbox_id)?;
        if let Some(ceiling) = &entry.ceiling {
            validate_ceiling(ceiling)?;
        }
        let hash = credential::parse_hash(&entry.credential_hash)
            .ok_or(RegistryError::InvalidCredentialHash)?;
        let entry = normalise(entry)?;
        match &mut *self.write() {
            State::Standalone(_) => Err(RegistryError::Standalone),
            State::Controlled(sandboxes) => sandboxes.upsert(entry, hash, member),
        }
    }

    /// Replaces the standalone default policy (e.g. on a reload). Clients identified before keep
    /// their old policy for the request in flight, and their revocation token fires so the proxy
    /// closes tunnels opened under the old policy. The shared budget is kept with the new limits.
    pub fn replace_default_policy(&self, policy: Arc<Policy>) -> Result<(), RegistryError> {
        let mut state = self.write();
        let State::Standalone(slot) = &mut *state else {
            return Err(RegistryError::Controlled);
        };
        let mut entry = slot.entry.clone();
        entry.policy = policy;
        entry.generation += 1;
        slot.replace(entry, [0; 32]);
        Ok(())
    }

    /// Removes a sandbox and cancels its token. Returns whether it was registered.
    pub fn remove(&self, sandbox_id: &str) -> bool {
        match &mut *self.write() {
            State::Standalone(_) => false,
            State::Controlled(sandboxes) => sandboxes.remove(sandbox_id),
        }
    }

    /// The registered sandbox entry for `sandbox_id` (controlled mode only).
    pub fn get(&self, sandbox_id: &str) -> Option<SandboxEntry> {
        match &*self.read() {
            State::Standalone(_) => None,
            State::Controlled(sandboxes) => {
                sandboxes.by_id.get(sandbox_id).map(|s| s.entry.clone())
            }
        }
    }

    /// The budget of `sandbox_id` (controlled mode), to report its usage.
    pub fn budget(&self, sandbox_id: &str) -> Option<Arc<Budget>> {
        match &*self.read() {
            State::Standalone(_) => None,
            State::Controlled(sandboxes) => sandboxes
                .by_id
                .get(sandbox_id)
                .map(|s| Arc::clone(&s.budget)),
        }
    }

    /// Every registered sandbox, sorted by id (empty in standalone mode).
    pub fn list(&self) -> Vec<SandboxSummary> {
        let state = self.read();
        let State::Controlled(sandboxes) = &*state else {
            return Vec::new();
        };
        let mut rows: Vec<SandboxSummary> = sandboxes
            .by_id
            .values()
            .map(|slot| SandboxSummary {
                sandbox_id: slot.entry.sandbox_id.clone(),
                generation: slot.entry.generation,
                source_addrs: slot.entry.source_addrs.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.sandbox_id.cmp(&b.sandbox_id));
        rows
    }

    /// How many sandboxes are registered (0 in standalone mode).
    pub fn len(&self) -> usize {
        match &*self.read() {
            State::Standalone(_) => 0,
            State::Controlled(sandboxes) => sandboxes.by_id.len(),
        }
    }

    /// Whether no sandbox is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A poisoned lock only means a writer panicked mid-update; every update here is applied as a
    // whole before any call that could panic, so the data is still consistent.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("boot_id", &self.boot_id)
            .field("controlled", &self.is_controlled())
            .field("sandboxes", &self.len())
            .finish()
    }
}

// === impl SandboxEntry ===

impl fmt::Debug for SandboxEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxEntry")
            .field("sandbox_id", &self.sandbox_id)
            .field("source_addrs", &self.source_addrs)
            .field("credential_hash", &"***")
            .field("policy_spec", &self.policy_spec)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

// === helpers ===

/// Checks a sandbox id: 1..=128 characters of `[A-Za-z0-9._-]` (so never a `:`, which would
/// make the Basic credential ambiguous, nor a `/`, which would break the admin route).
pub fn validate_sandbox_id(id: &str) -> Result<(), RegistryError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SANDBOX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidSandboxId)
    }
}

/// Checks a ceiling label: 1..=128 printable ASCII characters (it goes into log lines and
/// JSON as it is).
pub fn validate_ceiling(label: &str) -> Result<(), RegistryError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_CEILING_LEN
        && label.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidCeiling)
    }
}

#[cfg(test)]
mod tests;
