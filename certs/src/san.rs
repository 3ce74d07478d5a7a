//! Subject alternative names: a DNS name or an IP address, validated on parse so that a typo
//! fails loudly instead of producing a certificate nobody can use.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A subject alternative name for the server certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name, lower-case, without a trailing dot.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

/// Why a SAN was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SAN {input:?}: {reason}")]
pub struct SanError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

// === impl San ===

impl San {
    /// `localhost`, `127.0.0.1` and `::1`: always on the server certificate.
    pub fn loopback() -> [San; 3] {
        [
            San::Dns("localhost".into()),
            San::Ip(IpAddr::from([127, 0, 0, 1])),
            San::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        ]
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType, rcgen::Error> {
        Ok(match self {
            San::Dns(name) => rcgen::SanType::DnsName(name.clone().try_into()?),
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        })
    }
}

impl FromStr for San {
    type Err = SanError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SanError {
            input: input.to_string(),
            reason,
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(err("empty"));
        }
        // Brackets are how IPv6 literals appear in URLs; accept them here too.
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let name = trimmed
            .strip_suffix('.')
            .unwrap_or(trimmed)
            .to_ascii_lowercase();
        validate_dns_name(&name).map_err(err)?;
        Ok(San::Dns(name))
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Checks RFC 1123 host name syntax: 1..=253 octets, labels of 1..=63 letters, digits and
/// inner hyphens. A name made only of digits and dots is refused, because it reads as a
/// mistyped IPv4 address.
fn validate_dns_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label may not start or end with '-'");
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("looks like an IPv4 address but is not a valid one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_addresses() {
        let ok = [
            ("localhost", San::Dns("localhost".into())),
            ("DinD.Example.", San::Dns("dind.example".into())),
            ("10.231.0.2", San::Ip("10.231.0.2".parse().unwrap())),
            ("::1", San::Ip("::1".parse().unwrap())),
            ("[fd00::2]", San::Ip("fd00::2".parse().unwrap())),
            ("a-b.c", San::Dns("a-b.c".into())),
        ];
        for (input, want) in ok {
            assert_eq!(input.parse::<San>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        let long_label = "a".repeat(64);
        let long_name = ["a"; 128].join(".");
        let bad = [
            "",
            " ",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b",
            "a b",
            "*.example.com",
            "http://x",
            "10.0.0.256",
            "1.2.3",
            long_label.as_str(),
            long_name.as_str(),
        ];
        for input in bad {
            assert!(input.parse::<San>().is_err(), "{input:?} should be refused");
        }
    }
}
