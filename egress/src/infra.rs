//! The proxy's infrastructure set: every address that belongs to the deployment, which no
//! policy, report mode or operator exception may open (see `airlock_egress_policy::infra`).
//!
//! Three sources, and the proxy enforces their union:
//! - **pushed** by the controller (`PUT /v1/infrastructure`): the sandbox pools, the egress
//!   bridge, the node network, the DinD and controller addresses;
//! - **configured** by the operator (`--deny-cidr`, `AIRLOCK_EGRESS_DENY_CIDRS`);
//! - **derived** from the proxy itself, so that a missing push cannot leave a hole: for every
//!   non-loopback interface its address (a host route) and, when that subnet is not globally
//!   routable, the whole subnet; plus the listen and admin addresses. It is derived again at
//!   start, on every sandbox push (the controller attaches the proxy to the sandbox's network
//!   just before) and every [`DERIVE_INTERVAL`]. Loopback interfaces are not derived: their
//!   addresses are loopback-class and denied anyway unless the operator names them exactly.
//!
//! Reading the effective set is one lock-free-in-practice read lock and an `Arc` clone, so
//! every request can take it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use airlock_egress_policy::{net_is_global, Infrastructure};
use ipnet::IpNet;

/// How often the interfaces are read again.
pub const DERIVE_INTERVAL: Duration = Duration::from_secs(5);

/// One address of one interface, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The address and its subnet's prefix length (not truncated).
    pub net: IpNet,
    /// Whether the interface is a loopback interface.
    pub loopback: bool,
}

/// Where interface addresses come from: the system, or a fixed list in tests.
pub trait Interfaces: Send + Sync + fmt::Debug {
    /// Every address of every interface.
    fn addrs(&self) -> std::io::Result<Vec<InterfaceAddr>>;
}

/// The host's interfaces, through `getifaddrs(3)` (a netlink query; no capability needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemInterfaces;

/// The three sources of the set and the union the proxy enforces.
#[derive(Debug)]
pub struct InfraSet {
    configured: Vec<IpNet>,
    /// The proxy's own listen and admin addresses (non-loopback, non-wildcard).
    own: Vec<IpNet>,
    interfaces: Box<dyn Interfaces>,
    sources: RwLock<Sources>,
    effective: RwLock<Arc<Infrastructure>>,
}

/// The lists as they are, for `GET /v1/infrastructure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfraReport {
    /// The union the proxy enforces, normalised.
    pub effective: Vec<IpNet>,
    /// The controller's list.
    pub pushed: Vec<IpNet>,
    /// `--deny-cidr` / `AIRLOCK_EGRESS_DENY_CIDRS`.
    pub configured: Vec<IpNet>,
    /// From the proxy's own interfaces and listen addresses.
    pub derived: Vec<IpNet>,
}

#[derive(Debug, Default)]
struct Sources {
    pushed: Vec<IpNet>,
    derived: Vec<IpNet>,
}

// === impl SystemInterfaces ===

impl Interfaces for SystemInterfaces {
    fn addrs(&self) -> std::io::Result<Vec<InterfaceAddr>> {
        let addrs = if_addrs::get_if_addrs()?
            .into_iter()
            .filter_map(|iface| {
                let loopback = iface.is_loopback();
                let (ip, len): (IpAddr, u8) = match iface.addr {
                    if_addrs::IfAddr::V4(v4) => (v4.ip.into(), v4.prefixlen),
                    if_addrs::IfAddr::V6(v6) => (v6.ip.into(), v6.prefixlen),
                };
                let net = IpNet::new(ip, len).ok()?;
                Some(InterfaceAddr { net, loopback })
            })
            .collect();
        Ok(addrs)
    }
}

// === impl InfraSet ===

impl InfraSet {
    /// A set with the operator's CIDRs and the proxy's own addresses; call
    /// [`InfraSet::refresh`] to derive from the interfaces.
    pub fn new(
        configured: Vec<IpNet>,
        own_addrs: &[SocketAddr],
        interfaces: Box<dyn Interfaces>,
    ) -> Self {
        let own = own_addrs
            .iter()
            .map(|a| a.ip().to_canonical())
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .map(IpNet::from)
            .collect();
        let set = Self {
            configured,
            own,
            interfaces,
            sources: RwLock::new(Sources::default()),
            effective: RwLock::new(Arc::new(Infrastructure::none())),
        };
        set.recompute();
        set
    }

