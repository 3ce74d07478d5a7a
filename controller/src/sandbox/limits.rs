//! Resource limits and the operator maximums they are checked against.

use std::fmt;
use std::time::Duration;

/// Resource limits; used both for a sandbox and for the operator maximums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPUs.
    pub cpus: Cpus,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Most processes.
    pub pids: u64,
    /// Writable-layer size in MiB; for maximums, `None` means no disk limit may be asked.
    pub disk_mb: Option<u64>,
}

/// Operator bounds and defaults that a request is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Maximums {
    /// The largest limits a sandbox may ask for.
    pub limits: Limits,
    /// The longest absolute timeout.
    pub timeout: Duration,
    /// The timeout a request without one gets.
    pub default_timeout: Duration,
}

/// A CPU amount in thousandths of a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(u32);
// === impl Limits ===

impl Limits {
    /// What a sandbox gets for each limit it does not ask for (capped at the maximums).
    pub const DEFAULT: Limits = Limits {
        cpus: Cpus(1000),
        memory_mb: 512,
        pids: 256,
        disk_mb: None,
    };

    /// Each limit lowered to the maximum where it exceeds it.
    pub fn capped(&self, max: &Limits) -> Limits {
        Limits {
            cpus: self.cpus.min(max.cpus),
            memory_mb: self.memory_mb.min(max.memory_mb),
            pids: self.pids.min(max.pids),
            disk_mb: match (self.disk_mb, max.disk_mb) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            },
        }
    }
}

// === impl Cpus ===

impl Cpus {
    /// The smallest CPU limit: a hundredth of a CPU.
    pub const MIN: Cpus = Cpus(10);

    /// From thousandths of a CPU.
    pub const fn from_millis(millis: u32) -> Self {
        Self(millis)
    }

    /// From a fractional CPU count, rounded to thousandths; `None` unless finite, positive
    /// and at most a million CPUs.
    pub fn from_f64(cpus: f64) -> Option<Self> {
        let millis = (cpus * 1000.0).round();
        if !cpus.is_finite() || cpus <= 0.0 || millis > 1e9 {
            return None;
        }
        // Bounded to (0, 1e9] above, so the cast neither truncates nor wraps.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(Self(millis as u32))
    }

    /// Thousandths of a CPU.
    pub fn millis(self) -> u32 {
        self.0
    }

    /// Billionths of a CPU, as Docker's `NanoCpus` wants them.
    pub fn nanos(self) -> i64 {
        i64::from(self.0) * 1_000_000
    }

    /// The CPU count as a float (for API responses).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_parse_and_display() {
        let table = [
            (1.0, 1000, "1"),
            (0.5, 500, "0.5"),
            (0.25, 250, "0.25"),
            (2.125, 2125, "2.125"),
            (0.0004, 0, "0"),
        ];
        for (input, millis, shown) in table {
            let cpus = Cpus::from_f64(input).unwrap();
            assert_eq!(cpus.millis(), millis, "{input}");
            assert_eq!(cpus.to_string(), shown);
        }
        assert_eq!(Cpus::from_f64(2e6), None);
        assert_eq!(Cpus::from_millis(1500).nanos(), 1_500_000_000);
    }
}
