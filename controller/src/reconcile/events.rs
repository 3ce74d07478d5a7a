//! The Docker event watcher: notices a sandbox's end as soon as the node reports it, without
//! polling, and records it through the one state machine.
//!
//! It subscribes to the node's `die`, `oom`, `kill` and `destroy` events of `airlock.*`-labelled
//! containers ([`crate::docker::DockerClient::container_events`]). A `die` or `destroy` of a sandbox's current
//! container (matched by sandbox id, generation label and container id) is handed to
//! `Sandboxes::observe_end_signalled`, the same code `wait` uses, so the two paths agree
//! and race safely: every end is a generation-fenced transition, and the loser reads the
//! winner's result. A `kill` that we did not send (the sandbox is not stopping and no stop was
//! asked) marks the container as signalled, so a later exit by signal ends it `killed`.
//!
//! When the stream fails or ends, the watcher reconnects with exponential backoff and, once
//! the stream is open again, runs one reconcile pass: events missed while it was down are
//! caught there.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::docker::client::events::{ContainerAction, ContainerEvent};
use crate::reconcile::{Pass, Reconciler};
use crate::sandbox::{DesiredState, SandboxId, SandboxState};
use crate::sandboxes::Sandboxes;
use crate::store::Scope;

/// First wait before reconnecting a failed event stream.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Most containers remembered as signalled; the set is cleared past it (a signalled
/// container is forgotten at its `die` anyway).
const MAX_SIGNALLED: usize = 4096;

/// Watches one node's container events for the life of the server.
#[derive(Debug)]
pub struct EventWatcher {
    sandboxes: Sandboxes,
    reconciler: Reconciler,
    node: String,
    signalled: HashSet<String>,
}

// === impl EventWatcher ===

impl EventWatcher {
    /// A watcher of `node` that records ends through `service` and reconciles with
    /// `reconciler` after every reconnect.
    pub fn new(sandboxes: Sandboxes, reconciler: Reconciler, node: &str) -> Self {
        Self {
            sandboxes,
            reconciler,
            node: node.to_owned(),
            signalled: HashSet::new(),
        }
    }

    /// Watches until `shutdown` completes, reconnecting with backoff.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = MIN_BACKOFF;
        let mut reconnect = false;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                healthy = self.watch_once(reconnect) => {
                    if healthy {
                        backoff = MIN_BACKOFF;
                    }
                }
            }
            reconnect = true;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        info!("Event watcher stopped");
    }

    /// Follows one event stream until it fails or ends; `true` when it delivered at least one
    /// event (the backoff then starts over). After a reconnect, the reconcile pass runs beside
    /// the open stream, so nothing falls between them.
    async fn watch_once(&mut self, reconnect: bool) -> bool {
        let stream = self.reconciler.docker.container_events(&self.node);
        tokio::pin!(stream);
        let reconciler = self.reconciler.clone();
        let pass = async move {
            if reconnect {
                info!("Docker event stream reopened; reconciling");
                reconciler.pass_logged(Pass::Periodic).await;
            }
        };
        tokio::pin!(pass);
        let mut pass_done = false;
        let mut delivered = false;
        loop {
            let next = tokio::select! {
                () = &mut pass, if !pass_done => {
                    pass_done = true;
                    continue;
                }
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    delivered = true;
                    self.handle(event).await;
                }
                Some(Err(error)) => {
                    warn!(%error, "Docker event stream failed; reconnecting");
                    break;
                }
                None => {
                    warn!("Docker event stream ended; reconnecting");
                    break;
                }
            }
        }
        if !pass_done {
            pass.await;
        }
        delivered
    }

    async fn handle(&mut self, event: ContainerEvent) {
        let Some(id) = event
            .sandbox
            .as_deref()
            .and_then(|s| s.parse::<SandboxId>().ok())
        else {
            return;
        };
        debug!(sandbox.id = %id, container.id = %event.container, action = ?event.action,
            "Docker event");
        match event.action {
            ContainerAction::Oom => {}
            ContainerAction::Kill { .. } => self.note_kill(id, event).await,
            ContainerAction::Die { .. } | ContainerAction::Destroy => {
                let signalled = self.signalled.remove(&event.container);
                self.record_end(id, &event, signalled).await;
            }
        }
    }

    /// Remembers a `kill` that no stop of ours explains.
    async fn note_kill(&mut self, id: SandboxId, event: ContainerEvent) {
        let Ok(Some(sandbox)) = self.reconciler.store.get_sandbox(Scope::All, id).await else {
            return;
        };
        let ours =
            sandbox.state != SandboxState::Running || sandbox.desired != DesiredState::Running;
        if ours || sandbox.container_id.as_deref() != Some(event.container.as_str()) {
            return;
        }
        if self.signalled.len() >= MAX_SIGNALLED {
            self.signalled.clear();
        }
        self.signalled.insert(event.container);
    }

    /// Records the end of the sandbox's current container; anything else (an older
    /// incarnation, a sandbox being deleted, one already ended) is left alone.
    async fn record_end(&self, id: SandboxId, event: &ContainerEvent, signalled: bool) {
        let sandbox = match self.reconciler.store.get_sandbox(Scope::All, id).await {
            Ok(Some(sandbox)) => sandbox,
            Ok(None) => return,
            Err(error) => {
                warn!(%error, sandbox.id = %id, "Event watcher cannot read the sandbox");
                return;
            }
        };
        let current = sandbox.container_id.as_deref() == Some(event.container.as_str())
            && event.generation.is_none_or(|g| g == sandbox.generation);
        if !current || sandbox.state.is_terminal() || sandbox.desired == DesiredState::Deleted {
            return;
        }
        let result = self
            .sandboxes
            .observe_end_signalled(id, &event.container, signalled)
            .await;
        if let Err(error) = result {
            warn!(%error, sandbox.id = %id, "Event watcher could not record the end");
        }
    }
}
