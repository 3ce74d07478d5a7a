//! Pure builders of the bollard request bodies for one sandbox: its `internal` network and
//! its hardened container (DESIGN.md invariant 6). No I/O; snapshot-tested.
//!
//! Invariants of every container body:
//! - `CapDrop: [ALL]`, `no-new-privileges`, `Privileged: false`, no devices, no `Binds`, no
//!   published ports, a non-root user;
//! - `Mounts` holds only the spec's *bound* mounts: each volume a Docker `volume` mount at
//!   its checked target, read-only when asked (a home volume is one of them, at
//!   `/home/agent`, and then no home tmpfs is added); each registered host folder a `bind`
//!   of its freshly re-resolved realpath, read-only per its mode, `rprivate` and
//!   non-recursive ([`folder`]). No other host path ever reaches a sandbox;
//! - a read-only root filesystem with a tmpfs `/tmp`, unless the spec opts out;
//! - a writable home: a size-capped `nosuid,nodev` tmpfs at `/home/agent` owned by the
//!   sandbox user (mode 0700);
//! - a small `noexec` tmpfs at `/run/airlock` owned by the sandbox user, where init writes the
//!   trust files when the frame carries a CA ([`trust`]);
//! - PID 1 is `airlock-init` from the node's runtime volume (read-only at `/.airlock`), with
//!   stdin open for its binding frame (`OpenStdin`, not `StdinOnce`). `Config.Env` holds only
//!   init's settings: nothing per-run (the user's and secret variables, `HOME`, the proxy
//!   variables with their credential, the trust variables, the argv and the working
//!   directory travel in the frame, see `crate::sandboxes::launch`). Docker adds the image's
//!   `Env` to the container's, so init, and through it the workload, starts from it;
//! - pids, memory (with `MemorySwap == Memory`, so no swap), CPU and `nofile` limits, and a
//!   size-capped `json-file` log;
//! - exactly one network: the sandbox's own, at a static address (the proxy variables in the
//!   frame point at the proxy's address on it);
//! - the `airlock.*` labels written here and nowhere else (user labels cannot carry them).

pub mod disk;
pub mod egress;
pub mod files;
pub mod folder;
pub mod helper;
pub mod pool;
pub mod probe;
pub mod runtime;
pub mod trust;
pub mod volume;

use std::collections::HashMap;

use airlock_wire::GATEWAY_HOST;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig,
    Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig, ResourcesUlimits,
};

use crate::sandbox::names::network_name;
use crate::sandbox::subnet::SandboxSubnet;
use crate::sandbox::{Home, RootFs, SandboxId, SandboxSpec, HOME_DIR};

/// Label holding the sandbox id on every managed object.
pub const LABEL_SANDBOX_ID: &str = "airlock.sandbox.id";
/// Label holding the sandbox generation (fences stale workers).
pub const LABEL_GENERATION: &str = "airlock.generation";
/// Label holding the node name.
pub const LABEL_NODE: &str = "airlock.node";
/// Init's setting naming the roots seed files may be written under.
pub use airlock_init::settings::WRITABLE_VAR;
/// The egress proxy's port on every sandbox network.
pub const PROXY_PORT: u16 = airlock_wire::PROXY_PORT;
/// Mount options of the tmpfs `/tmp` that comes with a read-only root.
pub const TMP_TMPFS: &str = "rw,nosuid,nodev,size=64m";
/// Mount options of the home tmpfs, before its size and owner.
pub const HOME_TMPFS: &str = "rw,nosuid,nodev,mode=0700";
/// Open-file limit (soft and hard).
pub const NOFILE_LIMIT: i64 = 4096;
/// Largest `json-file` log file.
pub const LOG_MAX_SIZE: &str = "10m";
/// Most rotated `json-file` log files.
pub const LOG_MAX_FILE: &str = "3";

/// Where and as what one sandbox incarnation is created.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    /// The sandbox.
    pub id: SandboxId,
    /// Its generation; bumped for each incarnation.
    pub generation: i64,
    /// The node it runs on.
    pub node: &'a str,
    /// Its allocated /29.
    pub subnet: SandboxSubnet,
    /// Its `Proxy-Authorization` token; URL-safe (the caller generates it that way), because
    /// it travels in the userinfo of the proxy URLs.
    pub proxy_token: &'a str,
}

/// The `airlock.*` labels of every object that belongs to this incarnation.
pub fn labels(placement: &Placement<'_>) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_SANDBOX_ID.to_owned(), placement.id.to_string()),
        (
            LABEL_GENERATION.to_owned(),
            placement.generation.to_string(),
        ),
        (LABEL_NODE.to_owned(), placement.node.to_owned()),
    ])
}

/// The body of `POST /networks/create`: an `internal` bridge on the sandbox's /29.
pub fn network_body(placement: &Placement<'_>) -> NetworkCreateRequest {
    let subnet = placement.subnet;
    NetworkCreateRequest {
        name: network_name(placement.id),
        driver: Some("bridge".to_owned()),
        internal: Some(true),
        attachable: Some(false),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".to_owned()),
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.net().to_string()),
                gateway: Some(subnet.gateway().to_string()),
                ..IpamConfig::default()
            }]),
            options: None,
        }),
        labels: Some(labels(placement)),
        ..NetworkCreateRequest::default()
    }
}

