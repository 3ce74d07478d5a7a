//! Listing this node's `airlock.*`-labelled containers and networks for the reconciler, with
//! their labels and (for containers) their phase, and its helper containers (kept apart:
//! a helper is never a sandbox's container). Part of the Docker boundary: bollard types stop
//! here.

use std::collections::HashMap;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};

use time::OffsetDateTime;

use super::{DockerClient, DockerError};
use crate::docker::spec::helper::{HelperKind, LABEL_HELPER};
use crate::docker::spec::{LABEL_NODE, LABEL_SANDBOX_ID};
use crate::sandbox::SandboxId;

/// A container carrying `airlock.node=<node>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedContainer {
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its process state as listed.
    pub state: ListedState,
}

/// A container's state as `docker ps -a` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListedState {
    /// Created, never started.
    Created,
    /// Running, paused or restarting.
    Running,
    /// Exited, dead, or being removed.
    Ended,
}

/// A helper container carrying `airlock.node=<node>` and an `airlock.helper` kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedHelper {
    /// Its id.
    pub id: String,
    /// Its kind, when the label parses.
    pub kind: Option<HelperKind>,
    /// The sandbox it serves, when labelled (a trust-volume filler).
    pub sandbox: Option<SandboxId>,
    /// When Docker created it.
    pub created: Option<OffsetDateTime>,
}

/// A network carrying `airlock.node=<node>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedNetwork {
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

// === impl DockerClient ===

impl DockerClient {
    /// Every container (running or not) labelled for `node`, except helpers.
    pub async fn node_containers(&self, node: &str) -> Result<Vec<ListedContainer>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(node_filter(node)),
            ..ListContainersOptions::default()
        };
        let listed = self.bollard().list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .is_none_or(|l| !l.contains_key(LABEL_HELPER))
            })
            .filter_map(|c| {
                Some(ListedContainer {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                    state: listed_state(c.state),
                })
            })
            .collect())
    }

    /// Every helper container (running or not) labelled for `node`.
    pub async fn node_helpers(&self, node: &str) -> Result<Vec<ListedHelper>, DockerError> {
        let mut filters = node_filter(node);
        if let Some(labels) = filters.get_mut("label") {
            labels.push(LABEL_HELPER.to_owned());
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        };
        let listed = self.bollard().list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                Some(ListedHelper {
                    id: c.id?,
                    kind: labels.get(LABEL_HELPER).and_then(|v| HelperKind::parse(v)),
                    sandbox: labels.get(LABEL_SANDBOX_ID).and_then(|v| v.parse().ok()),
                    created: c
                        .created
                        .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok()),
                })
            })
            .collect())
    }

    /// Every network labelled for `node`.
    pub async fn node_networks(&self, node: &str) -> Result<Vec<ListedNetwork>, DockerError> {
        let options = ListNetworksOptions {
            filters: Some(node_filter(node)),
        };
        let listed = self.bollard().list_networks(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|n| {
                Some(ListedNetwork {
                    id: n.id?,
                    labels: n.labels.unwrap_or_default(),
                })
            })
            .collect())
    }
}

fn node_filter(node: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{LABEL_NODE}={node}")])])
}

fn listed_state(state: Option<ContainerSummaryStateEnum>) -> ListedState {
    use ContainerSummaryStateEnum as S;
    match state {
        Some(S::CREATED) => ListedState::Created,
        Some(S::RUNNING | S::PAUSED | S::RESTARTING | S::STOPPING) => ListedState::Running,
        _ => ListedState::Ended,
    }
}
