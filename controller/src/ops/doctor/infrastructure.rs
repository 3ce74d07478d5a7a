//! The `infrastructure` line: the deployment's own address space as the controller computes
//! it for the proxy (see [`crate::egress::infrastructure`]), so an operator can read what no
//! policy can open and add what is missing with `AIRLOCK_INFRA_CIDRS`.

use super::Check;
use crate::config::Config;
use crate::docker::DockerClient;
use crate::egress::infrastructure::{compute, configured, gather};

/// Lists the infrastructure CIDRs (never fails).
pub(super) async fn check(config: &Config, docker: &DockerClient) -> Check {
    let sources = gather(&configured(config), docker).await;
    let list: Vec<String> = compute(&sources).iter().map(ToString::to_string).collect();
    Check::pass(
        "infrastructure",
        format!(
            "{} CIDRs no policy can open: {}",
            list.len(),
            list.join(", ")
        ),
    )
}
