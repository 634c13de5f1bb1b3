//! A log-linear latency histogram in the spirit of HdrHistogram.
//!
//! Values below 256 are counted exactly; above, every power of two is split into 128 linear
//! sub-buckets, so a reported percentile is within 1/128 (< 0.8 %) of the true value. The
//! largest recordable value is 2^40 - 1 (about 18 minutes in nanoseconds); larger values are
//! clamped. The exact minimum and maximum are kept besides the buckets.

const SUB_BITS: u32 = 8;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
const MAX_BITS: u32 = 40;
const MAX_VALUE: u64 = (1 << MAX_BITS) - 1;
const BUCKETS: usize = (SUB + (MAX_BITS - SUB_BITS) as u64 * HALF) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

fn index_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    // Shift so that the top SUB_BITS bits remain: v >> e lies in [HALF, SUB).
    let e = u64::from(63 - v.leading_zeros() - (SUB_BITS - 1));
    (SUB + (e - 1) * HALF + ((v >> e) - HALF)) as usize
}

/// The range `[low, high]` of values counted in bucket `i`.
fn bounds_of(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let j = i - SUB;
    let e = j / HALF + 1;
    let low = (j % HALF + HALF) << e;
    (low, low + (1 << e) - 1)
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        let v = v.min(MAX_VALUE);
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at percentile `p` (0–100): the highest value equivalent to the bucket holding
    /// the ⌈p/100·n⌉-th smallest sample, capped by the exact maximum. 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let rank = rank.min(self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bounds_of(i).1.min(self.max).max(self.min);
            }
        }
        self.max
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        let mut next = 0;
        for i in 0..BUCKETS {
            let (lo, hi) = bounds_of(i);
            assert_eq!(lo, next, "bucket {i}");
            assert!(hi >= lo);
            assert_eq!(index_of(lo), i);
            assert_eq!(index_of(hi), i);
            next = hi + 1;
        }
        assert_eq!(next, MAX_VALUE + 1);
    }

    #[test]
    fn relative_error_is_below_one_percent() {
        for v in [300u64, 1_000, 12_345, 999_999, 1 << 30, 123_456_789_012] {
            let (lo, hi) = bounds_of(index_of(v));
            assert!(lo <= v && v <= hi);
            assert!((hi - lo) as f64 / (lo as f64) < 0.008, "{v}: {lo}..{hi}");
        }
    }

    #[test]
    fn percentiles_of_uniform_values() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1_000); // 1 µs .. 100 ms in ns
        }
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.01;
        assert!(
            close(h.percentile(50.0), 50_000_000),
            "{}",
            h.percentile(50.0)
        );
        assert!(close(h.percentile(90.0), 90_000_000));
        assert!(close(h.percentile(99.0), 99_000_000));
        assert!(close(h.percentile(99.9), 99_900_000));
        assert_eq!(h.percentile(100.0), 100_000_000);
        assert_eq!(h.max(), 100_000_000);
        assert_eq!(h.min(), 1_000);
        assert_eq!(h.count(), 100_000);
        assert!(close(h.mean() as u64, 50_000_500));
    }

    #[test]
    fn small_values_are_exact_and_merge_adds() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..100 {
            a.record(v);
        }
        b.record(200);
        b.record(u64::MAX); // clamped
        a.merge(&b);
        assert_eq!(a.count(), 102);
        assert_eq!(a.percentile(50.0), 50);
        assert_eq!(a.percentile(0.0), 0);
        assert_eq!(a.max(), MAX_VALUE);
        assert_eq!(Histogram::new().percentile(99.0), 0);
    }
}
