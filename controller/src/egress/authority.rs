//! The egress policy authority (DESIGN.md invariant 10): the effective policy of a create or
//! a policy change (the caller's fields over the applicable default, checked against the
//! applicable ceiling and the deployment's own address space), and the ceilings document
//! admins read and replace (`GetCeilings`, `PutCeilings`, `GetInfrastructure`).
//!
//! The ceiling that applies is the acting caller's: their role as this request acts with it
//! (a narrowed token narrows it) and their user override.

use std::path::PathBuf;

use ipnet::IpNet;
use time::OffsetDateTime;
use tracing::info;

use serde_json::{json, Value};

use super::ceilings::{
    self, AppliedCeiling, Ceilings, CeilingsDoc, CeilingsError, DefaultPolicy, PolicyRefusal,
};
use super::infrastructure::{self, InfraSources};
use super::{EgressPlane, EgressPolicy, TenantPolicy};
use crate::accounts::user::UserId;
use crate::accounts::ADMIN_REQUIRED;
use crate::audit::{status, Actor, AuditLog, Command, Entry};
use crate::config::PolicyConfig;
use crate::store::{CeilingsSource, Store, StoreError, StoredCeilings};

/// The policy authority; cheap to clone.
#[derive(Clone, Debug)]
pub struct PolicyAuthority {
    store: Store,
    audit: AuditLog,
    plane: Option<EgressPlane>,
    policy: PolicyConfig,
    infrastructure: InfraSources,
}

/// `GET /v1/policy/ceilings` (admins): the ceilings, where they came from, what they resolve
/// to, and the infrastructure list.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetCeilings;

/// `PUT /v1/policy/ceilings` (admins): replaces the ceilings document. A role's default
/// policy must satisfy its own ceiling.
#[derive(Clone, Debug)]
pub struct PutCeilings {
    /// The new document.
    pub doc: CeilingsDoc,
}

/// `GET /v1/policy/infrastructure` (admins): the deployment's own address space.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetInfrastructure;

/// Why a policy or ceilings command failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy is beyond the applicable ceiling, or names what can never take effect.
    #[error("{}", .0.describe())]
    Refused(PolicyRefusal),
    /// A ceilings document that cannot be accepted.
    #[error(transparent)]
    Ceilings(CeilingsError),
    /// Only admins read and replace the ceilings.
    #[error("{ADMIN_REQUIRED}")]
    Forbidden,
    /// The store failed (or holds a document that no longer parses).
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The ceilings as an admin sees them.
#[derive(Clone, Debug)]
pub struct CeilingsView {
    /// `default` (nothing stored), `file` or `api`.
    pub source: &'static str,
    /// `AIRLOCK_POLICY_FILE`, when set.
    pub file: Option<PathBuf>,
    /// SHA-256 of the last imported file.
    pub file_sha256: Option<String>,
    /// The admin who wrote the document (API writes).
    pub updated_by: Option<UserId>,
    /// When it was written.
    pub updated_at: Option<OffsetDateTime>,
    /// `AIRLOCK_DEFAULT_POLICY`.
    pub default_policy: DefaultPolicy,
    /// The document and what it resolves to.
    pub ceilings: Ceilings,
    /// The deployment's own address space, as last computed.
    pub infrastructure: Vec<IpNet>,
}

// === impl PolicyAuthority ===

impl PolicyAuthority {
    /// The authority over `store`'s ceilings, with the operator's `policy` configuration and
    /// `infrastructure` sources; `plane` (when on) knows the live infrastructure list.
    pub fn new(
        store: Store,
        audit: AuditLog,
        policy: PolicyConfig,
        infrastructure: InfraSources,
    ) -> Self {
        Self {
            store,
            audit,
            plane: None,
            policy,
            infrastructure,
        }
    }

    /// The same authority, reading the infrastructure list from `plane`.
    pub fn with_plane(mut self, plane: EgressPlane) -> Self {
        self.plane = Some(plane);
        self
    }

    /// Runs `command` for `actor`.
    pub async fn run<C: Command<Self>>(
        &self,
        actor: &Actor,
        command: C,
    ) -> Result<C::Output, C::Error> {
        command.execute(self, actor).await
    }

    /// The effective policy for `requested` (`None`: the default) under `actor`'s ceiling,
    /// and that ceiling; a refusal names the field.
    pub(crate) async fn effective_policy(
        &self,
        actor: &Actor,
        requested: Option<&TenantPolicy>,
    ) -> Result<(EgressPolicy, AppliedCeiling), PolicyError> {
        let ceilings = self.load_ceilings().await?.0;
        let user = actor.user().unwrap_or_default();
        let email = self
            .store
            .get_user(user)
            .await?
            .map(|user| user.email)
            .unwrap_or_default();
        let applied = ceilings.for_user(actor.role(), user, &email);
        let absent = TenantPolicy::default();
        let requested = requested.unwrap_or(&absent);
        let policy = EgressPolicy::effective(requested, &applied.ceiling.default_policy);
        ceilings::check(&applied, &policy, &self.infrastructure()).map_err(PolicyError::Refused)?;
        Ok((policy, applied))
    }

