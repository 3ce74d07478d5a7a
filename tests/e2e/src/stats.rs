//! Latency summaries for the density test and the benchmarks: percentiles by the
//! nearest-rank method over a sorted sample, and the figures the benchmarks print (RSS, one
//! `bench` line per sample, the create steps' table).
// Benchmark helpers: output goes to stdout, and a missing /proc entry is a broken harness.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

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

/// The resident set of `pid`, in KiB (`VmRSS` in /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `kib` in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints `bench <what> n= p50= p99= mean=`.
pub fn line(what: &str, sample: &Latencies) {
    println!(
        "bench {what} n={} p50={:.1}ms p99={:.1}ms mean={:.1}ms",
        sample.len(),
        ms(sample.percentile(50)),
        ms(sample.percentile(99)),
        ms(sample.mean()),
    );
}

/// Prints the controller's DEBUG step timings in `log` (its JSON lines: `Create step done`
/// and `Delete step done`) as one table each: n, p50 and p99 per step, in first-seen order.
pub fn step_table(log: &str) {
    for (field, title) in [
        ("create.step", "create step"),
        ("delete.step", "delete step"),
    ] {
        steps_of(log, field, title);
    }
}

/// One table: each value of `field` in `log`'s JSON lines, with its `elapsed_us` count,
/// p50 and p99 (nothing when no line has the field).
fn steps_of(log: &str, field: &str, title: &str) {
    let mut steps: Vec<(String, Vec<Duration>)> = Vec::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &event["fields"];
        let (Some(step), Some(us)) = (fields[field].as_str(), fields["elapsed_us"].as_u64()) else {
            continue;
        };
        let at = match steps.iter().position(|(name, _)| name == step) {
            Some(at) => at,
            None => {
                steps.push((step.to_owned(), Vec::new()));
                steps.len() - 1
            }
        };
        steps[at].1.push(Duration::from_micros(us));
    }
    if steps.is_empty() {
        return;
    }
    println!();
    println!("| {title} | n | p50 ms | p99 ms |");
    println!("| --- | --- | --- | --- |");
    for (step, durations) in steps {
        let n = durations.len();
        let sample = Latencies::new(durations);
        println!(
            "| {step} | {n} | {:.1} | {:.1} |",
            ms(sample.percentile(50)),
            ms(sample.percentile(99))
        );
    }
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
