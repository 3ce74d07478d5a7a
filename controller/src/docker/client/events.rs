//! The node's container event stream, filtered to this node's `airlock.*`-labelled containers
//! and to the actions that can end a sandbox. Part of the Docker boundary: bollard types stop
//! here, and [`crate::reconcile::events`] gets typed [`ContainerEvent`]s.

use std::collections::HashMap;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures_util::{Stream, StreamExt};

use super::{DockerClient, DockerError};
use crate::docker::spec::{LABEL_GENERATION, LABEL_NODE, LABEL_SANDBOX_ID};

/// The actions the watcher subscribes to.
const ACTIONS: [&str; 4] = ["die", "oom", "kill", "destroy"];

/// What happened to a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerAction {
    /// Its main process exited, with the code Docker reported.
    Die {
        /// The exit code, when the event carried one.
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer hit a process in it.
    Oom,
    /// Someone asked Docker to signal it (a stop also does, twice).
    Kill {
        /// The signal number or name, when the event carried one.
        signal: Option<String>,
    },
    /// It was removed.
    Destroy,
}

/// One event about a labelled container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container's id.
    pub container: String,
    /// Its `airlock.sandbox.id` label, as written.
    pub sandbox: Option<String>,
    /// Its `airlock.generation` label, when it parses.
    pub generation: Option<i64>,
    /// What happened.
    pub action: ContainerAction,
}

// === impl DockerClient ===

impl DockerClient {
    /// Streams the end-related events of `node`'s labelled containers from now on. The stream
    /// ends (or yields an error) when the connection drops; the caller reconnects.
    pub fn container_events(
        &self,
        node: &str,
    ) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{LABEL_NODE}={node}")]),
            (
                "event".to_owned(),
                ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
            ),
        ]);
        let options = EventsOptions {
            filters: Some(filters),
            ..EventsOptions::default()
        };
        self.bollard()
            .events(Some(options))
            .filter_map(|item| async move {
                match item {
                    Ok(message) => container_event(message).map(Ok),
                    Err(error) => Some(Err(DockerError::from(error))),
                }
            })
    }
}

/// The typed event, or `None` for one the watcher has no use for.
fn container_event(message: EventMessage) -> Option<ContainerEvent> {
    let actor = message.actor?;
    let container = actor.id?;
    let attributes = actor.attributes.unwrap_or_default();
    let action = match message.action.as_deref()? {
        "die" => ContainerAction::Die {
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => ContainerAction::Oom,
        "kill" => ContainerAction::Kill {
            signal: attributes.get("signal").cloned(),
        },
        "destroy" => ContainerAction::Destroy,
        _ => return None,
    };
    Some(ContainerEvent {
        container,
        sandbox: attributes.get(LABEL_SANDBOX_ID).cloned(),
        generation: attributes
            .get(LABEL_GENERATION)
            .and_then(|g| g.parse().ok()),
        action,
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::EventActor;

    use super::*;

    fn message(action: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some("c1".to_owned()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            }),
            ..EventMessage::default()
        }
    }

    #[test]
    fn events_are_typed_from_their_attributes() {
        let die = container_event(message(
            "die",
            &[
                ("exitCode", "137"),
                (LABEL_SANDBOX_ID, "sbx"),
                (LABEL_GENERATION, "2"),
            ],
        ))
        .unwrap();
        assert_eq!(
            die.action,
            ContainerAction::Die {
                exit_code: Some(137)
            }
        );
        assert_eq!(die.sandbox.as_deref(), Some("sbx"));
        assert_eq!(die.generation, Some(2));
        let kill = container_event(message("kill", &[("signal", "9")])).unwrap();
        assert_eq!(
            kill.action,
            ContainerAction::Kill {
                signal: Some("9".to_owned())
            }
        );
        assert_eq!(
            container_event(message("destroy", &[])).unwrap().action,
            ContainerAction::Destroy
        );
        assert_eq!(container_event(message("start", &[])), None);
    }
}
