//! Reading and ending sandboxes: `GetSandbox`, `ListSandboxes`, `StopSandbox`,
//! `DeleteSandbox` and `WaitSandbox`. Another owner's sandbox is not found; an admin's list
//! or wait that shows another account's sandboxes files an oversight row (as reads do).

use std::time::Duration;

use tokio::time::Instant;
use tracing::instrument;

use super::ending::end_reason;
use super::{SandboxError, Sandboxes};
use crate::audit::{status, Actor, Command, Entry};
use crate::sandbox::selftest::Selftest;
use crate::sandbox::{DesiredState, EndReason, SandboxEvent, SandboxId, SandboxState};
use crate::store::{ListQuery, Page, Sandbox};

/// Most owners an oversight row of a list names; the rest are counted.
const LISTED_OWNERS: usize = 10;
/// How often `wait` re-reads a sandbox that has no container yet.
const CREATING_POLL: Duration = Duration::from_millis(100);
/// Longest single Docker wait request; `wait` loops over these until its own deadline.
const WAIT_CHUNK: Duration = Duration::from_secs(60);

/// `GET /v1/sandboxes/{id}`: the sandbox and its latest self-test.
#[derive(Clone, Copy, Debug)]
pub struct GetSandbox {
    /// The sandbox.
    pub id: SandboxId,
}

/// A sandbox with its latest self-test.
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    /// The sandbox.
    pub sandbox: Sandbox,
    /// Its latest self-test, if one ran.
    pub selftest: Option<Selftest>,
}

/// `GET /v1/sandboxes`: one page of the sandboxes the caller may see.
#[derive(Clone, Copy, Debug)]
pub struct ListSandboxes {
    /// The filter, cursor and page size.
    pub query: ListQuery,
}

/// `POST /v1/sandboxes/{id}/stop`: SIGTERM, the grace period, then SIGKILL. The sandbox ends
/// `stopped` (or how it really ended, when it had already ended by itself); stopping an ended
/// sandbox changes nothing.
#[derive(Clone, Copy, Debug)]
pub struct StopSandbox {
    /// The sandbox.
    pub id: SandboxId,
}

/// `DELETE /v1/sandboxes/{id}`: hides the sandbox from every read, removes its proxy entry
/// and its containers (killed at once: a delete gives no grace) and records its end (its
/// quota and volume mounts are free), then answers; its network, anything else labelled for
/// it, its subnet and its row go in the background (`teardown`), or with the reconciler when
/// that is interrupted. A sandbox that does not exist counts as deleted.
#[derive(Clone, Copy, Debug)]
pub struct DeleteSandbox {
    /// The sandbox.
    pub id: SandboxId,
}

/// `GET /v1/sandboxes/{id}/wait`: blocks until the sandbox ends or `limit` passes, and
/// returns it as it then is.
#[derive(Clone, Copy, Debug)]
pub struct WaitSandbox {
    /// The sandbox.
    pub id: SandboxId,
    /// How long to wait at most.
    pub limit: Duration,
}

// === impl GetSandbox ===

impl Command<Sandboxes> for GetSandbox {
    type Output = Described;
    type Error = SandboxError;

    async fn execute(
        self,
        sandboxes: &Sandboxes,
        actor: &Actor,
    ) -> Result<Described, SandboxError> {
        let sandbox = sandboxes
            .read_visible(actor, self.id, "GET /v1/sandboxes/{id}")
            .await?;
        let selftest = sandboxes.latest_selftest(self.id).await?;
        Ok(Described { sandbox, selftest })
    }
}

// === impl ListSandboxes ===

impl Command<Sandboxes> for ListSandboxes {
    type Output = Page;
    type Error = SandboxError;

    async fn execute(self, sandboxes: &Sandboxes, actor: &Actor) -> Result<Page, SandboxError> {
        let page = sandboxes
            .store
            .list_sandboxes(actor.scope(), self.query)
            .await?;
        if let Some(detail) = others_listed(actor, &page) {
            let entry = Entry::new("GET /v1/sandboxes", status::OK).detail(detail);
            sandboxes.peers.audit.record(actor, entry).await;
        }
        Ok(page)
    }
}

/// The oversight row's detail when `page` holds sandboxes of accounts other than `actor`'s:
/// how many, and whose (the first [`LISTED_OWNERS`] owners, then a count); `None` when it
/// holds only the actor's own.
fn others_listed(actor: &Actor, page: &Page) -> Option<String> {
    let mut owners: Vec<String> = Vec::new();
    let mut count = 0usize;
    for sandbox in page.items.iter().filter(|s| actor.user() != Some(s.owner)) {
        count += 1;
        let owner = sandbox.owner.to_string();
        if !owners.contains(&owner) {
            owners.push(owner);
        }
    }
    if count == 0 {
        return None;
    }
    let more = owners.len().saturating_sub(LISTED_OWNERS);
    owners.truncate(LISTED_OWNERS);
    let mut detail = format!("{count} sandboxes of others, owners {}", owners.join(", "));
    if more > 0 {
        detail.push_str(&format!(" and {more} more"));
    }
    Some(detail)
}

