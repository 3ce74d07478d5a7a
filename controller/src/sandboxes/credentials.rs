//! Credentials at egress for one sandbox: a create's `credentials` bound to the owner's
//! secrets, the sandbox's own inspection CA, and the trust files it gets.
//!
//! 1. At reserve ([`Sandboxes::bind_credentials`]): every provider request expands to
//!    endpoints and placeholder variables ([`crate::egress::providers`]); every named secret
//!    must be one of the owner's (another user's is missing like an unknown one, 404); the
//!    endpoints join the effective policy, which must admit their hosts.
//! 2. At provision, before the proxy entry ([`Sandboxes::arm_inspection`]): a P-256 CA for
//!    the terminated hosts (name-constrained to them, valid until the deadline plus a day),
//!    its key sealed with the secrets key and stored with the bindings. The egress plane
//!    opens it, and the bound secrets' current values, for every push.
//! 3. In the binding frame, cold or warm alike: the CA certificate (`ca_pem`) and the trust
//!    variables. Init writes `/run/airlock/tls/ca.pem` and `bundle.pem` (the image's system
//!    bundle plus the CA) into the sandbox's own tmpfs before the workload starts
//!    ([`airlock_init::trust`]).
//!
//! Invariant: no secret value and no CA key reaches the container, a log line, the API or an
//! audit row; the sandbox sees only placeholders and the CA certificate.

use airlock_certs::mitm::InspectionCa;
use airlock_egress_policy::EndpointSpec;
use tracing::info;
use uuid::Uuid;

use super::{SandboxError, Sandboxes};
use crate::accounts::user::UserId;
use crate::egress::providers::{self, CredentialRequest};
use crate::egress::{hex_sha256, EgressPolicy};
use crate::sandbox::{FieldError, Problem};
use crate::secrets::SecretError;
use crate::store::{Sandbox, StoredInspection};

/// What a create's `credentials` bound: the requests (stored, to bind again on a policy
/// change) and the placeholder variables the sandbox gets.
#[derive(Clone, Debug)]
pub(super) struct Bound {
    requests: Vec<CredentialRequest>,
    /// `NAME` → placeholder value (and base URLs of gateways).
    pub(super) env: Vec<(String, String)>,
    /// The SHA-256 (hex) of the token in the placeholders: the gateway's proof of sender.
    gateway_hash: String,
}

// === impl Sandboxes ===

impl Sandboxes {
    /// Step 1: binds `requests` for `owner` into `policy`; `None` when there are none.
    pub(super) async fn bind_credentials(
        &self,
        owner: UserId,
        requests: &[CredentialRequest],
        policy: EgressPolicy,
    ) -> Result<(EgressPolicy, Option<Bound>), SandboxError> {
        if requests.is_empty() {
            return Ok((policy, None));
        }
        if self.egress.is_none() {
            return Err(SandboxError::EgressOff);
        }
        if !self.peers.secrets.enabled() {
            return Err(SecretError::Unavailable.into());
        }
        // A per-sandbox token in every placeholder: a placeholder names its sandbox to the
        // gateway, and one sandbox's is useless from another.
        let placeholder = Uuid::new_v4().simple().to_string();
        let binding = providers::bind(requests, &placeholder).map_err(SandboxError::Invalid)?;
        for name in &binding.secrets {
            if self.peers.secrets.open(owner, name).await?.is_none() {
                return Err(SecretError::NotFound.into());
            }
        }
        let policy = bound_policy(&policy, binding.endpoints)?;
        let bound = Bound {
            requests: requests.to_vec(),
            env: binding.env,
            gateway_hash: hex_sha256(&placeholder),
        };
        Ok((policy, Some(bound)))
    }

