//! Address classification: which destinations are globally reachable, and why not.
//!
//! Every prefix of the IANA IPv4 and IPv6 special-purpose registries, plus the cloud metadata
//! endpoints that sit outside them, is written once in `registry`. Classification takes the
//! longest matching prefix, which is what makes metadata host routes (`169.254.169.254/32`,
//! `fd00:ec2::254/128`) win over the link-local or private ranges around them.
//!
//! IPv4 embedded in IPv6 is unwrapped. An IPv4-mapped address (`::ffff:a.b.c.d`) classifies
//! exactly as `a.b.c.d`, because a dual-stack socket dials that IPv4 address. Every other
//! embedding (compatible, SIIT translatable, NAT64 both prefixes, 6to4, Teredo) classifies as
//! [`IpClass::V6Embedded`] carrying the inner address: never global by itself, admitted only by
//! an operator exception for the outer address, with the inner address checked as well.
//!
//! Invariant: only [`IpClass::Global`] is global, and nothing here panics.

mod nets;
mod registry;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use registry::{Embedding, Kind};

pub use nets::{net_is_global, net_never_admissible};

/// The class of a destination address. Only [`IpClass::Global`] may be dialled without an
/// exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpClass {
    /// Globally reachable unicast.
    Global,
    /// `0.0.0.0/8` and `::`: on Linux a connect to these reaches the local host.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// RFC 1918 private ranges and IPv6 unique-local `fc00::/7`.
    Private,
    /// Carrier-grade NAT shared space `100.64.0.0/10`.
    SharedCgnat,
    /// `169.254.0.0/16` and `fe80::/10`.
    LinkLocal,
    /// A cloud instance-metadata endpoint.
    Metadata,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// The limited broadcast address `255.255.255.255`.
    Broadcast,
    /// Documentation prefixes (TEST-NET-1/2/3, `2001:db8::/32`, `3fff::/20`).
    Documentation,
    /// Benchmarking `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// IETF protocol assignments `192.0.0.0/24`.
    ProtocolAssignment,
    /// Reserved, deprecated, anycast infrastructure, or IPv6 outside `2000::/3`.
    Reserved,
    /// Deprecated IPv6 site-local `fec0::/10`.
    SiteLocal,
    /// IPv4 embedded in IPv6 (compatible, translatable, NAT64, 6to4, Teredo), unwrapped.
    V6Embedded(Ipv4Addr),
}

impl IpClass {
    /// True only for [`IpClass::Global`].
    pub fn is_global(&self) -> bool {
        matches!(self, IpClass::Global)
    }

    /// A stable snake_case name, equal to the matching deny reason code.
    pub fn as_str(&self) -> &'static str {
        match self {
            IpClass::Global => "global",
            IpClass::Unspecified => "unspecified",
            IpClass::Loopback => "loopback",
            IpClass::Private => "private",
            IpClass::SharedCgnat => "shared_cgnat",
            IpClass::LinkLocal => "link_local",
            IpClass::Metadata => "metadata",
            IpClass::Multicast => "multicast",
            IpClass::Broadcast => "broadcast",
            IpClass::Documentation => "documentation",
            IpClass::Benchmarking => "benchmarking",
            IpClass::ProtocolAssignment => "protocol_assignment",
            IpClass::Reserved => "reserved",
            IpClass::SiteLocal => "site_local",
            IpClass::V6Embedded(_) => "embedded_ipv4",
        }
    }

    /// Whether a sandbox policy's `allow_cidrs` may admit this class. Loopback, link-local,
    /// metadata, unspecified, multicast, broadcast and embedded IPv4 can only be admitted by an
    /// operator exception.
    pub fn policy_admissible(&self) -> bool {
        matches!(
            self,
            IpClass::Global
                | IpClass::Private
                | IpClass::SharedCgnat
                | IpClass::Documentation
                | IpClass::Benchmarking
                | IpClass::ProtocolAssignment
                | IpClass::Reserved
                | IpClass::SiteLocal
        )
    }
}

impl std::fmt::Display for IpClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unwraps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to `a.b.c.d`; other addresses are
/// returned unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Classifies an address by the longest matching special-purpose prefix.
pub fn classify(ip: IpAddr) -> IpClass {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> IpClass {
    registry::lookup_v4(ip).unwrap_or(IpClass::Global)
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    match registry::lookup_v6(ip) {
        Some(Kind::Class(class)) => class,
        // Unreachable through `classify`, which unwraps mapped addresses first; kept total.
        Some(Kind::Embeds(Embedding::Mapped)) => classify_v4(unwrap(Embedding::Mapped, ip)),
        Some(Kind::Embeds(embedding)) => IpClass::V6Embedded(unwrap(embedding, ip)),
        // RFC 4291 section 2.4: only 2000::/3 is allocated as global unicast.
        None if ip.segments()[0] & 0xe000 == 0x2000 => IpClass::Global,
        None => IpClass::Reserved,
    }
}

/// The IPv4 address an IPv6 address embeds (mapped, compatible, translatable, NAT64, 6to4 or
/// Teredo client), if its prefix is one that embeds. `::` and `::1` embed nothing.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    match registry::lookup_v6(ip)? {
        Kind::Embeds(embedding) => Some(unwrap(embedding, ip)),
        Kind::Class(_) => None,
    }
}

fn unwrap(embedding: Embedding, ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    match embedding {
        // RFC 3056: 2002:AABB:CCDD::/48 carries the IPv4 address in bits 16..48.
        Embedding::SixToFour => Ipv4Addr::new(o[2], o[3], o[4], o[5]),
        // RFC 4380 section 4: the client's public IPv4 address is the last 32 bits, inverted.
        Embedding::Teredo => Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]),
        // Mapped, compatible, translatable and NAT64 (RFC 6052 /96 layout; also used for the
        // RFC 8215 /48, whose operators may pick another layout: it is denied by default anyway)
        // carry it in the last 32 bits.
        Embedding::Mapped | Embedding::Compatible | Embedding::Translated | Embedding::Nat64 => {
            Ipv4Addr::new(o[12], o[13], o[14], o[15])
        }
    }
}

#[cfg(test)]
mod tests;
