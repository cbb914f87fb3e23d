//! Latency samples, percentiles and the process's memory figures.
//!
//! Percentiles are nearest-rank (the smallest sample with at least p % of samples at or
//! below it), so p99.9 of 1,000 samples is the largest one: a figure never claims more
//! resolution than its sample count has. Peak RSS is the kernel's high-water mark
//! (`VmHWM` in /proc/self/status, proc(5)); [`reset_peak_rss`] restarts it by writing `5`
//! to /proc/self/clear_refs (Linux ≥ 4.0), so each figure reports its own peak.

use std::time::Duration;

/// Latency samples of one measure.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    nanos: Vec<u64>,
    /// The first sample, as taken (before sorting): the cold-start figure.
    cold: Option<u64>,
}

impl Samples {
    /// Room for `n` samples.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Samples {
            nanos: Vec::with_capacity(n),
            cold: None,
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if self.cold.is_none() {
            self.cold = Some(ns);
        }
        self.nanos.push(ns);
    }

    /// Appends another measure's samples (its cold sample is kept only if this one has
    /// none).
    pub fn extend(&mut self, other: Samples) {
        if self.cold.is_none() {
            self.cold = other.cold;
        }
        self.nanos.extend(other.nanos);
    }

    /// Number of samples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// The summary (sorts the samples).
    #[must_use]
    pub fn summary(mut self) -> Summary {
        self.nanos.sort_unstable();
        let total: u128 = self.nanos.iter().map(|&n| u128::from(n)).sum();
        Summary {
            count: self.nanos.len(),
            p50: percentile(&self.nanos, 50_000),
            p99: percentile(&self.nanos, 99_000),
            p999: percentile(&self.nanos, 99_900),
            max: self.nanos.last().copied().map(Duration::from_nanos),
            cold: self.cold.map(Duration::from_nanos),
            total: Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX)),
        }
    }
}

/// Nearest-rank percentile of sorted nanoseconds; `per_100k` is the percentile in
/// thousandths of a percent (99.9 % is 99,900), so the rank is exact integer arithmetic.
fn percentile(sorted: &[u64], per_100k: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (per_100k * sorted.len()).div_ceil(100_000);
    let i = rank.clamp(1, sorted.len()) - 1;
    Some(Duration::from_nanos(sorted[i]))
}

/// What a latency measure came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub p999: Option<Duration>,
    pub max: Option<Duration>,
    /// The first sample taken.
    pub cold: Option<Duration>,
    /// Sum of all samples.
    pub total: Duration,
}

/// Reads a `Vm*` line of /proc/self/status, in bytes.
fn status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Peak resident set size of this process since start or the last [`reset_peak_rss`].
#[must_use]
pub fn peak_rss() -> Option<u64> {
    status_kib("VmHWM")
}

/// Current resident set size.
#[must_use]
pub fn current_rss() -> Option<u64> {
    status_kib("VmRSS")
}

