//! Latency summaries for the density test and the controller benchmark: percentiles by the
//! nearest-rank method over a sorted sample.

use std::time::Duration;

/// A sorted sample of latencies.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

// === impl Latencies ===

impl Latencies {
    /// Sorts `sample`.
    pub fn new(mut sample: Vec<Duration>) -> Self {
        sample.sort();
        Self { sorted: sample }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `p`-th percentile (0..=100) by nearest rank; zero for an empty sample.
    pub fn percentile(&self, p: usize) -> Duration {
        let n = self.sorted.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = (p.min(100) * n).div_ceil(100).max(1);
        self.sorted[rank - 1]
    }

    /// The mean; zero for an empty sample.
    pub fn mean(&self) -> Duration {
        let n = u32::try_from(self.sorted.len()).unwrap_or(u32::MAX);
        if n == 0 {
            return Duration::ZERO;
        }
        self.sorted.iter().sum::<Duration>() / n
    }
}

/// Milliseconds, for tables.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sample = (1..=100).map(Duration::from_millis).collect();
        let latencies = Latencies::new(sample);
        assert_eq!(latencies.percentile(50), Duration::from_millis(50));
        assert_eq!(latencies.percentile(99), Duration::from_millis(99));
        assert_eq!(latencies.percentile(100), Duration::from_millis(100));
        assert_eq!(latencies.percentile(0), Duration::from_millis(1));
        assert_eq!(Latencies::default().percentile(50), Duration::ZERO);
    }
}
