//! The isolation self-test's probe container: its pure body (the calls that run it are in
//! [`crate::docker::client`]).
//!
//! Invariants of the probe container body (snapshot-tested):
//! - it joins the sandbox's network namespace (`network_mode: container:<id>`) and no
//!   network of its own, so it sees exactly what the sandbox sees;
//! - it is hardened like a sandbox, from the helpers' host config
//!   ([`super::helper::isolated_host_config`]): `CapDrop: [ALL]`, no-new-privileges, not
//!   privileged, read-only root, non-root user, no devices, binds or mounts, a capped log, and
//!   its own small pids, memory and CPU limits;
//! - it carries only the `airlock.sandbox.id` label (not `airlock.node`), so the reconciler
//!   never mistakes it for the sandbox's container, while deleting the sandbox removes it.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};

use super::helper::isolated_host_config;
use super::LABEL_SANDBOX_ID;
use crate::sandbox::SandboxId;

/// The user the probe runs as.
pub const PROBE_USER: &str = "65532:65532";
/// Most processes in the probe container (one thread per check, plus slack).
pub const PROBE_PIDS: i64 = 512;
/// The probe container's memory limit (no swap on top).
pub const PROBE_MEMORY: i64 = 64 * 1024 * 1024;
/// The probe container's CPU share, in nano-CPUs (half a CPU).
pub const PROBE_NANO_CPUS: i64 = 500_000_000;

/// The probe container's name for one run.
pub fn probe_name(id: SandboxId, run: &str) -> String {
    format!("airlock-probe-{id}-{run}")
}

/// The body of the probe container joining `container`'s network namespace, with `env`
/// (the plan and the sandbox's proxy variables).
pub fn probe_body(
    id: SandboxId,
    image: &str,
    container: &str,
    env: Vec<String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(env),
        user: Some(PROBE_USER.to_owned()),
        labels: Some(HashMap::from([(
            LABEL_SANDBOX_ID.to_owned(),
            id.to_string(),
        )])),
        network_disabled: Some(false),
        host_config: Some(HostConfig {
            // The sandbox's network namespace instead of none, and its own limits; the rest
            // is the helpers' hardening.
            network_mode: Some(format!("container:{container}")),
            pids_limit: Some(PROBE_PIDS),
            memory: Some(PROBE_MEMORY),
            memory_swap: Some(PROBE_MEMORY),
            nano_cpus: Some(PROBE_NANO_CPUS),
            publish_all_ports: Some(false),
            ipc_mode: Some("private".to_owned()),
            ..isolated_host_config()
        }),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn probe_body_is_hardened_and_joins_the_sandbox_namespace() {
        let id: SandboxId = "0193a1b2-0000-7000-8000-000000000001".parse().unwrap();
        let body = probe_body(id, "airlock/probe:dev", "c0ffee", vec!["A=1".to_owned()]);
        let json = serde_json::to_value(&body).unwrap();
        let host = &json["HostConfig"];
        assert_eq!(host["NetworkMode"], "container:c0ffee");
        assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(
            host["SecurityOpt"],
            serde_json::json!(["no-new-privileges:true"])
        );
        assert_eq!(host["Privileged"], false);
        assert_eq!(host["ReadonlyRootfs"], true);
        assert_eq!(json["User"], "65532:65532");
        assert!(json.get("NetworkingConfig").is_none());
        expect![[r#"{"airlock.sandbox.id":"0193a1b2-0000-7000-8000-000000000001"}"#]]
            .assert_eq(&json["Labels"].to_string());
        assert_eq!(
            probe_name(id, "ab12"),
            "airlock-probe-0193a1b2-0000-7000-8000-000000000001-ab12"
        );
    }

    #[test]
    fn the_probe_host_config_is_exactly_this() {
        let id: SandboxId = "0193a1b2-0000-7000-8000-000000000001".parse().unwrap();
        let body = probe_body(id, "airlock/probe:dev", "c0ffee", Vec::new());
        let json = serde_json::to_value(&body).unwrap();
        let want = serde_json::json!({
            "NetworkMode": "container:c0ffee",
            "CapDrop": ["ALL"],
            "CapAdd": [],
            "SecurityOpt": ["no-new-privileges:true"],
            "Privileged": false,
            "ReadonlyRootfs": true,
            "PidsLimit": 512,
            "Memory": 67_108_864,
            "MemorySwap": 67_108_864,
            "NanoCpus": 500_000_000,
            "Devices": [],
            "Binds": [],
            "Mounts": [],
            "PublishAllPorts": false,
            "IpcMode": "private",
            "AutoRemove": false,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "1"}},
        });
        assert_eq!(json["HostConfig"], want);
    }
}