/// Restarts the peak-RSS count at the current RSS; `false` when the kernel does not allow
/// it (the peak then covers the whole run so far, and the report says so).
#[must_use]
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Human text for a duration: ns, µs, ms or s with three significant figures.
#[must_use]
pub fn fmt_duration(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let ns = d.as_nanos();
    #[allow(clippy::cast_precision_loss)]
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

/// Human text for a byte count in MiB.
#[must_use]
pub fn fmt_bytes(b: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    b.map_or_else(
        || "-".into(),
        |b| format!("{:.1} MiB", b as f64 / 1_048_576.0),
    )
}

/// Writes what the kernel holds dirty to disk (`sync`, timed) and drops its page cache
/// (clean pages, dentries and inodes stay), so the next read of any file goes to the
/// disk. Returns how long the writeback took and whether both steps worked (dropping
/// needs root).
pub fn settle_page_cache() -> (Duration, anyhow::Result<()>) {
    let t = std::time::Instant::now();
    let synced = std::process::Command::new("sync").status();
    let took = t.elapsed();
    let result = match synced {
        Ok(s) if s.success() => std::fs::write("/proc/sys/vm/drop_caches", "1").map_err(|e| {
            anyhow::anyhow!("dropping the page cache (/proc/sys/vm/drop_caches; needs root): {e}")
        }),
        Ok(s) => Err(anyhow::anyhow!("sync exited with {s}")),
        Err(e) => Err(anyhow::anyhow!("running sync: {e}")),
    };
    (took, result)
}

/// A Prometheus histogram's cumulative bucket counts in an exposition `text`: the lines
/// `<name>_bucket{le="<bound>"} <count>` (no other labels), by upper bound, `+Inf` last.
#[must_use]
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// What a histogram observed between two snapshots of its buckets
/// ([`histogram_buckets`]): how many, and the upper bound of the bucket holding each
/// asked quantile (so "p99 ≤ bound").
#[must_use]
pub fn bucket_quantiles(
    before: &[(f64, f64)],
    after: &[(f64, f64)],
    qs: &[f64],
) -> (f64, Vec<Option<f64>>) {
    let at = |snap: &[(f64, f64)], bound: f64| {
        snap.iter()
            .find(|(b, _)| b.total_cmp(&bound).is_eq())
            .map_or(0.0, |(_, c)| *c)
    };
    let diff: Vec<(f64, f64)> = after
        .iter()
        .map(|(b, c)| (*b, (c - at(before, *b)).max(0.0)))
        .collect();
    let n = diff.last().map_or(0.0, |(_, c)| *c);
    let quantiles = qs
        .iter()
        .map(|q| {
            (n > 0.0)
                .then(|| diff.iter().find(|(_, c)| *c >= q * n).map(|(b, _)| *b))
                .flatten()
        })
        .collect();
    (n, quantiles)
}

/// Journal commits between two snapshots of `aeogate_journal_commit_seconds`' buckets:
/// how many, and the bucket bounds of their p50 and p99.
#[must_use]
pub fn fmt_commits(before: &[(f64, f64)], after: &[(f64, f64)]) -> String {
    let (n, q) = bucket_quantiles(before, after, &[0.5, 0.99]);
    let bound = |b: Option<f64>| match b {
        Some(b) if b.is_finite() => format!("≤ {:.2} ms", b * 1e3),
        Some(_) => "above the last bucket".to_owned(),
        None => "-".to_owned(),
    };
    format!(
        "{n:.0}, p50 {} / p99 {} (fsync included)",
        bound(q.first().copied().flatten()),
        bound(q.get(1).copied().flatten())
    )
}

/// Items per second over `elapsed`.
#[must_use]
pub fn rate(items: usize, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    if s > 0.0 { items as f64 / s } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_s_buckets_and_quantiles_between_two_snapshots() {
        let before = "x_bucket{le=\"0.001\"} 10\nx_bucket{le=\"0.01\"} 10\nx_bucket{le=\"+Inf\"} 10\nx_count 10\ny_bucket{le=\"0.001\"} 99\n";
        let after = "x_bucket{le=\"0.01\"} 108\nx_bucket{le=\"0.001\"} 60\nx_bucket{le=\"+Inf\"} 110\nx_sum 3\n";
        let b = histogram_buckets(before, "x");
        let a = histogram_buckets(after, "x");
        assert_eq!(
            a,
            vec![(0.001, 60.0), (0.01, 108.0), (f64::INFINITY, 110.0)]
        );
        let (n, q) = bucket_quantiles(&b, &a, &[0.5, 0.98, 0.99, 1.0]);
        assert!((n - 100.0).abs() < f64::EPSILON);
        assert_eq!(
            q,
            vec![
                Some(0.001),
                Some(0.01),
                Some(f64::INFINITY),
                Some(f64::INFINITY)
            ]
        );
        assert_eq!(bucket_quantiles(&a, &a, &[0.5]), (0.0, vec![None]));
        assert!(histogram_buckets("garbage\nx_bucket{le=\"a\"} 1", "x").is_empty());
    }

    fn samples(ns: impl IntoIterator<Item = u64>) -> Samples {
        let mut s = Samples::default();
        for n in ns {
            s.push(Duration::from_nanos(n));
        }
        s
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = samples((1..=1000).rev()).summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50, Some(Duration::from_nanos(500)));
        assert_eq!(s.p99, Some(Duration::from_nanos(990)));
        assert_eq!(s.p999, Some(Duration::from_nanos(999)));
        assert_eq!(s.max, Some(Duration::from_nanos(1000)));
    }

    #[test]
    fn p999_of_few_samples_is_the_maximum() {
        let s = samples([5, 1, 9, 3]).summary();
        assert_eq!(s.p999, Some(Duration::from_nanos(9)));
        assert_eq!(s.p50, Some(Duration::from_nanos(3)));
    }

    #[test]
    fn cold_is_the_first_sample_not_the_smallest() {
        let s = samples([700, 1, 2]).summary();
        assert_eq!(s.cold, Some(Duration::from_nanos(700)));
        assert_eq!(s.total, Duration::from_nanos(703));
    }

    #[test]
    fn empty_samples_have_no_percentiles() {
        let s = Samples::default().summary();
        assert_eq!((s.count, s.p50, s.max, s.cold), (0, None, None, None));
    }

    #[test]
    fn peak_rss_is_at_least_current_rss() {
        let (peak, now) = (peak_rss(), current_rss());
        if let (Some(p), Some(c)) = (peak, now) {
            assert!(p >= c / 2, "peak {p} far below current {c}");
            assert!(
                c > 1024 * 1024,
                "a Rust test process holds more than 1 MiB: {c}"
            );
        }
    }

    #[test]
    fn durations_print_in_the_right_unit() {
        assert_eq!(fmt_duration(Some(Duration::from_nanos(950))), "950 ns");
        assert_eq!(fmt_duration(Some(Duration::from_nanos(42_300))), "42.3 µs");
        assert_eq!(fmt_duration(Some(Duration::from_millis(12))), "12.00 ms");
        assert_eq!(fmt_duration(Some(Duration::from_millis(2500))), "2.50 s");
        assert_eq!(fmt_duration(None), "-");
    }
}
