//! The egress proxy's Docker objects on a node: the pure bodies of its bridge network and its
//! hardened container (the calls that use them are in [`crate::docker::client`]).
//!
//! Invariants of the proxy container body:
//! - non-root (UID 65532), `CapDrop: [ALL]`, `no-new-privileges`, a read-only root
//!   filesystem, no devices, no binds, not privileged;
//! - on the egress bridge at a static address (`.2` of its subnet), where the admin API
//!   listens; the proxy port listens on every interface (each sandbox reaches it at the `.2`
//!   of its own /29), the admin port only on the bridge address, so no sandbox network sees it;
//! - the admin port is published on the node's outer address only;
//! - controlled mode: every source is denied until the controller pushes its entry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig,
    Ipam, IpamConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use ipnet::{IpNet, Ipv4Net};

use super::{LOG_MAX_FILE, LOG_MAX_SIZE, PROXY_PORT};

/// The proxy container's name on every node.
pub const EGRESS_CONTAINER: &str = "airlock-egress";
/// The egress bridge (the proxy's way out, NATed by the node).
pub const EGRESS_NETWORK: &str = "airlock-egress";
/// The volume holding the proxy's admin TLS files.
pub const EGRESS_CERTS_VOLUME: &str = "airlock-egress-certs";
/// Where that volume is mounted in the proxy.
pub const EGRESS_CERTS_DIR: &str = "/certs";
/// The operator's extra upstream CAs, uploaded beside the admin TLS files.
pub const UPSTREAM_CA_FILE: &str = "upstream-ca.pem";
/// The proxy's admin API port (the self-test probe checks that sandboxes cannot reach it).
pub const ADMIN_PORT: u16 = 3129;
/// The proxy's user.
pub const EGRESS_USER: &str = "65532:65532";
/// The label marking the proxy's objects (never a sandbox's: the reconciler ignores them).
pub const LABEL_ROLE: &str = "airlock.role";
/// [`LABEL_ROLE`]'s value on the proxy's objects.
pub const ROLE_EGRESS: &str = "egress";
/// The proxy's process limit.
const EGRESS_PIDS: i64 = 256;
/// The proxy's memory limit (bytes).
const EGRESS_MEMORY: i64 = 512 * 1024 * 1024;

/// How the proxy runs on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPlacement {
    /// The proxy image.
    pub image: String,
    /// The egress bridge's subnet; the proxy takes `.2`.
    pub subnet: Ipv4Net,
    /// The node address the admin port is published on.
    pub admin_ip: IpAddr,
    /// Operator exceptions (`--allow-cidr`).
    pub allow_cidrs: Vec<IpNet>,
    /// DNS servers (`--dns`); empty: the container's resolver.
    pub dns: Vec<SocketAddr>,
    /// Whether [`UPSTREAM_CA_FILE`] is uploaded with the certificates (`--upstream-ca`).
    pub upstream_ca: bool,
}

// === impl ProxyPlacement ===

impl ProxyPlacement {
    /// The proxy's address on the egress bridge.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        bridge_ip(self.subnet)
    }

    /// The egress bridge's gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// Where the controller reaches the admin API.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.admin_ip, ADMIN_PORT)
    }

    /// The `airlock-egress serve` arguments.
    pub fn cmd(&self) -> Vec<String> {
        let mut cmd: Vec<String> = [
            "serve",
            "--mode",
            "controlled",
            "--listen",
            &format!("0.0.0.0:{PROXY_PORT}"),
            "--admin-listen",
            &format!("{}:{ADMIN_PORT}", self.bridge_ip()),
            "--admin-tls-dir",
            EGRESS_CERTS_DIR,
        ]
        .map(str::to_owned)
        .into();
        for cidr in &self.allow_cidrs {
            cmd.extend(["--allow-cidr".to_owned(), cidr.to_string()]);
        }
        for dns in &self.dns {
            cmd.extend(["--dns".to_owned(), dns.to_string()]);
        }
        if self.upstream_ca {
            let file = format!("{EGRESS_CERTS_DIR}/{UPSTREAM_CA_FILE}");
            cmd.extend(["--upstream-ca".to_owned(), file]);
        }
        cmd
    }
}

/// The proxy's address on an egress bridge of `subnet`: its `.2` (the `.1` is the gateway).
pub fn bridge_ip(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 2)
}

pub(crate) fn role_labels() -> HashMap<String, String> {
    HashMap::from([(LABEL_ROLE.to_owned(), ROLE_EGRESS.to_owned())])
}

