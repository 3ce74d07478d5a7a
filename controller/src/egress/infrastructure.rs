//! The deployment's own address space (DESIGN.md invariant 9), which the proxy refuses as
//! `infrastructure` whatever a policy says, and which the API refuses in a policy's
//! `allow_cidrs` (an entry that can never take effect).
//!
//! [`compute`] is pure: from the configured pools and addresses, the controller's interfaces
//! and the DinD's networks it makes one normalised list. [`gather`] is the thin part that
//! reads the interfaces (`if-addrs`) and asks the DinD (through `docker`).
//!
//! What goes in:
//! - every sandbox pool and the egress bridge subnet;
//! - every DinD address the controller knows (the Docker host, the admin address, the
//!   self-test's node addresses) as host routes, and the subnet of the controller's own
//!   interface that holds one of them (the node network) when that subnet is not global;
//! - the controller's own interface addresses (and its address as the node sees it,
//!   `AIRLOCK_SELFTEST_CONTROLLER`) as host routes only: on a test host every Docker bridge
//!   has a host interface, and their subnets are not the deployment's;
//! - the subnets of every network the DinD reports (`docker0` included);
//! - the operator's `AIRLOCK_INFRA_CIDRS`.
//!
//! Loopback and link-local addresses are left out: no policy CIDR can admit them anyway, and
//! listing them would override the operator exceptions that in-process tests rely on.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use tracing::warn;

use crate::config::Config;
use crate::docker::DockerClient;
use airlock_egress_policy::net_is_global;

/// One address of one of the controller's interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The address.
    pub ip: IpAddr,
    /// Its prefix length on that interface.
    pub prefix: u8,
}

/// Everything [`compute`] takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfraSources {
    /// `AIRLOCK_SANDBOX_SUBNETS`.
    pub pools: Vec<Ipv4Net>,
    /// `AIRLOCK_EGRESS_SUBNET`.
    pub egress_subnet: Option<Ipv4Net>,
    /// DinD addresses: the Docker host, the admin address, `AIRLOCK_SELFTEST_NODE_ADDRS`.
    pub node_addrs: Vec<IpAddr>,
    /// The controller's address as the node sees it, when configured.
    pub controller: Option<IpAddr>,
    /// The controller's interface addresses.
    pub interfaces: Vec<InterfaceAddr>,
    /// The subnets of the DinD's networks.
    pub docker_subnets: Vec<IpNet>,
    /// `AIRLOCK_INFRA_CIDRS`.
    pub operator: Vec<IpNet>,
}

/// The list: every source above, truncated, sorted, and without entries inside another.
pub fn compute(sources: &InfraSources) -> Vec<IpNet> {
    let pools = sources
        .pools
        .iter()
        .chain(&sources.egress_subnet)
        .map(|n| IpNet::V4(*n));
    let nodes = sources
        .node_addrs
        .iter()
        .copied()
        .filter(|ip| counts(*ip))
        .map(IpNet::from);
    let node_networks = sources
        .interfaces
        .iter()
        .filter_map(|i| IpNet::new(i.ip, i.prefix).ok().map(|net| net.trunc()))
        .filter(|net| {
            sources
                .node_addrs
                .iter()
                .any(|ip| counts(*ip) && net.contains(ip))
        })
        .filter(|net| !net_is_global(net));
    let own = sources
        .interfaces
        .iter()
        .map(|i| i.ip)
        .chain(sources.controller)
        .filter(|ip| counts(*ip))
        .map(IpNet::from);
    let all = pools
        .chain(nodes)
        .chain(node_networks)
        .chain(own)
        .chain(sources.docker_subnets.iter().copied())
        .chain(sources.operator.iter().copied());
    normalise(all)
}

/// The sources the configuration alone gives (no interfaces, no DinD networks): what the API
/// checks against before the plane has gathered the rest.
pub fn configured(config: &Config) -> InfraSources {
    let mut node_addrs: Vec<IpAddr> = config.selftest.node_addrs.clone();
    node_addrs.extend(config.egress.admin_ip);
    node_addrs.extend(config.docker.host_ip());
    InfraSources {
        pools: config.sandbox_subnets.clone(),
        egress_subnet: Some(config.egress.subnet),
        node_addrs,
        controller: config.selftest.controller.map(|addr| addr.ip()),
        operator: config.policy.infra_cidrs.clone(),
        ..InfraSources::default()
    }
}

