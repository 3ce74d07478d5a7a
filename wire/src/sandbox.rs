//! A sandbox's entry on the proxy: what the controller pushes (`PUT /v1/sandboxes/{id}`,
//! [`PutSandbox`]) and what the proxy answers about its entries ([`PutSandboxReply`],
//! `GET /v1/sandboxes` → [`SandboxList`], `GET /v1/sandboxes/{id}` → [`SandboxDetail`]).
//!
//! The field order of [`SandboxList`] and [`ListedSandbox`] is alphabetical because that is the
//! order the proxy has always written them in.

use std::fmt;
use std::net::IpAddr;

use airlock_egress_policy::PolicySpec;
use serde::{Deserialize, Serialize};

/// `PUT /v1/sandboxes/{id}`: a sandbox's source addresses, credential, policy and generation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSandbox {
    /// The sandbox id, when the body names it; it must then equal the one in the path. The
    /// controller leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    /// Source addresses the sandbox connects from.
    pub source_addrs: Vec<IpAddr>,
    /// Lowercase hex SHA-256 of the sandbox's proxy token (never the token).
    pub credential_hash: String,
    /// The effective policy; absent or `null` means the proxy's default policy.
    #[serde(default)]
    pub policy: Option<PolicySpec>,
    /// The controller's generation counter for the sandbox: older is refused, equal is
    /// idempotent, newer replaces the entry.
    pub generation: u64,
    /// The label of the operator ceiling the policy was checked against; the proxy stamps it
    /// on every ledger event of the sandbox. Sent only when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<String>,
    /// What the policy's inspected endpoints need: the sandbox's inspection CA and the values
    /// of the credentials they bind. Sent only over the mTLS admin API, only when the policy
    /// has endpoints; never stored by the proxy beyond the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection: Option<PutInspection>,
    /// The pool member this entry claims ([`crate::member`]): the proxy replaces the member's
    /// unbound registration with this entry in one step, on the same source addresses. Sent
    /// only for a claim; a push without it is a plain push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// The secret half of an inspected sandbox's entry. `Debug` shows only the credential names.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutInspection {
    /// The sandbox's inspection CA certificate (PEM).
    pub ca_cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub ca_key_pem: String,
    /// Credential values by secret name.
    #[serde(default)]
    pub credentials: std::collections::BTreeMap<String, String>,
    /// Lowercase hex SHA-256 of the sandbox's gateway token (the token in its placeholders,
    /// [`crate::gateway`]); without it the proxy's gateway admits none of its requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_hash: Option<String>,
}

impl fmt::Debug for PutInspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutInspection")
            .field("ca_key_pem", &"***")
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The answer to `PUT /v1/sandboxes/{id}` (201 when created, else 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutSandboxReply {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The generation now registered.
    pub generation: u64,
    /// What the push did.
    pub outcome: PutOutcome,
    /// The proxy process that holds the entry.
    pub boot_id: String,
}

/// What a push did to the proxy's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutOutcome {
    /// A new sandbox was registered.
    Created,
    /// A newer generation replaced the old one (whose connections are closed).
    Replaced,
    /// The same generation with the same content was already registered.
    Unchanged,
}

/// `GET /v1/sandboxes`: every registered entry, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxList {
    /// The proxy process.
    #[serde(default)]
    pub boot_id: String,
    /// The entries.
    pub sandboxes: Vec<ListedSandbox>,
}

/// One row of [`SandboxList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSandbox {
    /// The registered generation.
    pub generation: u64,
    /// The sandbox id.
    pub sandbox_id: String,
    /// The registered source addresses.
    #[serde(default)]
    pub source_addrs: Vec<IpAddr>,
}

/// `GET /v1/sandboxes/{id}`: one entry with its policy and its budget's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxDetail {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The registered generation.
    pub generation: u64,
    /// The registered source addresses.
    pub source_addrs: Vec<IpAddr>,
    /// The policy as pushed (the default policy's object when none was).
    pub policy: PolicySpec,
    /// The ceiling label, if one was pushed.
    pub ceiling: Option<String>,
    /// Bytes the sandbox has moved in this proxy process.
    pub bytes_used: u64,
    /// Connections the sandbox holds open now.
    pub open_connections: u64,
}

// === impl PutSandbox ===

impl fmt::Debug for PutSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutSandbox")
            .field("sandbox_id", &self.sandbox_id)
            .field("source_addrs", &self.source_addrs)
            .field("credential_hash", &"***")
            .field("policy", &self.policy)
            .field("generation", &self.generation)
            .field("ceiling", &self.ceiling)
            .field("inspection", &self.inspection)
            .field("member", &self.member)
            .finish()
    }
}

// === impl PutOutcome ===

impl PutOutcome {
    /// `created`, `replaced` or `unchanged`, as in the JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replaced => "replaced",
            Self::Unchanged => "unchanged",
        }
    }
}

#[cfg(test)]
mod tests;
