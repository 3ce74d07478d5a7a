//! Operator ceilings (DESIGN.md invariant 10): what a tenant's egress policy may admit, per
//! role (`admin`, `member`, `viewer`) with a per-user override, and each role's default policy.
//! Pure: parsing, resolving and checking; the document lives in the store
//! (`store::ceilings`) and is imported from `AIRLOCK_POLICY_FILE`.
//!
//! The document (every field optional):
//! ```json
//! {"roles": {"member": {"allow_cidrs": [], "ports": ["1-65535"], "report_mode": false,
//!                       "allow_public": true, "default_policy": {"allow_public": true}}},
//!  "users": {"alice@example.com": {"allow_cidrs": ["10.50.0.0/16"]}}}
//! ```
//! Defaults: no non-global CIDR, every port, report mode for admins only, `allow_public`
//! admissible, and the built-in default policy (`AIRLOCK_DEFAULT_POLICY`). A user override is
//! keyed by email (case-insensitive) or user id; its present fields replace the role's.
//!
//! Invariant: every default policy a resolved ceiling can hand out satisfies that ceiling
//! (checked when a document is accepted), so a tenant who sends no policy is never refused.

mod check;
mod port;
#[cfg(test)]
mod tests;

pub use check::{check, CeilingExceeded, PolicyRefusal};
pub use port::PortRange;

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::policy::{hex_sha256, EgressPolicy, TenantPolicy};
use crate::accounts::user::{Role, UserId};

/// What a sandbox gets when neither the tenant nor the ceiling says otherwise
/// (`AIRLOCK_DEFAULT_POLICY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Every public destination on ports 80 and 443 (`{"allow_public": true}`).
    #[default]
    Public,
    /// Nothing until an allow-list is set (`{"allow_public": false, "allow_domains": []}`).
    Deny,
}

/// The ceilings document as written (the wire and stored form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingsDoc {
    /// Per role: `admin`, `member`, `viewer`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, CeilingFields>,
    /// Per user, by email or user id: overrides of the role's fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, CeilingFields>,
}

/// One role's ceiling or one user's override, as written; absent fields fall back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingFields {
    /// The non-global CIDRs a policy may name (a global CIDR is always admissible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_cidrs: Option<Vec<IpNet>>,
    /// Admissible destination ports: numbers or `"a-b"` ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
    /// Whether `mode: report` is admissible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_mode: Option<bool>,
    /// Whether `allow_public: true` is admissible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public: Option<bool>,
    /// The default policy (a policy object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<Value>,
}

/// A validated document, ready to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceilings {
    doc: CeilingsDoc,
    default: DefaultPolicy,
}

/// One resolved ceiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceiling {
    /// Admissible non-global CIDRs.
    pub allow_cidrs: Vec<IpNet>,
    /// Admissible ports.
    pub ports: Vec<PortRange>,
    /// Whether report mode is admissible.
    pub report_mode: bool,
    /// Whether `allow_public: true` is admissible.
    pub allow_public: bool,
    /// The default policy.
    pub default_policy: TenantPolicy,
}

/// The ceiling that applies to one caller, with the label the proxy stamps on its events:
/// `role:<role>@<hash8>` or `user:<user id>@<hash8>` (the hash is of the resolved ceiling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCeiling {
    /// The ceiling.
    pub ceiling: Ceiling,
    /// Its label.
    pub label: String,
}

/// A document that cannot be accepted: the field (`roles.member.ports[0]`) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CeilingsError {
    /// The offending field's path in the document.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

// === impl DefaultPolicy ===

impl DefaultPolicy {
    /// The policy object.
    pub fn policy(self) -> TenantPolicy {
        let value = match self {
            Self::Public => json!({"allow_public": true}),
            Self::Deny => json!({"allow_public": false, "allow_domains": []}),
        };
        // Both literals are valid policies; the fallback is never taken.
        TenantPolicy::parse(value).unwrap_or_default()
    }

    /// `public` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Deny => "deny",
        }
    }
}