/// `base` completed with the controller's interfaces and the DinD's networks; a source that
/// cannot be read is logged and left out (the proxy derives its own interfaces too).
pub async fn gather(base: &InfraSources, docker: &DockerClient) -> InfraSources {
    let mut sources = base.clone();
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => {
            sources.interfaces = interfaces
                .iter()
                .map(|i| InterfaceAddr {
                    ip: i.ip(),
                    prefix: match &i.addr {
                        if_addrs::IfAddr::V4(v4) => v4.prefixlen,
                        if_addrs::IfAddr::V6(v6) => v6.prefixlen,
                    },
                })
                .collect();
        }
        Err(error) => warn!(%error, "Cannot list the controller's interfaces"),
    }
    match docker.network_subnets().await {
        Ok(subnets) => sources.docker_subnets = subnets,
        Err(error) => warn!(%error, "Cannot list the node's networks"),
    }
    sources
}

/// Whether an address belongs in the list (see the module doc).
fn counts(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    !(ip.is_loopback() || ip.is_unspecified() || link_local)
}

fn normalise(nets: impl Iterator<Item = IpNet>) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = nets.map(|n| n.trunc()).collect();
    nets.sort();
    nets.dedup();
    let kept: Vec<IpNet> = nets
        .iter()
        .filter(|n| !nets.iter().any(|other| other != *n && other.contains(*n)))
        .copied()
        .collect();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn iface(cidr: &str) -> InterfaceAddr {
        let (ip, prefix) = cidr.split_once('/').unwrap();
        InterfaceAddr {
            ip: ip.parse().unwrap(),
            prefix: prefix.parse().unwrap(),
        }
    }

    fn base() -> InfraSources {
        InfraSources {
            pools: vec!["10.213.0.0/16".parse().unwrap()],
            egress_subnet: Some("10.212.0.0/24".parse().unwrap()),
            ..InfraSources::default()
        }
    }

    #[test]
    fn the_list_from_each_source() {
        let table: Vec<(&str, InfraSources, Vec<&str>)> = vec![
            (
                "pools and the egress bridge",
                base(),
                vec!["10.212.0.0/24", "10.213.0.0/16"],
            ),
            (
                "a DinD address, and the node network holding it",
                InfraSources {
                    node_addrs: vec!["10.231.7.2".parse().unwrap()],
                    interfaces: vec![iface("10.231.7.1/24"), iface("127.0.0.1/8")],
                    ..base()
                },
                vec!["10.212.0.0/24", "10.213.0.0/16", "10.231.7.0/24"],
            ),
            (
                "own addresses as host routes only, loopback and link-local left out",
                InfraSources {
                    interfaces: vec![
                        iface("172.17.0.1/16"),
                        iface("192.168.5.10/24"),
                        iface("127.0.0.1/8"),
                        iface("::1/128"),
                        iface("fe80::1/64"),
                        iface("2001:db8::5/64"),
                    ],
                    controller: Some("10.231.7.9".parse().unwrap()),
                    ..base()
                },
                vec![
                    "10.212.0.0/24",
                    "10.213.0.0/16",
                    "10.231.7.9/32",
                    "172.17.0.1/32",
                    "192.168.5.10/32",
                    "2001:db8::5/128",
                ],
            ),
            (
                "a public node network is not listed, its addresses are",
                InfraSources {
                    node_addrs: vec!["203.0.114.9".parse().unwrap()],
                    interfaces: vec![iface("203.0.114.8/24")],
                    ..base()
                },
                vec![
                    "10.212.0.0/24",
                    "10.213.0.0/16",
                    "203.0.114.8/32",
                    "203.0.114.9/32",
                ],
            ),
            (
                "a loopback Docker host is not listed",
                InfraSources {
                    node_addrs: vec!["127.0.0.1".parse().unwrap()],
                    interfaces: vec![iface("127.0.0.1/8")],
                    ..base()
                },
                vec!["10.212.0.0/24", "10.213.0.0/16"],
            ),
            (
                "DinD networks and operator CIDRs; nested entries collapse",
                InfraSources {
                    docker_subnets: nets(&["172.18.0.0/16", "10.213.0.8/29", "10.212.0.0/24"]),
                    operator: nets(&["10.99.0.7/16", "172.18.5.0/24"]),
                    ..base()
                },
                vec![
                    "10.99.0.0/16",
                    "10.212.0.0/24",
                    "10.213.0.0/16",
                    "172.18.0.0/16",
                ],
            ),
        ];
        for (what, sources, want) in table {
            assert_eq!(compute(&sources), nets(&want), "{what}");
        }
    }
}
