//! Sandbox subnets: each sandbox network gets one /29 from the configured pools
//! (`AIRLOCK_SANDBOX_SUBNETS`), because Docker's default address pools run out after about 30
//! networks (DESIGN.md). Fixed addresses inside the /29 let the controller know a sandbox's
//! source address before it starts.
//!
//! Pure: the store decides which subnets are taken; this module only does the arithmetic.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The prefix length of one sandbox subnet.
pub const SANDBOX_PREFIX: u8 = 29;

/// One sandbox's /29: `.0` network, `.1` gateway, `.2` proxy, `.3` sandbox, `.7` broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SandboxSubnet(Ipv4Net);

// === impl SandboxSubnet ===

impl SandboxSubnet {
    /// Wraps a /29, or `None` for any other prefix length.
    pub fn new(net: Ipv4Net) -> Option<Self> {
        (net.prefix_len() == SANDBOX_PREFIX).then(|| Self(net.trunc()))
    }

    /// The network.
    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    /// The bridge's (gateway) address, `.1`.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// The egress proxy's address on this network, `.2`.
    pub fn proxy(&self) -> Ipv4Addr {
        self.host(2)
    }

    /// The sandbox container's address, `.3`.
    pub fn sandbox(&self) -> Ipv4Addr {
        self.host(3)
    }

    fn host(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0.network()) + offset)
    }

    /// The first /29 of `pools` (in order) that is not in `taken`.
    pub fn first_free(pools: &[Ipv4Net], taken: &HashSet<Ipv4Net>) -> Option<SandboxSubnet> {
        pools
            .iter()
            .filter_map(|pool| pool.subnets(SANDBOX_PREFIX).ok())
            .flatten()
            .find(|net| !taken.contains(net))
            .map(Self)
    }

    /// How many sandbox subnets `pools` hold together.
    pub fn capacity(pools: &[Ipv4Net]) -> u64 {
        pools
            .iter()
            .filter(|pool| pool.prefix_len() <= SANDBOX_PREFIX)
            .map(|pool| 1u64 << (SANDBOX_PREFIX - pool.prefix_len()))
            .sum()
    }
}

impl std::fmt::Display for SandboxSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_inside_the_29() {
        let subnet = SandboxSubnet::new(net("10.213.0.8/29")).unwrap();
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 213, 0, 9));
        assert_eq!(subnet.proxy(), Ipv4Addr::new(10, 213, 0, 10));
        assert_eq!(subnet.sandbox(), Ipv4Addr::new(10, 213, 0, 11));
        assert!(SandboxSubnet::new(net("10.213.0.0/28")).is_none());
        assert_eq!(
            SandboxSubnet::new(net("10.213.0.13/29")).unwrap().net(),
            net("10.213.0.8/29")
        );
    }

    #[test]
    fn first_free_walks_pools_in_order() {
        let pools = [net("10.0.0.0/28"), net("192.168.7.0/29")];
        let mut taken = HashSet::new();
        let table = ["10.0.0.0/29", "10.0.0.8/29", "192.168.7.0/29"];
        for want in table {
            let got = SandboxSubnet::first_free(&pools, &taken).unwrap();
            assert_eq!(got.net(), net(want));
            taken.insert(got.net());
        }
        assert_eq!(SandboxSubnet::first_free(&pools, &taken), None);
        taken.remove(&net("10.0.0.8/29"));
        assert_eq!(
            SandboxSubnet::first_free(&pools, &taken).unwrap().net(),
            net("10.0.0.8/29")
        );
    }

    #[test]
    fn capacity_of_the_default_pool() {
        assert_eq!(SandboxSubnet::capacity(&[net("10.213.0.0/16")]), 8192);
        assert_eq!(
            SandboxSubnet::capacity(&[net("10.0.0.0/29"), net("10.1.0.0/30")]),
            1
        );
    }
}