// === impl Ceilings ===

impl Ceilings {
    /// No document: the defaults for every role.
    pub fn builtin(default: DefaultPolicy) -> Self {
        Self {
            doc: CeilingsDoc::default(),
            default,
        }
    }

    /// Parses and validates a document's JSON text (the error names the field).
    pub fn parse(text: &str, default: DefaultPolicy) -> Result<Self, CeilingsError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let doc: CeilingsDoc =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let field = error.path().to_string();
                let reason = error.into_inner().to_string();
                CeilingsError { field, reason }
            })?;
        Self::new(doc, default)
    }

    /// Validates a document: known roles, user keys that are emails or ids, valid default
    /// policies, and every resolvable default policy within its ceiling.
    pub fn new(doc: CeilingsDoc, default: DefaultPolicy) -> Result<Self, CeilingsError> {
        let doc = normalise(doc)?;
        let ceilings = Self { doc, default };
        ceilings.validate_against(&[])?;
        Ok(ceilings)
    }

    /// Checks every default policy the document can hand out against its ceiling and the
    /// deployment's own address space `infra` (a default naming infrastructure could never
    /// take effect).
    pub fn validate_against(&self, infra: &[IpNet]) -> Result<(), CeilingsError> {
        for role in Role::ALL {
            self.validate(role, None, infra)?;
            for key in self.doc.users.keys() {
                self.validate(role, Some(key), infra)?;
            }
        }
        Ok(())
    }

    /// The document (keys normalised).
    pub fn doc(&self) -> &CeilingsDoc {
        &self.doc
    }

    /// The ceiling for a caller acting with `role`: the user's override (by id, else by email)
    /// over the role's.
    pub fn for_user(&self, role: Role, user: UserId, email: &str) -> AppliedCeiling {
        let by_id = self.doc.users.get(&user.to_string());
        let key = match by_id {
            Some(_) => Some(user.to_string()),
            None => Some(email.to_lowercase()).filter(|e| self.doc.users.contains_key(e)),
        };
        match key {
            Some(key) => self.applied(role, Some(&key), &format!("user:{user}")),
            None => self.for_role(role),
        }
    }

    /// The role's ceiling, without user overrides.
    pub fn for_role(&self, role: Role) -> AppliedCeiling {
        self.applied(role, None, &format!("role:{role}"))
    }

    fn applied(&self, role: Role, user: Option<&str>, who: &str) -> AppliedCeiling {
        // Validated in `new`, so resolving cannot fail; should it, the closed ceiling applies.
        let ceiling = self.resolve(role, user).unwrap_or_else(|_| Self::closed());
        let hash = hex_sha256(&ceiling.to_value().to_string());
        AppliedCeiling {
            label: format!("{who}@{}", &hash[..8]),
            ceiling,
        }
    }

    fn resolve(&self, role: Role, user: Option<&str>) -> Result<Ceiling, CeilingsError> {
        let empty = CeilingFields::default();
        let base = self.doc.roles.get(role.as_str()).unwrap_or(&empty);
        let over = user.and_then(|u| self.doc.users.get(u)).unwrap_or(&empty);
        let fields = over.clone().or(base);
        let allow_public = fields.allow_public.unwrap_or(true);
        let default_policy = match fields.default_policy {
            Some(value) => TenantPolicy::parse(value).map_err(|reason| CeilingsError {
                field: field_of(role, user, "default_policy"),
                reason,
            })?,
            // A ceiling that refuses `allow_public` cannot hand out the public default.
            None if !allow_public => DefaultPolicy::Deny.policy(),
            None => self.default.policy(),
        };
        Ok(Ceiling {
            allow_cidrs: fields.allow_cidrs.unwrap_or_default(),
            ports: fields.ports.unwrap_or_else(|| vec![PortRange::ALL]),
            report_mode: fields.report_mode.unwrap_or(role == Role::Admin),
            allow_public,
            default_policy,
        })
    }

    /// The narrowest ceiling: no non-global CIDR, no report mode, no `allow_public`, and
    /// nothing by default.
    fn closed() -> Ceiling {
        Ceiling {
            allow_cidrs: Vec::new(),
            ports: vec![PortRange::ALL],
            report_mode: false,
            allow_public: false,
            default_policy: DefaultPolicy::Deny.policy(),
        }
    }

    /// Whether the role's (and the user's) default policy satisfies the resolved ceiling.
    fn validate(
        &self,
        role: Role,
        user: Option<&String>,
        infra: &[IpNet],
    ) -> Result<(), CeilingsError> {
        let ceiling = self.resolve(role, user.map(String::as_str))?;
        let applied = AppliedCeiling {
            label: String::new(),
            ceiling,
        };
        let default = &applied.ceiling.default_policy;
        let policy = EgressPolicy::effective(default, default);
        check(&applied, &policy, infra).map_err(|refusal| CeilingsError {
            field: field_of(role, user.map(String::as_str), "default_policy"),
            reason: format!(
                "the {role} default policy does not satisfy its own ceiling: {}",
                refusal.describe()
            ),
        })
    }
}

