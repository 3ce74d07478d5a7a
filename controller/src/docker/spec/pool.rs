//! Bodies of a warm pool member: its network and container are a sandbox's (made under the
//! sandbox id the member becomes at claim, see [`crate::pool::MemberId::sandbox_id`]) plus the
//! `airlock.member` and `airlock.pool` labels, and init's idle timeout; and the limits update
//! a claim applies when its shape differs from the pool's.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerUpdateBody, NetworkCreateRequest};

use super::{container_body, mib_to_bytes, network_body, Placement};
use crate::pool::MemberId;
use crate::sandbox::{Limits, SandboxSpec};

/// Label holding the member id on a member's container and network.
pub const LABEL_MEMBER: &str = "airlock.member";
/// Label holding the pool key's hash ([`crate::pool::PoolKey::hash`]).
pub const LABEL_POOL: &str = "airlock.pool";
/// Init's wait for a frame, in seconds (`AIRLOCK_POOL_MAX_IDLE`).
pub use airlock_init::settings::IDLE_VAR;

/// Who a member is: its id, its pool, and how long init waits for a claim.
#[derive(Clone, Copy, Debug)]
pub struct MemberTag<'a> {
    /// The member.
    pub id: MemberId,
    /// [`crate::pool::PoolKey::hash`] of its pool.
    pub pool: &'a str,
    /// Init exits 75 when no frame arrived within this.
    pub idle: Duration,
}

/// The member's network: its sandbox's, labelled as a member's.
pub fn member_network_body(placement: &Placement<'_>, tag: MemberTag<'_>) -> NetworkCreateRequest {
    let mut body = network_body(placement);
    if let Some(labels) = body.labels.as_mut() {
        labels.extend(member_labels(tag));
    }
    body
}

/// The member's container: its sandbox's (from the pool's `spec`), labelled as a member's,
/// with init's idle timeout.
pub fn member_container_body(
    spec: &SandboxSpec,
    placement: &Placement<'_>,
    runtime: &str,
    tag: MemberTag<'_>,
) -> ContainerCreateBody {
    let mut body = container_body(spec, placement, runtime);
    if let Some(labels) = body.labels.as_mut() {
        labels.extend(member_labels(tag));
    }
    if let Some(env) = body.env.as_mut() {
        env.push(format!("{IDLE_VAR}={}", tag.idle.as_secs().max(1)));
    }
    body
}

/// `POST /containers/{id}/update`: the claim's cpu, memory (swap equal: none on top) and pids.
pub fn limits_update(limits: &Limits) -> ContainerUpdateBody {
    let memory = mib_to_bytes(limits.memory_mb);
    ContainerUpdateBody {
        nano_cpus: Some(limits.cpus.nanos()),
        memory: Some(memory),
        memory_swap: Some(memory),
        pids_limit: Some(i64::try_from(limits.pids).unwrap_or(i64::MAX)),
        ..ContainerUpdateBody::default()
    }
}

fn member_labels(tag: MemberTag<'_>) -> [(String, String); 2] {
    [
        (LABEL_MEMBER.to_owned(), tag.id.to_string()),
        (LABEL_POOL.to_owned(), tag.pool.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sandbox::subnet::SandboxSubnet;
    use crate::sandbox::{Cpus, Maximums, SandboxRequest};

    #[test]
    fn a_member_is_its_sandbox_with_member_labels_and_an_idle_timeout() {
        let id = MemberId::new();
        let placement = Placement {
            id: id.sandbox_id(),
            generation: 1,
            node: "node-a",
            subnet: SandboxSubnet::new("10.213.0.8/29".parse().unwrap()).unwrap(),
            proxy_token: "",
        };
        let limits = Limits {
            cpus: Cpus::from_millis(1000),
            memory_mb: 256,
            pids: 64,
            disk_mb: None,
        };
        let spec = SandboxRequest {
            image: "img".into(),
            ..SandboxRequest::default()
        }
        .validate(&Maximums {
            limits,
            timeout: Duration::from_secs(60),
            default_timeout: Duration::from_secs(60),
        })
        .unwrap();
        let tag = MemberTag {
            id,
            pool: "0123456789abcdef",
            idle: Duration::from_secs(90),
        };
        let body = member_container_body(&spec, &placement, "abc", tag);
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MEMBER], id.to_string());
        assert_eq!(labels[super::super::LABEL_SANDBOX_ID], id.to_string());
        assert!(body
            .env
            .unwrap()
            .contains(&"AIRLOCK_POOL_MAX_IDLE=90".to_owned()));
        let network = member_network_body(&placement, tag);
        assert_eq!(network.labels.unwrap()[LABEL_POOL], "0123456789abcdef");
        let update = limits_update(&limits);
        assert_eq!(update.memory, update.memory_swap);
        assert_eq!(update.pids_limit, Some(64));
    }
}
