//! The infrastructure set: every address that belongs to the Airlock deployment itself (sandbox
//! pools, the egress bridge, the node network, the controller, the proxy's own addresses).
//!
//! No policy opens it: [`crate::evaluate`] checks every address against this set before any
//! other rule, so it wins over operator exceptions, policy CIDRs, report mode and
//! `allow_public`, on every port. An IPv6 address that embeds an IPv4 address (mapped, NAT64,
//! 6to4, Teredo, ...) is checked by its inner address as well.
//!
//! Invariant: the set only holds normalised CIDRs (truncated, IPv4-mapped prefixes unwrapped,
//! sorted, without duplicates or CIDRs inside another member).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ip::{canonical, embedded_v4};
use crate::rules::normalize_net;

/// A normalised list of CIDRs no sandbox may reach. Cheap to query; build it once per change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Infrastructure {
    nets: Vec<IpNet>,
}

// === impl Infrastructure ===

impl Infrastructure {
    /// The set of exactly these CIDRs, normalised: truncated, IPv4-mapped prefixes unwrapped,
    /// sorted, and without duplicates or members that another member contains.
    pub fn new(cidrs: Vec<IpNet>) -> Self {
        let mut nets: Vec<IpNet> = cidrs.into_iter().map(normalize_net).collect();
        nets.sort_unstable();
        nets.dedup();
        let covered = |net: &IpNet, all: &[IpNet]| {
            all.iter().any(|other| other != net && other.contains(net))
        };
        let kept: Vec<IpNet> = nets
            .iter()
            .filter(|net| !covered(net, &nets))
            .copied()
            .collect();
        Infrastructure { nets: kept }
    }

    /// The empty set.
    pub fn none() -> Self {
        Infrastructure::default()
    }

    /// The normalised CIDRs.
    pub fn cidrs(&self) -> &[IpNet] {
        &self.nets
    }

    /// How many CIDRs the set holds.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The member containing `ip`: the address itself (IPv4-mapped unwrapped) or, for an IPv6
    /// address that embeds an IPv4 address, that inner address.
    pub fn contains(&self, ip: IpAddr) -> Option<&IpNet> {
        let ip = canonical(ip);
        let inner = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.nets
            .iter()
            .find(|net| net.contains(&ip) || inner.is_some_and(|inner| net.contains(&inner)))
    }
}
