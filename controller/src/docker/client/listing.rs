//! Listing this node's `airlock.*`-labelled containers and networks for the reconciler, with
//! their labels and (for containers) their phase. Part of the Docker boundary: bollard types
//! stop here.

use std::collections::HashMap;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};

use super::{DockerClient, DockerError};
use crate::docker::spec::LABEL_NODE;

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
    /// Every container (running or not) labelled for `node`.
    pub async fn node_containers(&self, node: &str) -> Result<Vec<ListedContainer>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(node_filter(node)),
            ..ListContainersOptions::default()
        };
        let listed = self.bollard().list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                Some(ListedContainer {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                    state: listed_state(c.state),
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
