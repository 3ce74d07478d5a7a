//! Strict request-target parsing: CONNECT authority-form and absolute-form `http://` URIs.
//!
//! The parser rejects userinfo, fragments, backslashes, `%` (escapes and zone ids), control
//! characters, NUL, non-`http` schemes, ports outside 1..65535, empty hosts, and names over 253
//! bytes or labels over 63. Names are mapped with UTS-46 (the algorithm WHATWG URL uses), so
//! Unicode dots and full-width digits become ASCII first. Then any host that WHATWG URL or glibc
//! `inet_aton` would read as IPv4 becomes that address (`127.1`, `0x7f.1`, `2130706433`), or is
//! rejected: no later parser can disagree with ours about whether a host is an address.
//!
//! Invariant: a [`DnsName`] is lower-case ASCII (punycode), has no trailing dot, holds only
//! letters, digits, `-` and `_`, and never ends in a number.

mod ipv4;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::ip::canonical;

/// Longest raw host accepted before UTS-46 mapping, to bound the work on hostile input.
const MAX_RAW_HOST: usize = 1024;
/// RFC 1035 2.3.4: a name is at most 253 characters in text form without the trailing dot.
const MAX_NAME: usize = 253;
/// RFC 1035 2.3.4: a label is at most 63 octets.
const MAX_LABEL: usize = 63;

/// Why a request target, host or Host header was refused. Every variant maps to a 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The target is not of the expected form (missing `//`, stray characters, no port separator).
    #[error("malformed request target")]
    BadTarget,
    /// `user@host` or any `@` in the authority.
    #[error("userinfo is not allowed in the request target")]
    Userinfo,
    /// A `#` anywhere in the target.
    #[error("fragments are not allowed in the request target")]
    Fragment,
    /// Absolute-form with a scheme other than `http`.
    #[error("only the http scheme is allowed in absolute-form")]
    BadScheme,
    /// A port that is missing where required, not decimal, or outside 1..65535.
    #[error("port must be a decimal number in 1..65535")]
    BadPort,
    /// No host at all.
    #[error("empty host")]
    EmptyHost,
    /// A host that is neither a valid DNS name nor an IP literal.
    #[error("invalid host")]
    BadHost,
    /// A host that ends in a number but is not a valid IPv4 address (e.g. `1.2.3.256`).
    #[error("host looks numeric but is not a valid IPv4 address")]
    BadIpv4,
    /// A Host header that names a different host or port than the request target.
    #[error("Host header does not match the request target")]
    HostMismatch,
    /// A name longer than 253 bytes or a label longer than 63.
    #[error("host name or label too long")]
    NameTooLong,
    /// A backslash anywhere in the target.
    #[error("backslashes are not allowed in the request target")]
    Backslash,
    /// A `%` in the host: percent-escapes are refused, not decoded.
    #[error("percent-escapes are not allowed in the host")]
    PercentEscape,
    /// A `%` inside an IPv6 literal: zone ids are refused.
    #[error("IPv6 zone ids are not allowed")]
    ZoneId,
    /// A control character or whitespace.
    #[error("control characters and whitespace are not allowed in the request target")]
    ControlChar,
    /// A NUL byte.
    #[error("NUL is not allowed in the request target")]
    Nul,
}

impl ParseError {
    /// A stable snake_case code for the 400 body, the ledger and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::BadTarget => "bad_target",
            ParseError::Userinfo => "userinfo",
            ParseError::Fragment => "fragment",
            ParseError::BadScheme => "bad_scheme",
            ParseError::BadPort => "bad_port",
            ParseError::EmptyHost => "empty_host",
            ParseError::BadHost => "bad_host",
            ParseError::BadIpv4 => "bad_ipv4",
            ParseError::HostMismatch => "host_mismatch",
            ParseError::NameTooLong => "name_too_long",
            ParseError::Backslash => "backslash",
            ParseError::PercentEscape => "percent_escape",
            ParseError::ZoneId => "zone_id",
            ParseError::ControlChar => "control_char",
            ParseError::Nul => "nul",
        }
    }
}

/// A validated DNS name: lower-case ASCII (punycode), no trailing dot, 1..=253 bytes, labels of
/// 1..=63 letters, digits, `-` or `_`, and never something that reads as an IPv4 address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    /// The name as lower-case ASCII without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses and normalises a bare name. IP literals are refused with [`ParseError::BadHost`];
    /// use [`parse_host`] to accept both.
    pub fn parse(input: &str) -> Result<DnsName, ParseError> {
        match parse_host(input)? {
            Host::Name(name) => Ok(name),
            Host::Ip(_) => Err(ParseError::BadHost),
        }
    }

    /// Validates an already-mapped ASCII name (one trailing dot already removed).
    fn validate(ascii: &str) -> Result<DnsName, ParseError> {
        if ascii.is_empty() {
            return Err(ParseError::EmptyHost);
        }
        if ascii.len() > MAX_NAME {
            return Err(ParseError::NameTooLong);
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(ParseError::BadHost);
            }
            if label.len() > MAX_LABEL {
                return Err(ParseError::NameTooLong);
            }
            let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
            if !label.bytes().all(ok) {
                return Err(ParseError::BadHost);
            }
        }
        Ok(DnsName(ascii.to_owned()))
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A destination host: an IP literal or a validated DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal, exactly as written (IPv4-mapped IPv6 is not unwrapped here).
    Ip(IpAddr),
    /// A DNS name, to be resolved and every answer checked.
    Name(DnsName),
}

