//! The special-purpose address table: each prefix written once, with its source.
//!
//! Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and updates),
//! plus the cloud metadata endpoints that lie outside them. Lookup takes the longest matching
//! prefix, so the order of rows does not matter; rows follow address order like the registries.
//! Where IANA marks a prefix globally reachable but no sandbox has a reason to reach it (AS112,
//! AMT, the 2001::/23 assignments), we deny by default: it is the safer choice, and an operator
//! exception can still admit it.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::IpClass;

/// How an IPv6 prefix carries an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Embedding {
    /// `::ffff:a.b.c.d`: the same socket destination as `a.b.c.d`.
    Mapped,
    /// `::a.b.c.d`, deprecated.
    Compatible,
    /// `::ffff:0:a.b.c.d` (SIIT).
    Translated,
    /// NAT64 with the RFC 6052 /96 layout (the IPv4 address is the last 32 bits).
    Nat64,
    /// 6to4: the IPv4 address is bits 16..48.
    SixToFour,
    /// Teredo: the client address is the inverted last 32 bits.
    Teredo,
}

/// What a prefix means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Class(IpClass),
    Embeds(Embedding),
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, class: IpClass) -> (Ipv4Net, IpClass) {
    (Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len), class)
}

const fn v6(s: [u16; 8], len: u8, kind: Kind) -> (Ipv6Net, Kind) {
    let ip = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    (Ipv6Net::new_assert(ip, len), kind)
}

use IpClass::{
    Benchmarking, Broadcast, Documentation, LinkLocal, Loopback, Metadata, Multicast, Private,
    ProtocolAssignment, Reserved, SharedCgnat, SiteLocal, Unspecified,
};

/// IPv4 special-purpose prefixes.
const V4: &[(Ipv4Net, IpClass)] = &[
    v4(0, 0, 0, 0, 8, Unspecified), // RFC 791 3.2 / RFC 1122: "this network" (0.0.0.0/32 inside)
    v4(10, 0, 0, 0, 8, Private),    // RFC 1918
    v4(100, 64, 0, 0, 10, SharedCgnat), // RFC 6598
    v4(100, 100, 100, 200, 32, Metadata), // Alibaba Cloud instance metadata
    v4(127, 0, 0, 0, 8, Loopback),  // RFC 1122 3.2.1.3
    v4(168, 63, 129, 16, 32, Metadata), // Azure WireServer / platform metadata
    v4(169, 254, 0, 0, 16, LinkLocal), // RFC 3927
    v4(169, 254, 169, 254, 32, Metadata), // AWS, GCP, Azure, OCI, DigitalOcean IMDS
    v4(169, 254, 170, 2, 32, Metadata), // AWS ECS task metadata
    v4(169, 254, 170, 23, 32, Metadata), // AWS EKS Pod Identity agent
    v4(172, 16, 0, 0, 12, Private), // RFC 1918
    v4(192, 0, 0, 0, 24, ProtocolAssignment), // RFC 6890 2.2.2 (DS-Lite, PCP, TURN, NAT64 discovery)
    v4(192, 0, 0, 192, 32, Metadata),         // Oracle Cloud metadata
    v4(192, 0, 2, 0, 24, Documentation),      // RFC 5737 TEST-NET-1
    v4(192, 31, 196, 0, 24, Reserved),        // RFC 7535 AS112-v4 (IANA: global; denied by default)
    v4(192, 52, 193, 0, 24, Reserved),        // RFC 7450 AMT (IANA: global; denied by default)
    v4(192, 88, 99, 0, 24, Reserved),         // RFC 7526 deprecated 6to4 relay anycast
    v4(192, 168, 0, 0, 16, Private),          // RFC 1918
    v4(192, 175, 48, 0, 24, Reserved),        // RFC 7534 AS112 direct delegation (IANA: global)
    v4(198, 18, 0, 0, 15, Benchmarking),      // RFC 2544
    v4(198, 51, 100, 0, 24, Documentation),   // RFC 5737 TEST-NET-2
    v4(203, 0, 113, 0, 24, Documentation),    // RFC 5737 TEST-NET-3
    v4(224, 0, 0, 0, 4, Multicast),           // RFC 5771
    v4(240, 0, 0, 0, 4, Reserved),            // RFC 1112 4: reserved for future use
    v4(255, 255, 255, 255, 32, Broadcast),    // RFC 919 7 / RFC 8190: limited broadcast
];

