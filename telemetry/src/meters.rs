//! Counters, gauges and histograms on atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms: 0.25 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A number that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A number that goes up and down (a queue depth, a count of open things).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Replaces the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters for a closed set of label values (request types, error codes), fixed when it is
/// made. A value outside the set is counted under `other`, so a new variant someone forgot to
/// list still shows up.
#[derive(Debug)]
pub struct LabeledCounter {
    values: Vec<(&'static str, Counter)>,
}

impl LabeledCounter {
    /// Counters for `values`, plus `other`.
    pub fn new(values: &[&'static str]) -> LabeledCounter {
        let mut all: Vec<(&'static str, Counter)> =
            values.iter().map(|v| (*v, Counter::default())).collect();
        if !values.contains(&"other") {
            all.push(("other", Counter::default()));
        }
        LabeledCounter { values: all }
    }

    /// Adds one to `value`'s counter (or `other`'s).
    pub fn inc(&self, value: &str) {
        let counter = self
            .values
            .iter()
            .find(|(v, _)| *v == value)
            .or_else(|| self.values.iter().find(|(v, _)| *v == "other"));
        if let Some((_, counter)) = counter {
            counter.inc();
        }
    }

    /// The value of `value`'s counter (0 for a value outside the set).
    pub fn get(&self, value: &str) -> u64 {
        self.values
            .iter()
            .find(|(v, _)| *v == value)
            .map_or(0, |(_, c)| c.get())
    }

    /// Every label value with its count, in the order given (then `other`).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.values.iter().map(|(v, c)| (*v, c.get())).collect()
    }

    /// The sum over all label values.
    pub fn total(&self) -> u64 {
        self.values.iter().map(|(_, c)| c.get()).sum()
    }
}

/// A distribution of durations in fixed buckets, like a Prometheus histogram.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending; an implicit `+Inf` bucket follows.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds`.
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let at = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy: cumulative bucket counts, sum and count. (Concurrent
    /// observations may land between the reads; the count is taken from the buckets so that
    /// the `+Inf` bucket always equals it.)
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut total = 0u64;
        for b in &self.buckets {
            total += b.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum_secs: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: total,
        }
    }
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds; the last bucket (`+Inf`) has none.
    pub bounds: &'static [f64],
    /// Observations at or below each bound, then the total (`+Inf`).
    pub cumulative: Vec<u64>,
    /// Sum of all observations, seconds.
    pub sum_secs: f64,
    /// Number of observations.
    pub count: u64,
}

impl HistogramSnapshot {
    /// What happened since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative: self
                .cumulative
                .iter()
                .zip(earlier.cumulative.iter().chain(std::iter::repeat(&0)))
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
            sum_secs: (self.sum_secs - earlier.sum_secs).max(0.0),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// Estimates the `q` quantile (0..=1) in seconds by linear interpolation inside the bucket
    /// that holds it, as Prometheus' `histogram_quantile` does; `None` without observations.
    /// A quantile in the `+Inf` bucket is reported as the largest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower_bound = 0.0;
        let mut lower_count = 0u64;
        for (i, &upto) in self.cumulative.iter().enumerate() {
            let Some(&upper) = self.bounds.get(i) else {
                return self.bounds.last().copied();
            };
            if upto as f64 >= rank && upto > lower_count {
                let inside = (rank - lower_count as f64) / (upto - lower_count) as f64;
                return Some(lower_bound + (upper - lower_bound) * inside.clamp(0.0, 1.0));
            }
            lower_bound = upper;
            lower_count = upto;
        }
        self.bounds.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_move() {
        let c = Counter::default();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
        let g = Gauge::default();
        g.inc();
        g.inc();
        g.dec();
        assert_eq!(g.get(), 1);
        g.set(-3);
        assert_eq!(g.get(), -3);
    }

    #[test]
    fn labeled_counters_keep_unknown_values_under_other() {
        let l = LabeledCounter::new(&["send", "sync"]);
        l.inc("send");
        l.inc("send");
        l.inc("bogus");
        assert_eq!(l.get("send"), 2);
        assert_eq!(l.get("sync"), 0);
        assert_eq!(l.get("other"), 1);
        assert_eq!(l.total(), 3);
        assert_eq!(l.snapshot(), vec![("send", 2), ("sync", 0), ("other", 1)]);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_quantiles_interpolate() {
        static BOUNDS: &[f64] = &[0.001, 0.01, 0.1];
        let h = Histogram::new(BOUNDS);
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..50 {
            h.observe(Duration::from_micros(500)); // bucket 0.001
        }
        for _ in 0..50 {
            h.observe(Duration::from_millis(5)); // bucket 0.01
        }
        h.observe(Duration::from_secs(3)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![50, 100, 100, 101]);
        assert_eq!(s.count, 101);
        assert!(
            (s.sum_secs - (0.025 + 0.25 + 3.0)).abs() < 1e-9,
            "{}",
            s.sum_secs
        );
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > 0.0009 && p50 <= 0.0011, "p50 {p50}");
        let p90 = s.quantile(0.9).unwrap();
        assert!(p90 > 0.001 && p90 <= 0.01, "p90 {p90}");
        assert_eq!(s.quantile(1.0), Some(0.1), "+Inf reports the top bound");
        let later = {
            h.observe(Duration::from_millis(50));
            h.snapshot()
        };
        let delta = later.since(&s);
        assert_eq!(delta.count, 1);
        assert_eq!(delta.cumulative, vec![0, 0, 1, 1]);
    }
}
