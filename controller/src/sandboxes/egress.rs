//! The sandbox service's network-plane operations, for the API: change a sandbox's policy,
//! read its ledger and summarise it. Visibility is the service's: another owner's sandbox is
//! not found.

use std::net::IpAddr;

use tracing::info;

use crate::egress::{EgressPolicy, TenantPolicy};
use crate::sandbox::SandboxId;
use crate::sandboxes::{PolicyActor, SandboxService, ServiceError};
use crate::store::{EgressEntry, EgressEvent, EgressQuery, HostSummary, Sandbox, Scope};

/// A sandbox's ledger summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressSummary {
    /// Per-host totals, busiest first.
    pub hosts: Vec<HostSummary>,
    /// Whether the sandbox's policy is in report mode.
    pub report_mode: bool,
    /// In report mode: the exact names that would have admitted every name seen (allowed or
    /// would-deny); address literals are left out (domain rules never admit them).
    pub suggested_allow_domains: Option<Vec<String>>,
}

// === impl SandboxService ===

impl SandboxService {
    /// Replaces the policy of a live sandbox `scope` may see with the effective policy of
    /// `requested` under `actor`'s ceiling: bumps its generation and pushes it (the proxy
    /// closes tunnels opened under the old one). Returns the sandbox, its new entry and the
    /// effective policy.
    pub async fn update_policy(
        &self,
        scope: Scope,
        actor: PolicyActor,
        id: SandboxId,
        requested: TenantPolicy,
    ) -> Result<(Sandbox, EgressEntry, EgressPolicy), ServiceError> {
        let sandbox = self.get(scope, id).await?;
        let (policy, ceiling) = self.effective_policy(actor, Some(&requested)).await?;
        let Some(plane) = self.egress() else {
            return Err(ServiceError::Conflict(
                "the egress plane is off (AIRLOCK_EGRESS=false)".to_owned(),
            ));
        };
        if sandbox.state.is_terminal() {
            return Err(ServiceError::Conflict(format!(
                "the sandbox has ended (state: {})",
                sandbox.state.as_str()
            )));
        }
        let entry = plane
            .update_policy(id, &policy, &ceiling.label)
            .await?
            .ok_or_else(|| {
                ServiceError::Conflict(
                    "the sandbox does not run behind the egress proxy".to_owned(),
                )
            })?;
        info!(
            sandbox.id = %id,
            policy.hash = %entry.policy_hash,
            policy.generation = entry.generation,
            policy.ceiling = %ceiling.label,
            "Egress policy updated"
        );
        let sandbox = self.get(scope, id).await?;
        Ok((sandbox, entry, policy))
    }

    /// The sandbox's egress entry, if `scope` may see the sandbox and it has one.
    pub async fn egress_entry(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<Option<EgressEntry>, ServiceError> {
        self.get(scope, id).await?;
        Ok(self.store().get_egress_entry(id).await?)
    }

    /// One page of the sandbox's ledger.
    pub async fn egress_events(
        &self,
        scope: Scope,
        id: SandboxId,
        query: &EgressQuery,
    ) -> Result<Vec<EgressEvent>, ServiceError> {
        self.get(scope, id).await?;
        Ok(self.store().list_egress_events(id, query).await?)
    }

    /// Per-host totals of the sandbox's ledger and, in report mode, a suggested allow list.
    pub async fn egress_summary(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<EgressSummary, ServiceError> {
        self.get(scope, id).await?;
        let store = self.store();
        let hosts = store.egress_summary(id).await?;
        let report_mode = store
            .get_egress_entry(id)
            .await?
            .and_then(|e| e.policy)
            .is_some_and(|p| EgressPolicy::stored_is_report(&p));
        let suggested_allow_domains = report_mode.then(|| suggest(&hosts));
        Ok(EgressSummary {
            hosts,
            report_mode,
            suggested_allow_domains,
        })
    }
}

/// The distinct names (not address literals) that were allowed or would have been denied.
fn suggest(hosts: &[HostSummary]) -> Vec<String> {
    let mut names: Vec<String> = hosts
        .iter()
        .filter(|h| h.allowed + h.would_deny > 0)
        .map(|h| h.host.trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().is_err())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, allowed: i64, denied: i64, would_deny: i64) -> HostSummary {
        HostSummary {
            host: name.to_owned(),
            total: allowed + denied + would_deny,
            allowed,
            denied,
            would_deny,
            bytes_up: 0,
            bytes_down: 0,
        }
    }

    #[test]
    fn suggestion_keeps_admitted_names_only() {
        let hosts = [
            host("api.example.com", 3, 0, 0),
            host("Files.Example.org", 0, 0, 2),
            host("metadata.test", 0, 4, 0),
            host("93.184.216.34", 1, 0, 0),
            host("[2001:db8::1]", 1, 0, 0),
        ];
        assert_eq!(
            suggest(&hosts),
            vec!["api.example.com".to_owned(), "files.example.org".to_owned()]
        );
    }
}