const fn class(c: IpClass) -> Kind {
    Kind::Class(c)
}

const fn embeds(e: Embedding) -> Kind {
    Kind::Embeds(e)
}

/// IPv6 special-purpose prefixes. Anything that matches none of them and lies outside
/// 2000::/3 is [`IpClass::Reserved`] (RFC 4291 2.4).
const V6: &[(Ipv6Net, Kind)] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, class(Unspecified)), // RFC 4291 2.5.2
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, class(Loopback)),    // RFC 4291 2.5.3
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, embeds(Embedding::Compatible)), // RFC 4291 2.5.5.1
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, embeds(Embedding::Mapped)), // RFC 4291 2.5.5.2
    v6(
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        embeds(Embedding::Translated),
    ), // RFC 6145 (SIIT)
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        embeds(Embedding::Nat64),
    ), // RFC 6052 well-known
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        embeds(Embedding::Nat64),
    ), // RFC 8215 local-use
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, class(Reserved)), // RFC 6666 discard-only
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, class(Reserved)), // RFC 9780 dummy prefix
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, class(Reserved)), // RFC 2928 IETF protocol assignments
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, embeds(Embedding::Teredo)), // RFC 4380
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, class(Benchmarking)), // RFC 5180
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, class(Documentation)), // RFC 3849
    v6(
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        embeds(Embedding::SixToFour),
    ), // RFC 3056
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, class(Reserved)), // RFC 7534 AS112 (IANA: global)
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, class(Documentation)), // RFC 9637
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, class(Reserved)), // RFC 9602 SRv6 SIDs
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, class(Private)),  // RFC 4193 unique-local
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23], 128, class(Metadata)), // AWS EKS Pod Identity agent
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, class(Metadata)), // AWS IMDS over IPv6
    v6([0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254], 128, class(Metadata)), // GCE metadata over IPv6
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, class(LinkLocal)), // RFC 4291 2.5.6
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, class(SiteLocal)), // RFC 3879 (deprecated)
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, class(Multicast)), // RFC 4291 2.7
];

/// The class of the longest IPv4 prefix containing `ip`, if any.
pub(crate) fn lookup_v4(ip: Ipv4Addr) -> Option<IpClass> {
    longest(V4, |net| net.contains(&ip), |net| net.prefix_len())
}

/// The meaning of the longest IPv6 prefix containing `ip`, if any.
pub(crate) fn lookup_v6(ip: Ipv6Addr) -> Option<Kind> {
    longest(V6, |net| net.contains(&ip), |net| net.prefix_len())
}

/// Whether an IPv4 row lies strictly inside `net`: then `net` may hold more than one class.
/// Without one, every address of `net` has the class of its first address.
pub(crate) fn v4_splits(net: Ipv4Net) -> bool {
    V4.iter()
        .any(|(row, _)| row.prefix_len() > net.prefix_len() && net.contains(&row.network()))
}

/// Whether an IPv6 row, or the edge of 2000::/3 (global unicast outside any row, reserved
/// elsewhere), lies strictly inside `net`.
pub(crate) fn v6_splits(net: Ipv6Net) -> bool {
    let unicast = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0);
    (net.prefix_len() < 3 && net.contains(&unicast))
        || V6
            .iter()
            .any(|(row, _)| row.prefix_len() > net.prefix_len() && net.contains(&row.network()))
}

fn longest<N, T: Copy>(
    table: &[(N, T)],
    contains: impl Fn(&N) -> bool,
    len: impl Fn(&N) -> u8,
) -> Option<T> {
    table
        .iter()
        .filter(|(net, _)| contains(net))
        .max_by_key(|(net, _)| len(net))
        .map(|(_, value)| *value)
}

/// Every IPv4 row, for tests that walk the table.
#[cfg(test)]
pub(crate) fn v4_rows() -> &'static [(Ipv4Net, IpClass)] {
    V4
}

/// Every IPv6 row, for tests that walk the table.
#[cfg(test)]
pub(crate) fn v6_rows() -> &'static [(Ipv6Net, Kind)] {
    V6
}
