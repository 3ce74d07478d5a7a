//! Deny reasons and their stable codes.
//!
//! A code is the 403/400 `"error"` field, the ledger reason and the metrics label, so codes
//! never change once released. Address-class codes equal [`IpClass::as_str`].

use std::fmt;

use crate::host::ParseError;
use crate::ip::IpClass;

/// Why a request was (or, in report mode, would have been) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// The request target or Host header did not parse (a 400, not a 403).
    Malformed(ParseError),
    /// `localhost`, `*.localhost` and the other local-host names.
    LocalhostName,
    /// An instance-metadata host name such as `metadata.google.internal`.
    MetadataName,
    /// The name matched `deny_domains`.
    DomainDenied,
    /// An allow-list is set and the name matched none of it.
    DomainNotAllowed,
    /// An allow-list is set and the IP literal is in none of the policy's `allow_cidrs`.
    IpLiteralNotAllowed,
    /// The port is not in `allow_ports`.
    PortNotAllowed,
    /// `0.0.0.0/8` or `::`.
    Unspecified,
    /// Loopback.
    Loopback,
    /// RFC 1918 or unique-local.
    Private,
    /// `100.64.0.0/10`.
    SharedCgnat,
    /// Link-local.
    LinkLocal,
    /// A cloud metadata address.
    Metadata,
    /// Multicast.
    Multicast,
    /// Limited broadcast.
    Broadcast,
    /// Documentation prefixes.
    Documentation,
    /// Benchmarking prefixes.
    Benchmarking,
    /// IETF protocol assignments `192.0.0.0/24`.
    ProtocolAssignment,
    /// Reserved or not globally routable.
    Reserved,
    /// Deprecated IPv6 site-local.
    SiteLocal,
    /// IPv4 embedded in IPv6 (NAT64, 6to4, Teredo, compatible, translatable) without an
    /// operator exception for the IPv6 range.
    EmbeddedIpv4,
    /// The name resolved to no address.
    DnsNoAnswer,
    /// The proxy has no policy for this client (fail closed).
    NoPolicy,
    /// The address belongs to the Airlock deployment itself; no policy or exception opens it.
    Infrastructure,
}

impl DenyReason {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::Malformed(error) => error.code(),
            DenyReason::LocalhostName => "localhost_name",
            DenyReason::MetadataName => "metadata_name",
            DenyReason::DomainDenied => "domain_denied",
            DenyReason::DomainNotAllowed => "domain_not_allowed",
            DenyReason::IpLiteralNotAllowed => "ip_literal_not_allowed",
            DenyReason::PortNotAllowed => "port_not_allowed",
            DenyReason::Unspecified => "unspecified",
            DenyReason::Loopback => "loopback",
            DenyReason::Private => "private",
            DenyReason::SharedCgnat => "shared_cgnat",
            DenyReason::LinkLocal => "link_local",
            DenyReason::Metadata => "metadata",
            DenyReason::Multicast => "multicast",
            DenyReason::Broadcast => "broadcast",
            DenyReason::Documentation => "documentation",
            DenyReason::Benchmarking => "benchmarking",
            DenyReason::ProtocolAssignment => "protocol_assignment",
            DenyReason::Reserved => "reserved",
            DenyReason::SiteLocal => "site_local",
            DenyReason::EmbeddedIpv4 => "embedded_ipv4",
            DenyReason::DnsNoAnswer => "dns_no_answer",
            DenyReason::NoPolicy => "no_policy",
            DenyReason::Infrastructure => "infrastructure",
        }
    }

    /// True for [`DenyReason::Malformed`]: answer 400 rather than 403.
    pub fn is_malformed(&self) -> bool {
        matches!(self, DenyReason::Malformed(_))
    }

    /// A short human-readable sentence for the `"message"` field.
    pub fn message(&self) -> &'static str {
        match self {
            DenyReason::Malformed(_) => "the request target is malformed",
            DenyReason::LocalhostName => "local host names are not reachable",
            DenyReason::MetadataName => "instance metadata is not reachable",
            DenyReason::DomainDenied => "the domain is denied by policy",
            DenyReason::DomainNotAllowed => "the domain is not in the policy's allow list",
            DenyReason::IpLiteralNotAllowed => "IP literals are not in the policy's allow list",
            DenyReason::PortNotAllowed => "the port is not allowed by policy",
            DenyReason::DnsNoAnswer => "the name has no address",
            DenyReason::NoPolicy => "no policy is registered for this client",
            DenyReason::EmbeddedIpv4 => "IPv4-embedding IPv6 ranges are not reachable",
            // Never names the address: a sandbox learns nothing about the deployment from it.
            DenyReason::Infrastructure => "the destination is part of the Airlock deployment",
            _ => "the destination address is not publicly routable",
        }
    }

    /// The reason for a non-global address class. [`IpClass::Global`] never denies; it maps to
    /// [`DenyReason::Reserved`] only so that this function is total.
    pub fn from_class(class: IpClass) -> DenyReason {
        match class {
            IpClass::Unspecified => DenyReason::Unspecified,
            IpClass::Loopback => DenyReason::Loopback,
            IpClass::Private => DenyReason::Private,
            IpClass::SharedCgnat => DenyReason::SharedCgnat,
            IpClass::LinkLocal => DenyReason::LinkLocal,
            IpClass::Metadata => DenyReason::Metadata,
            IpClass::Multicast => DenyReason::Multicast,
            IpClass::Broadcast => DenyReason::Broadcast,
            IpClass::Documentation => DenyReason::Documentation,
            IpClass::Benchmarking => DenyReason::Benchmarking,
            IpClass::ProtocolAssignment => DenyReason::ProtocolAssignment,
            IpClass::SiteLocal => DenyReason::SiteLocal,
            IpClass::V6Embedded(_) => DenyReason::EmbeddedIpv4,
            IpClass::Global | IpClass::Reserved => DenyReason::Reserved,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<ParseError> for DenyReason {
    fn from(error: ParseError) -> DenyReason {
        DenyReason::Malformed(error)
    }
}