// === impl CeilingFields ===

impl CeilingFields {
    /// These fields, each absent one taken from `base`.
    fn or(self, base: &CeilingFields) -> CeilingFields {
        CeilingFields {
            allow_cidrs: self.allow_cidrs.or_else(|| base.allow_cidrs.clone()),
            ports: self.ports.or_else(|| base.ports.clone()),
            report_mode: self.report_mode.or(base.report_mode),
            allow_public: self.allow_public.or(base.allow_public),
            default_policy: self.default_policy.or_else(|| base.default_policy.clone()),
        }
    }
}

// === impl Ceiling ===

impl Ceiling {
    /// The resolved ceiling as JSON (also what its label's hash is taken of).
    pub fn to_value(&self) -> Value {
        json!({
            "allow_cidrs": self.allow_cidrs,
            "ports": self.ports,
            "report_mode": self.report_mode,
            "allow_public": self.allow_public,
            "default_policy": self.default_policy.to_value(),
        })
    }

    /// Whether `port` is admissible.
    pub fn admits_port(&self, port: u16) -> bool {
        self.ports.iter().any(|range| range.contains(port))
    }
}

/// Checks role names and lower-cases emails and ids among the user keys.
fn normalise(mut doc: CeilingsDoc) -> Result<CeilingsDoc, CeilingsError> {
    if let Some(role) = doc.roles.keys().find(|r| r.parse::<Role>().is_err()) {
        return Err(CeilingsError {
            field: format!("roles.{role}"),
            reason: "not a role: admin, member or viewer".to_owned(),
        });
    }
    let mut users = BTreeMap::new();
    for (key, fields) in std::mem::take(&mut doc.users) {
        let normal = match key.parse::<uuid::Uuid>() {
            Ok(id) => id.to_string(),
            Err(_not_an_id) if key.contains('@') && !key.contains(char::is_whitespace) => {
                key.to_lowercase()
            }
            Err(_not_an_id) => {
                return Err(CeilingsError {
                    field: format!("users.{key}"),
                    reason: "a user key is an email address or a user id".to_owned(),
                })
            }
        };
        if users.insert(normal, fields).is_some() {
            return Err(CeilingsError {
                field: format!("users.{key}"),
                reason: "the same user appears twice".to_owned(),
            });
        }
    }
    doc.users = users;
    // Written as `10.50.1.2/16`, a CIDR means its network.
    for fields in doc.roles.values_mut().chain(doc.users.values_mut()) {
        if let Some(cidrs) = &mut fields.allow_cidrs {
            cidrs.iter_mut().for_each(|net| *net = net.trunc());
        }
    }
    Ok(doc)
}

fn field_of(role: Role, user: Option<&str>, field: &str) -> String {
    match user {
        Some(user) => format!("users.{user}.{field}"),
        None => format!("roles.{role}.{field}"),
    }
}
