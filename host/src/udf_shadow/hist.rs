//! `LogHist`: a mergeable histogram of non-negative values on a log scale, for the shadow's
//! deltas and latencies (max exact, quantiles within one bucket: 20 per decade, 12% wide).

use std::collections::BTreeMap;

/// Buckets per power of ten.
const PER_DECADE: f64 = 20.0;
/// Bucket indexes are clamped to this range (1e-300 ..= 1e300).
const INDEX_LIMIT: i32 = 6000;

/// Counts of non-negative values by log-scale bucket, plus the exact count of zeros, the
/// exact maximum and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogHist {
    zeros: u64,
    buckets: BTreeMap<i32, u64>,
    count: u64,
    sum: f64,
    max: f64,
}

impl LogHist {
    /// Adds one value; a negative or NaN value counts as zero, an infinite one as `f64::MAX`.
    pub fn add(&mut self, value: f64) {
        self.add_n(value, 1);
    }

    /// Adds `n` copies of one value.
    pub fn add_n(&mut self, value: f64, n: u64) {
        if n == 0 {
            return;
        }
        let value = if value.is_nan() || value <= 0.0 {
            0.0
        } else {
            value.min(f64::MAX)
        };
        self.count += n;
        self.sum += value * n as f64;
        self.max = self.max.max(value);
        if value == 0.0 {
            self.zeros += n;
            return;
        }
        let index = ((value.log10() * PER_DECADE).floor() as i32).clamp(-INDEX_LIMIT, INDEX_LIMIT);
        *self.buckets.entry(index).or_default() += n;
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &LogHist) {
        self.zeros += other.zeros;
        for (index, n) in &other.buckets {
            *self.buckets.entry(*index).or_default() += n;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value (0 when empty).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// The mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The `q` quantile (0..=1): the upper edge of the bucket holding it, never above the
    /// maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank <= self.zeros {
            return 0.0;
        }
        let mut seen = self.zeros;
        for (index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let upper = 10f64.powf(f64::from(index + 1) / PER_DECADE);
                return upper.min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::LogHist;

    #[test]
    fn quantiles_are_within_a_bucket_and_never_above_the_max() {
        let mut h = LogHist::default();
        for v in 1..=1000 {
            h.add(f64::from(v));
        }
        let p99 = h.quantile(0.99);
        assert!((990.0..=990.0 * 1.13).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000.0);
        assert_eq!(h.max(), 1000.0);
        assert!((h.mean() - 500.5).abs() < 1e-9);
    }

    #[test]
    fn zeros_count_exactly_and_merge_adds() {
        let mut a = LogHist::default();
        for _ in 0..99 {
            a.add(0.0);
        }
        assert_eq!(a.quantile(0.99), 0.0);
        let mut b = LogHist::default();
        b.add(5.0);
        b.add(f64::NAN);
        a.merge(&b);
        assert_eq!(a.count(), 101);
        assert_eq!(a.quantile(0.99), 0.0);
        assert_eq!(a.quantile(1.0), 5.0);
        assert_eq!(LogHist::default().quantile(0.5), 0.0);
    }
}