/// The proxy variables: every common spelling, with the credential in the URL, no bypass
/// but the proxy's own gateway name, and Node's opt-in to honour them.
pub fn proxy_env(placement: &Placement<'_>) -> Vec<String> {
    let url = format!(
        "http://{}:{}@{}:{PROXY_PORT}",
        placement.id,
        placement.proxy_token,
        placement.subnet.proxy()
    );
    let mut env: Vec<String> = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
        .into_iter()
        .flat_map(|name| [name.to_owned(), name.to_ascii_lowercase()])
        .map(|name| format!("{name}={url}"))
        .collect();
    // The proxy's own gateway is reached directly, never through the proxy.
    env.extend(["NO_PROXY", "no_proxy"].map(|name| format!("{name}={GATEWAY_HOST}")));
    env.push("NODE_USE_ENV_PROXY=1".to_owned());
    env
}

/// Init's own settings: the roots its seed files may be written under (`/tmp`, the home and
/// every read-write volume; host folders are left out).
pub fn init_env(spec: &SandboxSpec) -> Vec<String> {
    let mut roots = vec!["/tmp".to_owned()];
    if spec.home().is_some() {
        roots.push(HOME_DIR.to_owned());
    }
    let volumes = spec.mounts().iter().filter(|m| !m.read_only);
    roots.extend(volumes.map(|m| m.target.as_str().to_owned()));
    roots.dedup();
    vec![format!("{WRITABLE_VAR}={}", roots.join(":"))]
}

/// The body of `POST /containers/create`; `runtime` is the hash of the node's runtime volume.
pub fn container_body(
    spec: &SandboxSpec,
    placement: &Placement<'_>,
    runtime: &str,
) -> ContainerCreateBody {
    let mut labels = labels(placement);
    labels.extend(spec.labels().clone());
    let network = network_name(placement.id);
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(placement.subnet.sandbox().to_string()),
            ..EndpointIpamConfig::default()
        }),
        ..EndpointSettings::default()
    };
    ContainerCreateBody {
        image: Some(spec.image().as_str().to_owned()),
        entrypoint: Some(vec![runtime::INIT_PATH.to_owned()]),
        cmd: Some(Vec::new()),
        env: Some(init_env(spec)),
        user: Some(spec.run_as().to_string()),
        // Docker creates a missing working directory (init then enters it, from the frame).
        working_dir: spec.workdir().map(|w| w.as_str().to_owned()),
        open_stdin: Some(true),
        stdin_once: Some(false),
        attach_stdin: Some(true),
        labels: Some(labels),
        network_disabled: Some(false),
        host_config: Some(HostConfig {
            // The proxy's gateway, by name (`airlock_wire::gateway`).
            extra_hosts: Some(vec![format!("{GATEWAY_HOST}:{}", placement.subnet.proxy())]),
            ..host_config(spec, network.clone(), runtime)
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, endpoint)])),
        }),
        ..ContainerCreateBody::default()
    }
}

fn host_config(spec: &SandboxSpec, network: String, runtime: &str) -> HostConfig {
    let limits = spec.limits();
    let memory = mib_to_bytes(limits.memory_mb);
    let read_only = spec.rootfs() == RootFs::ReadOnly;
    HostConfig {
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(Vec::new()),
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        privileged: Some(false),
        readonly_rootfs: Some(read_only),
        tmpfs: tmpfs(spec),
        pids_limit: Some(i64::try_from(limits.pids).unwrap_or(i64::MAX)),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(limits.cpus.nanos()),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".to_owned()),
            soft: Some(NOFILE_LIMIT),
            hard: Some(NOFILE_LIMIT),
        }]),
        storage_opt: limits
            .disk_mb
            .map(|mb| HashMap::from([("size".to_owned(), format!("{mb}M"))])),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
                ("max-file".to_owned(), LOG_MAX_FILE.to_owned()),
            ])),
        }),
        devices: Some(Vec::new()),
        binds: Some(Vec::new()),
        mounts: Some(mounts(spec, runtime)),
        publish_all_ports: Some(false),
        ipc_mode: Some("private".to_owned()),
        network_mode: Some(network),
        auto_remove: Some(false),
        ..HostConfig::default()
    }
}

/// The runtime volume, the bound volume mounts, then the bound folder binds.
fn mounts(spec: &SandboxSpec, runtime: &str) -> Vec<bollard::models::Mount> {
    let volumes = spec.mounts().iter().filter_map(|mount| {
        let bound = mount.bound.as_ref()?;
        Some(volume::volume_mount(
            &bound.docker_name,
            mount.target.as_str(),
            mount.read_only,
        ))
    });
    let folders = spec.folders().iter().filter_map(|mount| {
        let bound = mount.bound.as_ref()?;
        Some(folder::folder_mount(bound, mount.target.as_str()))
    });
    std::iter::once(runtime::runtime_mount(runtime))
        .chain(volumes)
        .chain(folders)
        .collect()
}

/// The tmpfs mounts: `/tmp` with a read-only root, the home, and the trust directory that
/// init writes the CA files into (owned by the sandbox user, as init runs as that user).
fn tmpfs(spec: &SandboxSpec) -> Option<HashMap<String, String>> {
    let mut mounts = HashMap::new();
    if spec.rootfs() == RootFs::ReadOnly {
        mounts.insert("/tmp".to_owned(), TMP_TMPFS.to_owned());
    }
    let user = spec.run_as();
    let trust = format!("{},uid={},gid={}", trust::TRUST_TMPFS, user.uid, user.gid);
    mounts.insert(trust::TRUST_DIR.to_owned(), trust);
    if let Some(Home::Tmpfs { size_mb }) = spec.home() {
        let options = format!(
            "{HOME_TMPFS},size={size_mb}m,uid={},gid={}",
            user.uid, user.gid
        );
        mounts.insert(HOME_DIR.to_owned(), options);
    }
    Some(mounts)
}

/// MiB to bytes; validated specs stay far below the bound, so saturation never triggers.
fn mib_to_bytes(mb: u64) -> i64 {
    i64::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