/// The body of the egress bridge: a plain (NATed) bridge on the configured subnet.
pub fn egress_network_body(placement: &ProxyPlacement) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: EGRESS_NETWORK.to_owned(),
        driver: Some("bridge".to_owned()),
        internal: Some(false),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".to_owned()),
            config: Some(vec![IpamConfig {
                subnet: Some(placement.subnet.to_string()),
                gateway: Some(placement.gateway().to_string()),
                ..IpamConfig::default()
            }]),
            options: None,
        }),
        labels: Some(role_labels()),
        ..NetworkCreateRequest::default()
    }
}

/// The body of the proxy container.
pub fn egress_container_body(placement: &ProxyPlacement) -> ContainerCreateBody {
    let admin = format!("{ADMIN_PORT}/tcp");
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(placement.bridge_ip().to_string()),
            ..EndpointIpamConfig::default()
        }),
        ..EndpointSettings::default()
    };
    let binding = PortBinding {
        host_ip: Some(placement.admin_ip.to_string()),
        host_port: Some(ADMIN_PORT.to_string()),
    };
    ContainerCreateBody {
        image: Some(placement.image.clone()),
        cmd: Some(placement.cmd()),
        env: Some(vec![
            "LOG_FORMAT=json".to_owned(),
            "RUST_LOG=info".to_owned(),
        ]),
        user: Some(EGRESS_USER.to_owned()),
        labels: Some(role_labels()),
        exposed_ports: Some(vec![admin.clone()]),
        host_config: Some(HostConfig {
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(Vec::new()),
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            privileged: Some(false),
            readonly_rootfs: Some(true),
            pids_limit: Some(EGRESS_PIDS),
            memory: Some(EGRESS_MEMORY),
            memory_swap: Some(EGRESS_MEMORY),
            devices: Some(Vec::new()),
            binds: Some(Vec::new()),
            mounts: Some(vec![Mount {
                target: Some(EGRESS_CERTS_DIR.to_owned()),
                source: Some(EGRESS_CERTS_VOLUME.to_owned()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                ..Mount::default()
            }]),
            port_bindings: Some(HashMap::from([(admin, Some(vec![binding]))])),
            publish_all_ports: Some(false),
            network_mode: Some(EGRESS_NETWORK.to_owned()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
                    ("max-file".to_owned(), LOG_MAX_FILE.to_owned()),
                ])),
            }),
            ..HostConfig::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(EGRESS_NETWORK.to_owned(), endpoint)])),
        }),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement() -> ProxyPlacement {
        ProxyPlacement {
            image: "airlock/egress:dev".to_owned(),
            subnet: "10.212.0.0/24".parse().unwrap(),
            admin_ip: "10.231.7.2".parse().unwrap(),
            allow_cidrs: vec!["10.231.7.80/32".parse().unwrap()],
            dns: vec!["10.231.7.53:53".parse().unwrap()],
            upstream_ca: false,
        }
    }

    #[test]
    fn an_upstream_ca_is_read_from_the_certificate_volume() {
        let p = ProxyPlacement {
            upstream_ca: true,
            ..placement()
        };
        let cmd = p.cmd().join(" ");
        assert!(
            cmd.ends_with("--upstream-ca /certs/upstream-ca.pem"),
            "{cmd}"
        );
    }

    #[test]
    fn admin_listens_on_the_bridge_address_only() {
        let p = placement();
        assert_eq!(p.bridge_ip(), Ipv4Addr::new(10, 212, 0, 2));
        let cmd = p.cmd().join(" ");
        assert_eq!(
            cmd,
            "serve --mode controlled --listen 0.0.0.0:3128 --admin-listen 10.212.0.2:3129 \
             --admin-tls-dir /certs --allow-cidr 10.231.7.80/32 --dns 10.231.7.53:53"
        );
    }

    #[test]
    fn proxy_container_is_hardened_and_publishes_admin_on_the_node_address() {
        let body = egress_container_body(&placement());
        assert_eq!(body.user.as_deref(), Some(EGRESS_USER));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.privileged, Some(false));
        let ports = host.port_bindings.unwrap();
        let binding = ports["3129/tcp"].clone().unwrap();
        assert_eq!(binding[0].host_ip.as_deref(), Some("10.231.7.2"));
        assert_eq!(ports.len(), 1, "only the admin port is published");
        let network = egress_network_body(&placement());
        assert_eq!(network.internal, Some(false));
    }
}
