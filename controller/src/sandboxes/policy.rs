//! `UpdatePolicy`: a live sandbox's new egress policy, resolved under the caller's ceiling,
//! pushed to the proxy with a bumped generation (the proxy closes tunnels opened under the
//! old one), and audited.

use tracing::info;

use super::{SandboxError, Sandboxes};
use crate::audit::{status, Actor, Command, Entry};
use crate::egress::{EgressPolicy, TenantPolicy};
use crate::sandbox::SandboxId;
use crate::store::{EgressEntry, Sandbox};

/// `PUT /v1/sandboxes/{id}/policy`: replaces the policy of a live sandbox the caller may see.
#[derive(Clone, Debug)]
pub struct UpdatePolicy {
    /// The sandbox.
    pub id: SandboxId,
    /// The policy as the caller wrote it; absent fields come from the ceiling's default.
    pub policy: TenantPolicy,
}

/// What [`UpdatePolicy`] did.
#[derive(Clone, Debug)]
pub struct PolicyUpdated {
    /// The sandbox as it now is.
    pub sandbox: Sandbox,
    /// Its new proxy entry (hash and generation).
    pub entry: EgressEntry,
    /// The effective policy it now runs under.
    pub policy: EgressPolicy,
}

// === impl UpdatePolicy ===

impl Command<Sandboxes> for UpdatePolicy {
    type Output = PolicyUpdated;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<PolicyUpdated, SandboxError> {
        let (scope, id) = (actor.scope(), self.id);
        let sandbox = sandboxes.visible(scope, id).await?;
        let authority = &sandboxes.peers.policy;
        let (policy, ceiling) = authority
            .effective_policy(actor, Some(&self.policy))
            .await?;
        // The credential endpoints come from the bindings made at create, never from the
        // caller's policy; the new policy must still admit their hosts.
        let policy = sandboxes.rebind(&sandbox, policy).await?;
        let Some(plane) = &sandboxes.egress else {
            let message = "the egress plane is off (AIRLOCK_EGRESS=false)";
            return Err(SandboxError::Conflict(message.to_owned()));
        };
        if sandbox.state.is_terminal() {
            return Err(SandboxError::Conflict(format!(
                "the sandbox has ended (state: {})",
                sandbox.state.as_str()
            )));
        }
        let entry = plane
            .update_policy(id, &policy, &ceiling.label)
            .await?
            .ok_or_else(|| {
                let message = "the sandbox does not run behind the egress proxy";
                SandboxError::Conflict(message.to_owned())
            })?;
        info!(
            sandbox.id = %id,
            policy.hash = %entry.policy_hash,
            policy.generation = entry.generation,
            policy.ceiling = %ceiling.label,
            "Egress policy updated"
        );
        let sandbox = sandboxes.visible(scope, id).await?;
        let entry_row = Entry::new("PUT /v1/sandboxes/{id}/policy", status::OK).object(id);
        sandboxes.peers.audit.record(actor, entry_row).await;
        Ok(PolicyUpdated {
            sandbox,
            entry,
            policy,
        })
    }
}
