//! TEMPORARY SHIM, private to the controller: the three policy-crate items the shared plan
//! promises (`PolicySpec.allow_public`, `net_is_global`, `net_never_admissible`) until the
//! egress branch that adds them to `airlock-egress-policy` is merged. Delete this file at
//! merge and import the crate's items instead (each item says what replaces it).
//!
//! The address helpers are exact, not sampled: an address's class only changes at the edge
//! of a special-purpose prefix, so classifying the network's first address and the first
//! address after every prefix edge inside it visits every class the network holds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use airlock_egress_policy::{classify, IpClass, Mode, Policy, PolicyError};
use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

/// The prefixes of the crate's registry table (`egress/policy/src/ip/registry.rs`), plus
/// 2000::/3 (outside it, IPv6 is reserved). Classes come from `classify`.
#[rustfmt::skip]
const SPECIAL: &[&str] = &[
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "100.100.100.200/32", "127.0.0.0/8",
    "168.63.129.16/32", "169.254.0.0/16", "169.254.169.254/32", "169.254.170.2/32",
    "169.254.170.23/32", "172.16.0.0/12", "192.0.0.0/24", "192.0.0.192/32", "192.0.2.0/24",
    "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32", "::/128", "::1/128", "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96",
    "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23", "2001::/32",
    "2001:2::/48", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16",
    "fc00::/7", "fd00:ec2::23/128", "fd00:ec2::254/128", "fd20:ce::254/128", "fe80::/10",
    "fec0::/10", "ff00::/8", "2000::/3",
];

/// The crate's `PolicySpec` as the plan extends it: the same fields in the same order with the
/// same serde attributes, plus `allow_public`. At merge: `airlock_egress_policy::PolicySpec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySpec {
    /// `enforce` (default) or `report`.
    #[serde(default)]
    pub(crate) mode: Option<Mode>,
    /// Whether every public destination passes the domain rules; absent means
    /// `allow_domains.is_none()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) allow_public: Option<bool>,
    /// Exact names and `*.suffix` wildcards.
    #[serde(default)]
    pub(crate) allow_domains: Option<Vec<String>>,
    /// Names that are always refused.
    #[serde(default)]
    pub(crate) deny_domains: Option<Vec<String>>,
    /// Destination ports; absent or empty means `[80, 443]`.
    #[serde(default)]
    pub(crate) allow_ports: Option<Vec<u16>>,
    /// CIDRs whose admissible addresses the sandbox may reach.
    #[serde(default)]
    pub(crate) allow_cidrs: Option<Vec<IpNet>>,
    /// Byte budget.
    #[serde(default)]
    pub(crate) max_bytes: Option<u64>,
    /// Concurrent connection budget.
    #[serde(default)]
    pub(crate) max_connections: Option<u32>,
}

/// Compiles as the proxy will. At merge: `Policy::compile(spec)`.
pub(crate) fn compile(spec: &PolicySpec) -> Result<Policy, PolicyError> {
    Policy::compile(&airlock_egress_policy::PolicySpec {
        mode: spec.mode,
        allow_domains: spec.allow_domains.clone(),
        deny_domains: spec.deny_domains.clone(),
        allow_ports: spec.allow_ports.clone(),
        allow_cidrs: spec.allow_cidrs.clone(),
        max_bytes: spec.max_bytes,
        max_connections: spec.max_connections,
    })
}

/// Whether every address of `net` classifies `Global`. At merge: the crate's `net_is_global`.
pub(crate) fn net_is_global(net: &IpNet) -> bool {
    segment_starts(net).all(|ip| classify(ip).is_global())
}

/// `Some(class of the first address)` when no address of `net` is admissible by a policy CIDR.
/// At merge: the crate's `net_never_admissible`.
pub(crate) fn net_never_admissible(net: &IpNet) -> Option<IpClass> {
    let never = segment_starts(net).all(|ip| !classify(ip).policy_admissible());
    never.then(|| classify(net.network()))
}

/// The first address of `net` and the first address after each special prefix edge inside it.
fn segment_starts(net: &IpNet) -> impl Iterator<Item = IpAddr> + '_ {
    let net = net.trunc();
    let edges = specials().flat_map(|s| [Some(s.network()), after(s.broadcast())]);
    std::iter::once(net.network()).chain(edges.flatten().filter(move |ip| net.contains(ip)))
}

/// The special prefixes, IPv4 ones also as IPv4-mapped IPv6 (which classify as IPv4).
fn specials() -> impl Iterator<Item = IpNet> {
    let parsed = SPECIAL.iter().filter_map(|s| s.parse::<IpNet>().ok());
    parsed.flat_map(|net| {
        let mapped = match net {
            IpNet::V4(v4) => {
                let ip = v4.network().to_ipv6_mapped();
                Ipv6Net::new(ip, v4.prefix_len() + 96).ok().map(IpNet::V6)
            }
            IpNet::V6(_) => None,
        };
        std::iter::once(net).chain(mapped)
    })
}

fn after(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => u32::from(v4)
            .checked_add(1)
            .map(|n| Ipv4Addr::from(n).into()),
        IpAddr::V6(v6) => u128::from(v6)
            .checked_add(1)
            .map(|n| Ipv6Addr::from(n).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn global_and_never_admissible_are_exact() {
        let table: &[(&str, bool, Option<&str>)] = &[
            ("8.8.8.0/24", true, None),
            ("9.0.0.0/8", true, None),
            ("8.0.0.0/7", true, None),
            ("0.0.0.0/0", false, None),
            ("10.0.0.0/8", false, None),
            ("169.254.169.254/32", false, Some("metadata")),
            ("169.254.0.0/16", false, Some("link_local")),
            ("127.0.0.0/8", false, Some("loopback")),
            ("127.0.0.1/32", false, Some("loopback")),
            ("0.0.0.0/32", false, Some("unspecified")),
            ("168.63.129.16/32", false, Some("metadata")),
            ("168.63.129.0/24", false, None),
            ("192.0.0.0/24", false, None),
            ("2606:4700::/32", true, None),
            ("2000::/3", false, None),
            ("::1/128", false, Some("loopback")),
            ("fe80::/10", false, Some("link_local")),
            ("fd00:ec2::254/128", false, Some("metadata")),
            ("::ffff:8.8.8.0/120", true, None),
            ("::ffff:10.0.0.0/104", false, None),
            ("::ffff:127.0.0.0/104", false, Some("loopback")),
        ];
        for (cidr, global, never) in table {
            let n = net(cidr);
            assert_eq!(net_is_global(&n), *global, "{cidr} global");
            let class = net_never_admissible(&n).map(|c| c.as_str());
            assert_eq!(class, *never, "{cidr} never admissible");
        }
    }

    #[test]
    fn the_spec_reads_and_writes_allow_public_like_the_crate() {
        let json = r#"{"mode":"report","allow_public":false,"allow_domains":[]}"#;
        let spec: PolicySpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.allow_public, Some(false));
        assert!(compile(&spec).is_ok());
        let written = serde_json::to_string(&spec).unwrap();
        assert!(written.starts_with(r#"{"mode":"report","allow_public":false,"allow_domains":[]"#));
        let absent: PolicySpec = serde_json::from_str("{}").unwrap();
        assert!(!serde_json::to_string(&absent)
            .unwrap()
            .contains("allow_public"));
        assert!(serde_json::from_str::<PolicySpec>(r#"{"allow_public":"yes"}"#).is_err());
        assert!(serde_json::from_str::<PolicySpec>(r#"{"allow_publik":true}"#).is_err());
    }
}
