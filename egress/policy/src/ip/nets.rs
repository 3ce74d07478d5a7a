//! Whole-network questions over the address table: is every address of a CIDR global, or is
//! every address in a class no sandbox policy may admit?
//!
//! Both are exact, not sampled: a CIDR with no table row strictly inside it has one class (the
//! class of its first address), and any other CIDR is split in halves until each piece has one.
//! Only the pieces on the way to the table's rows are visited, so even `::/0` costs a few
//! thousand steps. An IPv4-mapped CIDR is judged as the IPv4 CIDR it denotes, as `classify`
//! judges mapped addresses.

use std::ops::ControlFlow;

use ipnet::IpNet;

use super::{classify, registry, IpClass};
use crate::rules::normalize_net;

/// Whether every address of `net` classifies as [`IpClass::Global`].
pub fn net_is_global(net: &IpNet) -> bool {
    let mut visit = |class: IpClass| match class {
        IpClass::Global => ControlFlow::Continue(()),
        _ => ControlFlow::Break(()),
    };
    walk(*net, &mut visit).is_continue()
}

/// `Some(class)` when every address of `net` is in a class a policy CIDR can never admit
/// (`!IpClass::policy_admissible()`: loopback, link-local, metadata, unspecified, multicast,
/// broadcast, embedded IPv4); the class given is that of the network's first address, e.g.
/// `169.254.169.254/32` → `Metadata`, `169.254.0.0/16` → `LinkLocal`, `127.0.0.0/8` →
/// `Loopback`. `None` when some address could be admitted (`10.0.0.0/8`, `0.0.0.0/0`).
pub fn net_never_admissible(net: &IpNet) -> Option<IpClass> {
    let mut visit = |class: IpClass| match class.policy_admissible() {
        true => ControlFlow::Break(()),
        false => ControlFlow::Continue(()),
    };
    let net = normalize_net(*net);
    walk(net, &mut visit)
        .is_continue()
        .then(|| classify(net.network()))
}

/// Calls `visit` with the class of each single-class piece of `net`, until it breaks.
fn walk(net: IpNet, visit: &mut impl FnMut(IpClass) -> ControlFlow<()>) -> ControlFlow<()> {
    let net = normalize_net(net);
    let splits = match net {
        IpNet::V4(v4) => registry::v4_splits(v4),
        IpNet::V6(v6) => registry::v6_splits(v6),
    };
    let halves = match net.subnets(net.prefix_len().saturating_add(1)) {
        Ok(halves) if splits => halves,
        // One class throughout (or a host route, which cannot split).
        _ => return visit(classify(net.network())),
    };
    for half in halves {
        walk(half, visit)?;
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests;