// === impl StopSandbox ===

impl Command<Sandboxes> for StopSandbox {
    type Output = Sandbox;
    type Error = SandboxError;

    #[instrument(skip_all, fields(sandbox.id = %self.id))]
    async fn execute(self, sandboxes: &Sandboxes, actor: &Actor) -> Result<Sandbox, SandboxError> {
        let stopped = sandboxes.stop(actor, self.id).await?;
        let entry = Entry::new("POST /v1/sandboxes/{id}/stop", status::OK).object(self.id);
        sandboxes.peers.audit.record(actor, entry).await;
        Ok(stopped)
    }
}

// === impl DeleteSandbox ===

impl Command<Sandboxes> for DeleteSandbox {
    type Output = ();
    type Error = SandboxError;

    #[instrument(skip_all, fields(sandbox.id = %self.id))]
    async fn execute(self, sandboxes: &Sandboxes, actor: &Actor) -> Result<(), SandboxError> {
        let (scope, id) = (actor.scope(), self.id);
        if let Some(sandbox) = sandboxes.store.begin_delete(scope, id).await? {
            sandboxes.delete(sandbox).await?;
        }
        let entry = Entry::new("DELETE /v1/sandboxes/{id}", status::NO_CONTENT).object(id);
        sandboxes.peers.audit.record(actor, entry).await;
        Ok(())
    }
}

// === impl WaitSandbox ===

impl Command<Sandboxes> for WaitSandbox {
    type Output = Sandbox;
    type Error = SandboxError;

    #[instrument(skip_all, fields(sandbox.id = %self.id))]
    async fn execute(self, sandboxes: &Sandboxes, actor: &Actor) -> Result<Sandbox, SandboxError> {
        let (scope, id) = (actor.scope(), self.id);
        let deadline = Instant::now() + self.limit;
        let action = "GET /v1/sandboxes/{id}/wait";
        let mut read = Some(sandboxes.read_visible(actor, id, action).await?);
        loop {
            let sandbox = match read.take() {
                Some(sandbox) => sandbox,
                None => sandboxes.visible(scope, id).await?,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if sandbox.state.is_terminal() || remaining.is_zero() {
                return Ok(sandbox);
            }
            // While creating, a container that exists may not have started yet, and Docker's
            // wait would return at once for it: poll the store until the create settles.
            let container = match sandbox.container_id.as_deref() {
                Some(container) if sandbox.state != SandboxState::Creating => container,
                _ => {
                    tokio::time::sleep(remaining.min(CREATING_POLL)).await;
                    continue;
                }
            };
            let chunk = remaining.min(WAIT_CHUNK);
            match sandboxes.docker.wait(container, chunk).await {
                Ok(None) => {}
                Ok(Some(_code)) => sandboxes.observe_end(id, container).await?,
                // Removed meanwhile (a delete, or lost): the next read tells which.
                Err(error) if error.is_not_found() => sandboxes.observe_end(id, container).await?,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

// === impl Sandboxes ===

impl Sandboxes {
    /// See [`StopSandbox`].
    async fn stop(&self, actor: &Actor, id: SandboxId) -> Result<Sandbox, SandboxError> {
        let scope = actor.scope();
        let sandbox = self.visible(scope, id).await?;
        if sandbox.state.is_terminal() {
            return Ok(sandbox);
        }
        self.store
            .set_desired_state(scope, id, DesiredState::Stopped)
            .await?;
        let event = SandboxEvent::StopRequested;
        let Some(stopping) = self.transition(&sandbox, &event).await? else {
            return self.visible(scope, id).await;
        };
        let Some(container) = stopping.container_id.clone() else {
            return self.finish(&stopping, EndReason::Stopped).await;
        };
        let before = self.docker.inspect(&container).await?;
        if before.as_ref().is_some_and(|s| s.running) {
            self.docker
                .stop(&container, self.settings.stop_grace)
                .await?;
        }
        let after = self.docker.inspect(&container).await?;
        let was_started = sandbox.state != SandboxState::Creating;
        let reason = match (&before, after) {
            // It had ended by itself before the stop request: record how.
            (Some(before), Some(after)) if was_started && !before.running => end_reason(&after),
            (_, Some(after)) if after.oom_killed => EndReason::Oom,
            (_, Some(_)) => EndReason::Stopped,
            (_, None) => EndReason::Lost,
        };
        self.finish(&stopping, reason).await
    }
}
