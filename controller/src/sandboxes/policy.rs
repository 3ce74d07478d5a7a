//! The egress policy authority (DESIGN.md invariant 10): the effective policy of a create or
//! a policy change (the caller's fields over the applicable default, checked against the
//! applicable ceiling and the deployment's own address space), and the ceilings document
//! admins read and replace.
//!
//! The ceiling that applies is the acting caller's: their role as this request acts with it
//! (a narrowed token narrows it) and their user override.

use std::path::PathBuf;

use ipnet::IpNet;
use time::OffsetDateTime;
use tracing::info;

use super::{SandboxService, ServiceError};
use crate::accounts::user::{Role, UserId};
use crate::config::PolicyConfig;
use crate::egress::ceilings::{self, AppliedCeiling, Ceilings, CeilingsDoc, DefaultPolicy};
use crate::egress::infrastructure;
use crate::egress::{EgressPolicy, TenantPolicy};
use crate::store::{CeilingsSource, Store, StoreError, StoredCeilings};

/// Who asks for a policy: the ceiling is theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyActor {
    /// The user.
    pub user: UserId,
    /// The role the request acts with.
    pub role: Role,
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

// === impl SandboxService ===

impl SandboxService {
    /// The effective policy for `requested` (`None`: the default) and the ceiling it was
    /// checked against; a refusal names the field.
    pub(crate) async fn effective_policy(
        &self,
        actor: PolicyActor,
        requested: Option<&TenantPolicy>,
    ) -> Result<(EgressPolicy, AppliedCeiling), ServiceError> {
        let ceilings = self.load_ceilings().await?.0;
        let email = self
            .store
            .get_user(actor.user)
            .await?
            .map(|user| user.email)
            .unwrap_or_default();
        let applied = ceilings.for_user(actor.role, actor.user, &email);
        let absent = TenantPolicy::default();
        let requested = requested.unwrap_or(&absent);
        let policy = EgressPolicy::effective(requested, &applied.ceiling.default_policy);
        ceilings::check(&applied, &policy, &self.infrastructure())
            .map_err(ServiceError::PolicyRefused)?;
        Ok((policy, applied))
    }

    /// The deployment's own address space: the plane's last computation, or (with the plane
    /// off) what the configuration alone gives.
    pub fn infrastructure(&self) -> Vec<IpNet> {
        match &self.egress {
            Some(plane) => plane.infrastructure(),
            None => infrastructure::compute(&self.settings.infrastructure),
        }
    }

    /// The ceilings, their source and the infrastructure list.
    pub async fn ceilings_view(&self) -> Result<CeilingsView, ServiceError> {
        let (ceilings, stored) = self.load_ceilings().await?;
        let policy = &self.settings.policy;
        Ok(CeilingsView {
            source: stored.as_ref().map_or("default", |s| s.source.as_str()),
            file: policy.file.as_ref().map(|f| f.path.clone()),
            file_sha256: stored.as_ref().and_then(|s| s.file_sha256.clone()),
            updated_by: stored.as_ref().and_then(|s| s.updated_by),
            updated_at: stored.as_ref().map(|s| s.updated_at),
            default_policy: policy.default,
            ceilings,
            infrastructure: self.infrastructure(),
        })
    }

    /// Replaces the ceilings document as `by`'s edit; returns the document it replaced (its
    /// JSON, `None` for the built-in defaults) and the new view.
    pub async fn put_ceilings(
        &self,
        by: UserId,
        doc: CeilingsDoc,
    ) -> Result<(Option<String>, CeilingsView), ServiceError> {
        let ceilings =
            Ceilings::new(doc, self.settings.policy.default).map_err(ServiceError::Ceilings)?;
        ceilings
            .validate_against(&self.infrastructure())
            .map_err(ServiceError::Ceilings)?;
        let document = serde_json::to_string(ceilings.doc())
            .map_err(|e| ServiceError::Store(StoreError::corrupt("policy_ceilings.document", e)))?;
        let before = self.store.replace_ceilings(&document, by).await?;
        info!(user.id = %by, "Policy ceilings replaced");
        Ok((before.map(|b| b.document), self.ceilings_view().await?))
    }

    async fn load_ceilings(&self) -> Result<(Ceilings, Option<StoredCeilings>), ServiceError> {
        let default = self.settings.policy.default;
        let Some(stored) = self.store.ceilings().await? else {
            return Ok((Ceilings::builtin(default), None));
        };
        // Every stored document was validated before it was written; one that no longer
        // parses is refused (fail closed) rather than replaced by the permissive defaults.
        let ceilings = Ceilings::parse(&stored.document, default).map_err(|error| {
            ServiceError::Store(StoreError::corrupt("policy_ceilings.document", error))
        })?;
        Ok((ceilings, Some(stored)))
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
