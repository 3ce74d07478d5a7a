//! A sandbox's egress ledger: `ListEgress` (one page, filterable by decision and host) and
//! `SummariseEgress` (per-host totals, and in report mode the names an allow list would
//! need). Another owner's sandbox is not found.

use std::net::IpAddr;

use super::{SandboxError, Sandboxes};
use crate::audit::{Actor, Command};
use crate::egress::EgressPolicy;
use crate::sandbox::SandboxId;
use crate::store::{EgressEvent, EgressQuery, HostSummary};

/// `GET /v1/sandboxes/{id}/egress`: one page of the ledger, oldest first.
#[derive(Clone, Debug)]
pub struct ListEgress {
    /// The sandbox.
    pub id: SandboxId,
    /// The filters, cursor and page size.
    pub query: EgressQuery,
}

/// `GET /v1/sandboxes/{id}/egress/summary`: per-host totals.
#[derive(Clone, Copy, Debug)]
pub struct SummariseEgress {
    /// The sandbox.
    pub id: SandboxId,
}

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

// === impl ListEgress ===

impl Command<Sandboxes> for ListEgress {
    type Output = Vec<EgressEvent>;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<Vec<EgressEvent>, SandboxError> {
        let action = "GET /v1/sandboxes/{id}/egress";
        sandboxes.read_visible(actor, self.id, action).await?;
        let store = &sandboxes.store;
        Ok(store.list_egress_events(self.id, &self.query).await?)
    }
}

// === impl SummariseEgress ===

impl Command<Sandboxes> for SummariseEgress {
    type Output = EgressSummary;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<EgressSummary, SandboxError> {
        let action = "GET /v1/sandboxes/{id}/egress/summary";
        sandboxes.read_visible(actor, self.id, action).await?;
        let store = &sandboxes.store;
        let hosts = store.egress_summary(self.id).await?;
        let report_mode = store
            .get_egress_entry(self.id)
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
