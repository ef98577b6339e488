//! Latency recording: every sample kept (nanoseconds), sorted once at the
//! end; percentiles by nearest rank. Exact, and small enough: a run keeps at
//! most a few hundred thousand samples per measurement (8 bytes each).

use std::time::Duration;

/// Latency samples of one measurement, plus its failures.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    samples_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// The summary of a [`Recorder`].
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Successful operations.
    pub samples: u64,
    /// Failed operations.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Median, µs.
    pub p50_us: f64,
    /// 95th percentile, µs.
    pub p95_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
    /// Successful operations per second of `wall` time.
    pub ops_per_sec: f64,
}

impl Recorder {
    /// An empty recorder with room for `capacity` samples.
    pub fn with_capacity(capacity: usize) -> Recorder {
        Recorder {
            samples_ns: Vec::with_capacity(capacity),
            ..Recorder::default()
        }
    }

    /// Records one successful operation's latency.
    pub fn record(&mut self, latency: Duration) {
        self.samples_ns
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one failed operation.
    pub fn record_error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    /// Successful samples so far.
    pub fn len(&self) -> usize {
        self.samples_ns.len()
    }

    /// Whether nothing succeeded yet.
    pub fn is_empty(&self) -> bool {
        self.samples_ns.is_empty()
    }

    /// Failures so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Adds another recorder's samples and errors (workers of one workload).
    pub fn merge(&mut self, other: Recorder) {
        self.samples_ns.extend(other.samples_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Percentiles, mean, max, and throughput over `wall` (the measured
    /// span of wall time, all workers together). Zeroes when empty.
    pub fn summary(mut self, wall: Duration) -> Summary {
        self.samples_ns.sort_unstable();
        let s = &self.samples_ns;
        let us = |ns: u64| ns as f64 / 1000.0;
        let n = s.len() as u64;
        let mean = if s.is_empty() {
            0.0
        } else {
            s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64 / 1000.0
        };
        let secs = wall.as_secs_f64();
        Summary {
            samples: n,
            errors: self.errors,
            first_error: self.first_error,
            p50_us: us(percentile(s, 50.0)),
            p95_us: us(percentile(s, 95.0)),
            p99_us: us(percentile(s, 99.0)),
            mean_us: mean,
            max_us: us(s.last().copied().unwrap_or(0)),
            ops_per_sec: if secs > 0.0 { n as f64 / secs } else { 0.0 },
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at
/// least `p`% of the samples at or below it. 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 95.0), 95);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // 3 samples: p50 is the 2nd, p95 the 3rd.
        assert_eq!(percentile(&[1, 2, 3], 50.0), 2);
        assert_eq!(percentile(&[1, 2, 3], 95.0), 3);
    }

    #[test]
    fn summary_of_unsorted_samples_and_errors() {
        let mut a = Recorder::default();
        for us in [40u64, 10, 30, 20] {
            a.record(Duration::from_micros(us));
        }
        let mut b = Recorder::default();
        b.record(Duration::from_micros(50));
        b.record_error(|| "first".into());
        b.record_error(|| "second".into());
        a.merge(b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!(s.samples, 5);
        assert_eq!(s.errors, 2);
        assert_eq!(s.first_error.as_deref(), Some("first"));
        assert_eq!(s.p50_us, 30.0);
        assert_eq!(s.p99_us, 50.0);
        assert_eq!(s.max_us, 50.0);
        assert_eq!(s.mean_us, 30.0);
        assert_eq!(s.ops_per_sec, 2.5);
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = Recorder::default().summary(Duration::ZERO);
        assert_eq!((s.samples, s.p50_us, s.ops_per_sec), (0, 0.0, 0.0));
    }
}