    /// `policy` with the endpoints of the sandbox's stored bindings, for a policy change
    /// (the bindings are never taken from the caller's policy).
    pub(super) async fn rebind(
        &self,
        sandbox: &Sandbox,
        policy: EgressPolicy,
    ) -> Result<EgressPolicy, SandboxError> {
        let Some(row) = self.store.inspection(sandbox.id).await? else {
            return Ok(policy);
        };
        let requests: Vec<CredentialRequest> = serde_json::from_str(&row.bindings)
            .map_err(|e| crate::store::StoreError::corrupt("sandbox_inspection.bindings", e))?;
        // The placeholder does not change the endpoints.
        let binding = providers::bind(&requests, "").map_err(SandboxError::Invalid)?;
        bound_policy(&policy, binding.endpoints)
    }

    /// Step 2: makes, seals and stores the sandbox's CA; returns its certificate (PEM).
    pub(super) async fn arm_inspection(
        &self,
        sandbox: &Sandbox,
        bound: &Bound,
        policy: &EgressPolicy,
    ) -> Result<String, SandboxError> {
        // A warm claim that failed after this step is retried cold: the same CA serves it.
        if let Some(stored) = self.store.inspection(sandbox.id).await? {
            return Ok(stored.ca_cert_pem);
        }
        let lifetime =
            time::Duration::try_from(sandbox.spec.timeout()).unwrap_or(time::Duration::days(365));
        let deadline = sandbox.created_at + lifetime;
        let hosts = policy.terminated_hosts();
        let ca = InspectionCa::generate(&sandbox.id.to_string(), &hosts, deadline)
            .map_err(|e| SandboxError::Conflict(format!("the inspection CA: {e}")))?;
        let sealed =
            self.peers
                .secrets
                .seal_inspection_key(sandbox.owner, sandbox.id, &ca.key_pem)?;
        let bindings = serde_json::to_string(&bound.requests)
            .map_err(|e| SandboxError::Conflict(format!("the bindings: {e}")))?;
        self.store
            .save_inspection(&StoredInspection {
                sandbox_id: sandbox.id,
                owner: sandbox.owner,
                ca_cert_pem: ca.cert_pem.clone(),
                ca_key_sealed: sealed,
                bindings,
                gateway_hash: Some(bound.gateway_hash.clone()),
            })
            .await?;
        info!(sandbox.id = %sandbox.id, inspection.hosts = hosts.len(), "Inspection CA made");
        Ok(ca.cert_pem)
    }
}

/// `policy` with the bound `endpoints`; a host the policy does not admit, or a binding the
/// proxy would refuse, is a 400 on `credentials`.
fn bound_policy(
    policy: &EgressPolicy,
    endpoints: Vec<EndpointSpec>,
) -> Result<EgressPolicy, SandboxError> {
    policy.with_endpoints(endpoints).map_err(|error| {
        SandboxError::Invalid(vec![FieldError {
            field: "credentials".to_owned(),
            problem: Problem::Refused(error.to_string()),
        }])
    })
}

/// Adds the placeholder variables of the bound credentials to the caller's environment; a
/// variable the caller set too is refused (`env.<NAME>` appears more than once).
pub(super) fn add_placeholders(
    env: &mut Vec<(String, String)>,
    placeholders: &[(String, String)],
) -> Result<(), SandboxError> {
    let taken: Vec<FieldError> = placeholders
        .iter()
        .filter(|(name, _)| env.iter().any(|(n, _)| n == name))
        .map(|(name, _)| FieldError {
            field: format!("env.{name}"),
            problem: Problem::Duplicate,
        })
        .collect();
    if !taken.is_empty() {
        return Err(SandboxError::Invalid(taken));
    }
    env.extend(placeholders.iter().cloned());
    Ok(())
}

/// `credentials provider:secret …` for the audit row; `None` when nothing is bound. The
/// provider as written (a preset fills an empty one later).
pub(super) fn bound_names(credentials: &[CredentialRequest]) -> Option<String> {
    if credentials.is_empty() {
        return None;
    }
    let names: Vec<String> = credentials
        .iter()
        .map(|c| format!("{}:{}", c.provider, c.secret))
        .collect();
    Some(format!("credentials {}", names.join(" ")))
}