    /// The set the proxy enforces now.
    pub fn current(&self) -> Arc<Infrastructure> {
        Arc::clone(
            &self
                .effective
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Replaces the controller's list.
    pub fn set_pushed(&self, cidrs: Vec<IpNet>) {
        self.write().pushed = cidrs;
        self.recompute();
    }

    /// Reads the interfaces again. A failure keeps the previous derivation (and is returned
    /// for the caller to log): an interface read that fails must not shrink the set.
    pub fn refresh(&self) -> std::io::Result<()> {
        let mut derived = derive(&self.interfaces.addrs()?);
        derived.extend(self.own.iter().copied());
        let changed = {
            let mut sources = self.write();
            let changed = sources.derived != derived;
            sources.derived = derived;
            changed
        };
        if changed {
            self.recompute();
        }
        Ok(())
    }

    /// The lists, for the admin API.
    pub fn report(&self) -> InfraReport {
        let (pushed, derived) = {
            let sources = self.sources.read().unwrap_or_else(PoisonError::into_inner);
            (sources.pushed.clone(), sources.derived.clone())
        };
        InfraReport {
            effective: self.current().cidrs().to_vec(),
            pushed,
            configured: self.configured.clone(),
            derived,
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Sources> {
        self.sources.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn recompute(&self) {
        let all: Vec<IpNet> = {
            let sources = self.sources.read().unwrap_or_else(PoisonError::into_inner);
            let mut all = self.configured.clone();
            all.extend(sources.pushed.iter().chain(&sources.derived).copied());
            all.extend(self.own.iter().copied());
            all
        };
        let next = Arc::new(Infrastructure::new(all));
        tracing::info!(infra.cidrs = next.len(), "Infrastructure set updated");
        *self
            .effective
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next;
    }
}

/// What the interfaces add: each non-loopback address as a host route, and its subnet when
/// that subnet is not globally routable (a public subnet may hold the very destinations the
/// sandboxes are meant to reach; the proxy's own address on it is still denied).
pub fn derive(addrs: &[InterfaceAddr]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for addr in addrs.iter().filter(|a| !a.loopback) {
        let ip = addr.net.addr().to_canonical();
        if ip.is_loopback() || ip.is_unspecified() {
            continue;
        }
        out.push(IpNet::from(ip));
        let subnet = addr.net.trunc();
        if !net_is_global(&subnet) {
            out.push(subnet);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(net: &str, loopback: bool) -> InterfaceAddr {
        InterfaceAddr {
            net: net.parse().unwrap(),
            loopback,
        }
    }

    #[derive(Debug)]
    struct Fixed(Vec<InterfaceAddr>);

    impl Interfaces for Fixed {
        fn addrs(&self) -> std::io::Result<Vec<InterfaceAddr>> {
            Ok(self.0.clone())
        }
    }

    fn strings(nets: &[IpNet]) -> Vec<String> {
        nets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn derivation_keeps_private_subnets_and_public_host_routes() {
        let derived = derive(&[
            addr("127.0.0.1/8", true),
            addr("::1/128", true),
            addr("10.212.0.2/24", false),
            addr("10.213.0.10/29", false),
            addr("172.18.0.3/16", false),
            addr("93.184.215.14/24", false),
            addr("fe80::1/64", false),
            addr("2606:4700::5/64", false),
        ]);
        assert_eq!(
            strings(&derived),
            [
                "10.212.0.2/32",
                "10.212.0.0/24",
                "10.213.0.10/32",
                "10.213.0.8/29",
                "172.18.0.3/32",
                "172.18.0.0/16",
                "93.184.215.14/32",
                "fe80::1/128",
                "fe80::/64",
                "2606:4700::5/128",
            ]
        );
    }

    #[test]
    fn the_union_is_enforced_and_reported() {
        let set = InfraSet::new(
            vec!["192.0.2.0/24".parse().unwrap()],
            &[
                "0.0.0.0:3128".parse().unwrap(),
                "10.212.0.2:3129".parse().unwrap(),
                "127.0.0.1:9".parse().unwrap(),
            ],
            Box::new(Fixed(vec![addr("10.213.0.2/29", false)])),
        );
        assert!(set
            .current()
            .contains("10.213.0.3".parse().unwrap())
            .is_none());
        set.refresh().unwrap();
        set.set_pushed(vec!["10.214.0.0/16".parse().unwrap()]);
        let infra = set.current();
        for hit in ["10.213.0.3", "10.214.9.9", "192.0.2.1", "10.212.0.2"] {
            assert!(infra.contains(hit.parse().unwrap()).is_some(), "{hit}");
        }
        for miss in ["10.212.0.3", "127.0.0.1", "0.0.0.0"] {
            assert!(infra.contains(miss.parse().unwrap()).is_none(), "{miss}");
        }
        let report = set.report();
        assert_eq!(strings(&report.pushed), ["10.214.0.0/16"]);
        assert_eq!(strings(&report.configured), ["192.0.2.0/24"]);
        assert_eq!(
            strings(&report.derived),
            ["10.213.0.2/32", "10.213.0.0/29", "10.212.0.2/32"]
        );
        assert_eq!(
            strings(&report.effective),
            [
                "10.212.0.2/32",
                "10.213.0.0/29",
                "10.214.0.0/16",
                "192.0.2.0/24"
            ]
        );
    }
}
