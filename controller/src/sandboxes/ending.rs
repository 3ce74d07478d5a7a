//! Reading a sandbox as an actor may ([`Sandboxes::read_visible`]: another account's
//! sandbox, logs, ledger or self-test read by an admin files a row naming the owner), and
//! recording how a sandbox ended: after a `wait` or the event watcher saw its container stop,
//! after a stop, and after a failed create. Every change goes through the store's
//! generation-fenced transition; when another path recorded the end first, its result wins.

use super::{SandboxError, Sandboxes};
use crate::audit::{status, Actor, Entry};
use crate::docker::ContainerStatus;
use crate::sandbox::{end, DesiredState, EndReason, SandboxEvent, SandboxId, SandboxState};
use crate::store::{Sandbox, Scope, StoreError};

/// Exit codes above this mean the process was ended by a signal (128 + the signal number).
const SIGNAL_EXIT: i64 = 128;

// === impl Sandboxes ===

impl Sandboxes {
    /// The sandbox, if `scope` may see it.
    pub(super) async fn visible(
        &self,
        scope: Scope,
        id: SandboxId,
    ) -> Result<Sandbox, SandboxError> {
        self.store
            .get_sandbox(scope, id)
            .await?
            .ok_or(SandboxError::NotFound)
    }

    /// The sandbox, if `actor` may see it; when it is another account's (an admin's
    /// oversight read), a row for `action` names it and its owner first.
    pub(super) async fn read_visible(
        &self,
        actor: &Actor,
        id: SandboxId,
        action: &'static str,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = self.visible(actor.scope(), id).await?;
        if actor.user() != Some(sandbox.owner) {
            let entry = Entry::new(action, status::OK)
                .object(id)
                .detail(format!("owner {}", sandbox.owner));
            self.peers.audit.record(actor, entry).await;
        }
        Ok(sandbox)
    }

    /// Records how the container ended, after Docker said it is no longer running. Reads the
    /// sandbox afresh, so a stop requested while waiting counts as `stopped`.
    pub(super) async fn observe_end(
        &self,
        id: SandboxId,
        container: &str,
    ) -> Result<(), SandboxError> {
        self.observe_end_signalled(id, container, false).await
    }

    /// [`Self::observe_end`] for the event watcher ([`crate::reconcile::events`]), which also
    /// knows whether Docker delivered a signal to the container that we did not send
    /// (`signalled`): an exit by signal is then `killed`.
    pub(crate) async fn observe_end_signalled(
        &self,
        id: SandboxId,
        container: &str,
        signalled: bool,
    ) -> Result<(), SandboxError> {
        let status = self.docker.inspect(container).await?;
        let Some(sandbox) = self.store.get_sandbox(Scope::All, id).await? else {
            return Ok(());
        };
        if sandbox.state.is_terminal() || sandbox.state == SandboxState::Creating {
            return Ok(());
        }
        let reason = match status {
            None => EndReason::Lost,
            Some(status) if status.running => return Ok(()),
            Some(_) if sandbox.desired == DesiredState::Stopped => EndReason::Stopped,
            Some(_) if sandbox.state == SandboxState::Stopping => EndReason::Stopped,
            Some(status) if signalled && status.exit_code.is_some_and(|c| c > SIGNAL_EXIT) => {
                EndReason::Killed
            }
            Some(status) => self.init_end(container, &status).await,
        };
        self.finish(&sandbox, reason).await.map(drop)
    }

    /// How a container ended: when `airlock-init` itself gave up before the workload ran (an
    /// init exit status, [`end::InitExit`], with init's line last on stderr), `failed` with an
    /// `init_config: ...`, `init_no_frame: ...` or `init_internal: ...` message; otherwise as
    /// its exit says.
    async fn init_end(&self, container: &str, status: &ContainerStatus) -> EndReason {
        let init = self
            .docker
            .init_end(container, status.exit_code, status.oom_killed)
            .await;
        init.unwrap_or_else(|| end_reason(status))
    }

    /// Records the end; when another path recorded it first, returns that result.
    pub(super) async fn finish(
        &self,
        sandbox: &Sandbox,
        reason: EndReason,
    ) -> Result<Sandbox, SandboxError> {
        let event = SandboxEvent::Ended(reason);
        match self.transition(sandbox, &event).await? {
            Some(ended) => Ok(ended),
            None => self.visible(Scope::All, sandbox.id).await,
        }
    }

    /// Applies `event`; `None` when the state machine refused it because the sandbox moved on
    /// (another path recorded the change first).
    pub(super) async fn transition(
        &self,
        sandbox: &Sandbox,
        event: &SandboxEvent,
    ) -> Result<Option<Sandbox>, SandboxError> {
        let result = self
            .store
            .record_transition(sandbox.id, sandbox.generation, event)
            .await;
        match result {
            Ok(sandbox) => {
                if sandbox.ended_at.is_some() {
                    self.sample_volumes_of(&sandbox.spec);
                }
                Ok(Some(sandbox))
            }
            Err(StoreError::Transition(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// How a container that is no longer running ended, when nobody asked it to stop.
pub(super) fn end_reason(status: &ContainerStatus) -> EndReason {
    end::from_exit(status.exit_code, status.oom_killed)
}
