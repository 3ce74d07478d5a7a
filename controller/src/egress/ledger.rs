//! The ledger puller: moves the proxy's event spool into the store, then acknowledges it.
//!
//! Each page is stored in one transaction together with the cursor `(boot id, seq)`, and
//! acknowledged only after that commit, so a controller crash at any point loses nothing: the
//! proxy keeps every unacknowledged event and the next pull fetches it again, where the
//! `(boot_id, seq)` key makes the insert a no-op. Events the proxy could not attribute (no or
//! a wrong credential) are attributed by their source address when a sandbox owns it.
//!
//! Speed: pages of up to [`PAGE`] events are pulled back to back while they come back full,
//! each stored with multi-row inserts in one transaction, with nothing but the ack between
//! them (no health check, prune or cursor read), so the drain keeps far ahead of one sandbox
//! sending 1,000 denied requests a second (measured in `tests/egress_store.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use airlock_wire::Event;
use tracing::{debug, warn};

use super::{EgressError, EgressPlane};
use crate::store::EgressEvent;

/// Events fetched per page: the proxy's largest page.
pub const PAGE: usize = 10_000;
/// Time between pulls (and between proxy health checks).
pub const PULL_INTERVAL: Duration = Duration::from_secs(1);
/// The `sandbox_id` of an event no sandbox owns.
pub const UNATTRIBUTED: &str = "-";

// === impl EgressPlane ===

impl EgressPlane {
    /// Pulls every spooled event into the store; returns how many were fetched.
    pub async fn pull_ledger(&self) -> Result<usize, EgressError> {
        let (store, admin, node) = (&self.inner.store, &self.inner.admin, &self.inner.node);
        let (mut boot, after) = store.egress_cursor(node).await?.unwrap_or_default();
        let mut after = u64::try_from(after).unwrap_or(0);
        let owners = self.owners().await?;
        let mut total = 0;
        loop {
            let mut page = admin.events(after, PAGE).await?;
            if page.boot_id != boot && after != 0 {
                // A new proxy process numbers from 1 again.
                page = admin.events(0, PAGE).await?;
            }
            self.report_overflow(&page.boot_id, page.overflowed);
            if page.events.is_empty() {
                return Ok(total);
            }
            let rows: Vec<EgressEvent> = page
                .events
                .iter()
                .map(|e| row(e, &page.boot_id, &owners))
                .collect();
            let next = i64::try_from(page.next).unwrap_or(i64::MAX);
            store
                .store_egress_events_capped(node, &rows, &page.boot_id, next, self.inner.ledger_cap)
                .await?;
            admin.ack(page.next).await?;
            total += rows.len();
            debug!(
                egress.events = rows.len(),
                egress.next = page.next,
                "Ledger page stored"
            );
            if rows.len() < PAGE {
                return Ok(total);
            }
            (boot, after) = (page.boot_id, page.next);
        }
    }

    /// The live sandboxes by source address, to attribute unidentified events.
    async fn owners(&self) -> Result<HashMap<IpAddr, String>, EgressError> {
        let entries = self.inner.store.live_egress_entries().await?;
        Ok(entries
            .into_iter()
            .map(|e| (e.source_addr, e.sandbox_id.to_string()))
            .collect())
    }

    /// Keeps the proxy up, synced and pruned ([`EgressPlane::prune`]) and pulls its ledger
    /// every [`PULL_INTERVAL`] until
    /// `shutdown` completes. Failures are logged and retried at the next tick.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failing = false;
        loop {
            match self.tick().await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    warn!(%error, "Egress plane step failed; retrying");
                    failing = true;
                }
                Err(error) => debug!(%error, "Egress plane step failed again"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(PULL_INTERVAL) => {}
            }
        }
    }
}

impl EgressPlane {
    /// Warns once per new loss when the proxy's spool overflowed: those events never reach the
    /// store (they are still in the proxy's JSON log). `airlock doctor` shows the total.
    fn report_overflow(&self, boot_id: &str, overflowed: u64) {
        let mut seen = self
            .inner
            .overflow_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = if seen.0 == boot_id { seen.1 } else { 0 };
        if overflowed > before {
            warn!(
                egress.lost = overflowed - before,
                egress.lost_total = overflowed,
                egress.boot_id = boot_id,
                "Egress ledger events were lost: the proxy's spool was full before the controller \
                 pulled it; they remain only in the airlock-egress container log"
            );
        }
        *seen = (boot_id.to_owned(), overflowed);
    }

    /// One round of [`EgressPlane::run`].
    async fn tick(&self) -> Result<(), EgressError> {
        self.ensure().await?;
        self.prune().await?;
        self.pull_ledger().await?;
        Ok(())
    }
}

fn row(e: &Event, boot_id: &str, owners: &HashMap<IpAddr, String>) -> EgressEvent {
    let sandbox = e
        .sandbox
        .clone()
        .or_else(|| owners.get(&e.client.ip().to_canonical()).cloned())
        .unwrap_or_else(|| UNATTRIBUTED.to_owned());
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    EgressEvent {
        boot_id: boot_id.to_owned(),
        seq: int(e.seq),
        sandbox_id: sandbox,
        generation: int(e.generation),
        method: e.method.clone(),
        host: e.host.clone(),
        port: i64::from(e.port),
        addr: e.addr.map(|a| a.to_string()),
        decision: e.decision,
        reason: e.reason.clone(),
        rule: e.rule.clone(),
        bytes_up: int(e.bytes_up),
        bytes_down: int(e.bytes_down),
        start_ms: int(e.start_ms),
        duration_ms: int(e.duration_ms),
        ceiling: e.ceiling.clone(),
        count: int(e.count.max(1)),
        tunnel: e.tunnel.map(int),
        path: e.path.clone(),
        status: e.status.map(i64::from),
        credential: e.credential.clone(),
        mode: e.mode.clone(),
    }
}