impl Host {
    /// Whether two hosts denote the same destination (IP literals compared after unwrapping
    /// IPv4-mapped IPv6).
    fn same_as(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Ip(a), Host::Ip(b)) => canonical(*a) == canonical(*b),
            (Host::Name(a), Host::Name(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// A parsed destination: host and port (1..=65535).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The destination host.
    pub host: Host,
    /// The destination port, never 0.
    pub port: u16,
}

impl Target {
    /// The host as it appears in an authority: a name, dotted IPv4, or `[v6]`.
    pub fn host_str(&self) -> String {
        self.host.to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A parsed absolute-form request target, `http://host[:port]/path?query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsoluteForm {
    /// The destination (port 80 when omitted).
    pub target: Target,
    /// The origin-form to send upstream; `/` when the URI has no path.
    pub path_and_query: String,
}

/// Parses a CONNECT authority-form target, `host:port`; the port is required and IPv6 must be
/// bracketed.
pub fn parse_connect(authority: &str) -> Result<Target, ParseError> {
    scan(authority)?;
    if authority.contains(['/', '?']) {
        return Err(ParseError::BadTarget);
    }
    let (host, port) = parse_authority(authority)?;
    let port = port.ok_or(ParseError::BadPort)?;
    Ok(Target { host, port })
}

/// Parses an absolute-form target, `http://host[:port][/path][?query]`. The scheme is matched
/// case-insensitively; the port defaults to 80.
pub fn parse_absolute(uri: &str) -> Result<AbsoluteForm, ParseError> {
    scan(uri)?;
    let (scheme, rest) = uri.split_once(':').ok_or(ParseError::BadTarget)?;
    if !scheme.eq_ignore_ascii_case("http") {
        let valid_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        return Err(if valid_scheme {
            ParseError::BadScheme
        } else {
            ParseError::BadTarget
        });
    }
    let rest = rest.strip_prefix("//").ok_or(ParseError::BadTarget)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = parse_authority(authority)?;
    let path_and_query = match tail.as_bytes().first() {
        None => "/".to_owned(),
        Some(b'?') => format!("/{tail}"),
        Some(_) => tail.to_owned(),
    };
    let target = Target {
        host,
        port: port.unwrap_or(80),
    };
    Ok(AbsoluteForm {
        target,
        path_and_query,
    })
}

/// Checks that a Host header names the same host and port as the request target. A Host
/// header without a port agrees with a target on port 80 or 443 (the http and CONNECT
/// defaults); a malformed header is refused with its own parse error.
pub fn check_host_header(target: &Target, host_header: &str) -> Result<(), ParseError> {
    let value = host_header.trim_matches([' ', '\t']);
    scan(value)?;
    if value.contains(['/', '?']) {
        return Err(ParseError::BadTarget);
    }
    let (host, port) = parse_authority(value)?;
    let port_agrees = match port {
        Some(port) => port == target.port,
        None => target.port == 80 || target.port == 443,
    };
    if host.same_as(&target.host) && port_agrees {
        Ok(())
    } else {
        Err(ParseError::HostMismatch)
    }
}

/// Parses a bare host: a DNS name, an IPv4 address in any spelling WHATWG URL accepts, or a
/// bracketed IPv6 literal.
pub fn parse_host(input: &str) -> Result<Host, ParseError> {
    scan(input)?;
    check_host_chars(input)?;
    parse_host_unchecked(input)
}

/// Refuses characters that are never valid anywhere in a request target.
fn scan(input: &str) -> Result<(), ParseError> {
    for c in input.chars() {
        match c {
            '\0' => return Err(ParseError::Nul),
            '\\' => return Err(ParseError::Backslash),
            '#' => return Err(ParseError::Fragment),
            c if c.is_control() || c.is_whitespace() => return Err(ParseError::ControlChar),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses characters that are never valid in an authority.
fn check_host_chars(host: &str) -> Result<(), ParseError> {
    if host.contains('@') {
        return Err(ParseError::Userinfo);
    }
    if host.contains('%') {
        return Err(if host.starts_with('[') {
            ParseError::ZoneId
        } else {
            ParseError::PercentEscape
        });
    }
    Ok(())
}

/// Splits and parses `host[:port]`. The port, when present, must be valid.
fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), ParseError> {
    check_host_chars(authority)?;
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(ParseError::BadHost)?;
        let (host, after) = authority.split_at(close + 1);
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(ParseError::BadTarget)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host = parse_host_unchecked(host)?;
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

/// A decimal port in 1..=65535. Leading zeros are accepted, as WHATWG URL does.
fn parse_port(input: &str) -> Result<u16, ParseError> {
    if input.is_empty() || !input.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadPort);
    }
    let digits = input.trim_start_matches('0');
    if digits.len() > 5 {
        return Err(ParseError::BadPort);
    }
    match digits.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ParseError::BadPort),
    }
}

/// Parses a host whose characters were already scanned.
fn parse_host_unchecked(input: &str) -> Result<Host, ParseError> {
    if input.is_empty() {
        return Err(ParseError::EmptyHost);
    }
    if let Some(inner) = input.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(ParseError::BadHost)?;
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| Host::Ip(IpAddr::V6(v6)))
            .ok_or(ParseError::BadHost);
    }
    if input.len() > MAX_RAW_HOST {
        return Err(ParseError::NameTooLong);
    }
    if input.contains([':', '[', ']']) {
        return Err(ParseError::BadHost);
    }
    let ascii = idna::domain_to_ascii_cow(input.as_bytes(), idna::AsciiDenyList::URL)
        .ok()
        .ok_or(ParseError::BadHost)?;
    if ipv4::ends_in_a_number(&ascii) {
        return ipv4::parse(&ascii)
            .map(|v4| Host::Ip(IpAddr::V4(v4)))
            .ok_or(ParseError::BadIpv4);
    }
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    DnsName::validate(name).map(Host::Name)
}

#[cfg(test)]
mod tests;
