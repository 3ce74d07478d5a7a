//! An admissible port range of a ceiling: written as a number (`443`) or a string (`"443"`,
//! `"8000-8999"`), inclusive, never containing port 0.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Ports `lo..=hi`, `1 <= lo <= hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

// === impl PortRange ===

impl PortRange {
    /// Every port.
    pub const ALL: PortRange = PortRange { lo: 1, hi: 65535 };

    /// `lo..=hi`, when `1 <= lo <= hi`.
    pub fn new(lo: u16, hi: u16) -> Option<Self> {
        (lo >= 1 && lo <= hi).then_some(Self { lo, hi })
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }

    fn parse(text: &str) -> Option<Self> {
        let (lo, hi) = text.split_once('-').unwrap_or((text, text));
        Self::new(lo.trim().parse().ok()?, hi.trim().parse().ok()?)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            serializer.serialize_u16(self.lo)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RangeVisitor)
    }
}

struct RangeVisitor;

const EXPECTED: &str = "a port (1-65535) or a range \"a-b\"";

impl Visitor<'_> for RangeVisitor {
    type Value = PortRange;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
        u16::try_from(v)
            .ok()
            .and_then(|p| PortRange::new(p, p))
            .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &EXPECTED))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
        Err(E::invalid_value(de::Unexpected::Signed(v), &EXPECTED))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
        PortRange::parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &EXPECTED))
    }
}