    /// The deployment's own address space: the plane's last computation, or (with the plane
    /// off) what the configuration alone gives.
    pub fn infrastructure(&self) -> Vec<IpNet> {
        match &self.plane {
            Some(plane) => plane.infrastructure(),
            None => infrastructure::compute(&self.infrastructure),
        }
    }

    /// The ceilings, their source and the infrastructure list.
    async fn view(&self) -> Result<CeilingsView, PolicyError> {
        let (ceilings, stored) = self.load_ceilings().await?;
        Ok(CeilingsView {
            source: stored.as_ref().map_or("default", |s| s.source.as_str()),
            file: self.policy.file.as_ref().map(|f| f.path.clone()),
            file_sha256: stored.as_ref().and_then(|s| s.file_sha256.clone()),
            updated_by: stored.as_ref().and_then(|s| s.updated_by),
            updated_at: stored.as_ref().map(|s| s.updated_at),
            default_policy: self.policy.default,
            ceilings,
            infrastructure: self.infrastructure(),
        })
    }

    async fn load_ceilings(&self) -> Result<(Ceilings, Option<StoredCeilings>), PolicyError> {
        let default = self.policy.default;
        let Some(stored) = self.store.ceilings().await? else {
            return Ok((Ceilings::builtin(default), None));
        };
        // Every stored document was validated before it was written; one that no longer
        // parses is refused (fail closed) rather than replaced by the permissive defaults.
        let ceilings = Ceilings::parse(&stored.document, default)
            .map_err(|error| StoreError::corrupt("policy_ceilings.document", error))?;
        Ok((ceilings, Some(stored)))
    }
}

fn require_admin(actor: &Actor) -> Result<(), PolicyError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(PolicyError::Forbidden)
    }
}

// === impl GetCeilings ===

impl Command<PolicyAuthority> for GetCeilings {
    type Output = CeilingsView;
    type Error = PolicyError;

    async fn execute(
        self,
        authority: &PolicyAuthority,
        actor: &Actor,
    ) -> Result<CeilingsView, PolicyError> {
        require_admin(actor)?;
        authority.view().await
    }
}

// === impl PutCeilings ===

impl Command<PolicyAuthority> for PutCeilings {
    type Output = CeilingsView;
    type Error = PolicyError;

    /// Files the row with the document before and after (the built-in defaults are `null`).
    async fn execute(
        self,
        authority: &PolicyAuthority,
        actor: &Actor,
    ) -> Result<CeilingsView, PolicyError> {
        require_admin(actor)?;
        let by = actor.user().unwrap_or_default();
        let ceilings =
            Ceilings::new(self.doc, authority.policy.default).map_err(PolicyError::Ceilings)?;
        ceilings
            .validate_against(&authority.infrastructure())
            .map_err(PolicyError::Ceilings)?;
        let document = serde_json::to_string(ceilings.doc())
            .map_err(|e| StoreError::corrupt("policy_ceilings.document", e))?;
        let before = authority.store.replace_ceilings(&document, by).await?;
        info!(user.id = %by, "Policy ceilings replaced");
        let view = authority.view().await?;
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let detail = json!({
            "before": before.as_ref().map_or(Value::Null, |b| parse(&b.document)),
            "after": serde_json::to_value(view.ceilings.doc()).unwrap_or_default(),
        });
        let entry = Entry::new("PUT /v1/policy/ceilings", status::OK).detail(detail.to_string());
        authority.audit.record(actor, entry).await;
        Ok(view)
    }
}

// === impl GetInfrastructure ===

impl Command<PolicyAuthority> for GetInfrastructure {
    type Output = Vec<IpNet>;
    type Error = PolicyError;

    async fn execute(
        self,
        authority: &PolicyAuthority,
        actor: &Actor,
    ) -> Result<Vec<IpNet>, PolicyError> {
        require_admin(actor)?;
        Ok(authority.infrastructure())
    }
}

/// At start: imports `AIRLOCK_POLICY_FILE` when its content differs from the last import
/// (an admin's edit since then is replaced); returns whether it was imported.
pub async fn import_policy_file(store: &Store, policy: &PolicyConfig) -> Result<bool, StoreError> {
    let Some(file) = &policy.file else {
        return Ok(false);
    };
    let document = serde_json::to_string(file.ceilings.doc())
        .map_err(|e| StoreError::corrupt("policy_ceilings.document", e))?;
    let imported = store.import_ceilings_file(&document, &file.sha256).await?;
    let source = store.ceilings().await?.map(|s| s.source);
    info!(
        policy.file = %file.path.display(),
        policy.imported = imported,
        policy.source = source.map_or("default", CeilingsSource::as_str),
        "Policy ceilings file checked"
    );
    Ok(imported)
}
