//! Credentials at egress on the plane: the secret half of an inspected sandbox's push (its
//! CA key and bound secrets, opened for every push), and the sandboxes a changed secret
//! concerns (re-pushed under a new generation by [`EgressPlane::refresh`]).
//!
//! A secret can change while no controller pushes (or its refresh push failed): the proxy
//! then still holds the stored generation with the old content and refuses the same
//! generation with the new one (`generation_conflict`). [`EgressPlane::push_current`] meets
//! that refusal by bumping the stored generation and pushing again; a generation is never
//! lowered.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use airlock_egress_policy::{EndpointSpec, PolicySpec};
use airlock_wire::{ErrorBody, PutInspection};
use tracing::info;

use super::{EgressError, EgressPlane, Inner};
use crate::accounts::user::UserId;
use crate::sandbox::SandboxId;
use crate::secrets::Secrets;
use crate::store::EgressEntry;

/// A handle on the plane that does not keep it alive (the secrets service holds one, while
/// the plane holds the secrets service).
#[derive(Clone, Debug)]
pub struct WeakEgressPlane(Weak<Inner>);

// === impl WeakEgressPlane ===

impl WeakEgressPlane {
    /// The plane, while it still exists.
    pub fn upgrade(&self) -> Option<EgressPlane> {
        self.0.upgrade().map(|inner| EgressPlane { inner })
    }
}

/// The admin API's code for an equal generation pushed with other content.
const GENERATION_CONFLICT: &str = "generation_conflict";

/// Whether the proxy refused a push because it holds that generation with other content.
fn is_generation_conflict(error: &EgressError) -> bool {
    match error {
        EgressError::Admin { status, message } if *status == 409 => {
            serde_json::from_str::<ErrorBody>(message)
                .is_ok_and(|body| body.error == GENERATION_CONFLICT)
        }
        _ => false,
    }
}

/// Whether `entry`'s stored policy has an endpoint that binds secret `name`.
fn binds(entry: &EgressEntry, name: &str) -> bool {
    let policy = entry
        .policy
        .as_deref()
        .map(serde_json::from_str::<PolicySpec>);
    let Some(Ok(policy)) = policy else {
        return false;
    };
    policy
        .endpoints
        .iter()
        .flatten()
        .any(|e| e.credential.as_ref().is_some_and(|c| c.secret == name))
}

// === impl EgressPlane ===

impl EgressPlane {
    /// Gives the plane the secrets service that opens inspected sandboxes' CA keys and bound
    /// secrets (the first call wins; the services builder makes it).
    pub fn open_secrets_with(&self, secrets: Secrets) {
        let _already = self.inner.secrets.set(secrets);
    }

    /// The secret half of an inspected sandbox's push: its CA (key opened from the store)
    /// and the current value of every secret its endpoints bind, read again for each push.
    pub(super) async fn inspection(
        &self,
        id: SandboxId,
        endpoints: &[EndpointSpec],
    ) -> Result<PutInspection, EgressError> {
        let failed = |reason: String| EgressError::Inspection {
            sandbox: id,
            reason,
        };
        let secrets = self
            .inner
            .secrets
            .get()
            .ok_or_else(|| failed("secrets are not enabled".to_owned()))?;
        let row = self
            .inner
            .store
            .inspection(id)
            .await?
            .ok_or_else(|| failed("no inspection CA is stored".to_owned()))?;
        let ca_key_pem = secrets
            .open_inspection_key(row.owner, id, &row.ca_key_sealed)
            .map_err(|e| failed(e.to_string()))?;
        let mut credentials = BTreeMap::new();
        for name in endpoints
            .iter()
            .filter_map(|e| Some(&e.credential.as_ref()?.secret))
        {
            let value = secrets
                .open(row.owner, name)
                .await
                .map_err(|e| failed(e.to_string()))?
                .ok_or_else(|| failed(format!("the bound secret `{name}` no longer exists")))?;
            let value = String::from_utf8(value)
                .map_err(|_utf8| failed(format!("the bound secret `{name}` is not UTF-8")))?;
            credentials.insert(name.clone(), value);
        }
        Ok(PutInspection {
            ca_cert_pem: row.ca_cert_pem,
            ca_key_pem,
            credentials,
            gateway_hash: row.gateway_hash,
        })
    }

    /// A handle that does not keep the plane alive.
    pub fn downgrade(&self) -> WeakEgressPlane {
        WeakEgressPlane(Arc::downgrade(&self.inner))
    }

    /// `owner`'s live sandboxes whose endpoints bind secret `name`.
    pub async fn bound_to(&self, owner: UserId, name: &str) -> Result<Vec<SandboxId>, EgressError> {
        let entries = self.inner.store.live_inspected_entries(owner).await?;
        Ok(entries
            .into_iter()
            .filter(|entry| binds(entry, name))
            .map(|entry| entry.sandbox_id)
            .collect())
    }

    /// Pushes `entry`, and when the proxy holds its generation with other content, bumps the
    /// stored generation and pushes the current content under it (see the module docs).
    pub(super) async fn push_current(&self, entry: &EgressEntry) -> Result<(), EgressError> {
        match self.push(entry).await {
            Err(error) if is_generation_conflict(&error) => {
                info!(sandbox.id = %entry.sandbox_id, egress.generation = entry.generation,
                    "The proxy holds this generation with other content; pushing a new one");
                self.refresh(entry.sandbox_id).await
            }
            other => other,
        }
    }

    /// Pushes sandbox `id`'s entry again under a new generation with the current values of
    /// its bound secrets (the proxy closes the tunnels opened under the old one).
    pub async fn refresh(&self, id: SandboxId) -> Result<(), EgressError> {
        let store = &self.inner.store;
        let Some(entry) = store.get_egress_entry(id).await? else {
            return Ok(());
        };
        let bumped = store
            .update_egress_policy(
                id,
                entry.policy.as_deref(),
                &entry.policy_hash,
                entry.ceiling.as_deref(),
            )
            .await?;
        match bumped {
            Some(entry) => self.push(&entry).await,
            None => Ok(()),
        }
    }
}
