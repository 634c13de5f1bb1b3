//! Latency histograms: HdrHistogram with 3 significant digits (0.1 %) over 1 ns … 1 hour,
//! values above saturating at the top. Worker processes ship theirs in the V2 serialization,
//! base64-encoded, so the coordinator merges exact counts rather than percentiles.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

pub type Hist = hdrhistogram::Histogram<u64>;

/// The largest recordable value (ns): one hour.
const MAX_NS: u64 = 3_600_000_000_000;

/// An empty histogram of nanoseconds (about 250 KiB of counters).
#[allow(clippy::expect_used)]
pub fn new_ns() -> Hist {
    // Constant bounds (1 ≤ 2·1, 3 ≤ 5 digits): no input reaches this.
    Hist::new_with_bounds(1, MAX_NS, 3).expect("valid constant bounds")
}

/// The value at quantile `q` (0–1) in milliseconds; 0 when empty.
pub fn ms_at(h: &Hist, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1e6
}

pub fn max_ms(h: &Hist) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.max() as f64 / 1e6
    }
}

pub fn min_ms(h: &Hist) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.min() as f64 / 1e6
    }
}

pub fn mean_ms(h: &Hist) -> f64 {
    h.mean() / 1e6
}

/// Adds `from` into `into` (same bounds, so this cannot fail; a mismatch drops nothing
/// silently: it is counted as saturated values instead).
pub fn merge(into: &mut Hist, from: &Hist) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// V2 serialization, base64 (standard alphabet).
pub fn to_base64(h: &Hist) -> String {
    let mut buf = Vec::new();
    // Serializing into a Vec cannot hit an I/O error.
    match V2Serializer::new().serialize(h, &mut buf) {
        Ok(_) => STANDARD.encode(buf),
        Err(_) => String::new(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistDecodeError {
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram is not a V2 serialization: {0:?}")]
    V2(hdrhistogram::serialization::DeserializeError),
}

pub fn from_base64(s: &str) -> Result<Hist, HistDecodeError> {
    if s.is_empty() {
        return Ok(new_ns());
    }
    let bytes = STANDARD.decode(s)?;
    let h: Hist = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(HistDecodeError::V2)?;
    // Widen to the common bounds so later merges never fail.
    let mut out = new_ns();
    merge(&mut out, &h);
    Ok(out)
}

/// Serde adapter: a histogram as its base64 V2 serialization.
pub mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Hist;

    pub fn serialize<S: Serializer>(h: &Hist, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_base64(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hist, D::Error> {
        let s = String::deserialize(d)?;
        super::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_a_tenth_of_a_percent() {
        let mut h = new_ns();
        for v in 1..=100_000u64 {
            h.record(v * 1_000).unwrap(); // 1 µs .. 100 ms
        }
        let close = |got: f64, want: f64| (got - want).abs() / want <= 0.001;
        assert!(close(ms_at(&h, 0.5), 50.0), "{}", ms_at(&h, 0.5));
        assert!(close(ms_at(&h, 0.99), 99.0));
        assert!(close(ms_at(&h, 0.999), 99.9));
        assert!(close(max_ms(&h), 100.0));
        assert_eq!(h.len(), 100_000);
        assert_eq!(ms_at(&new_ns(), 0.99), 0.0);
    }

    #[test]
    fn base64_round_trip_and_merge_keep_exact_counts() {
        let mut a = new_ns();
        let mut b = new_ns();
        for v in [1_000u64, 2_000, 2_000, 5_000_000] {
            a.record(v).unwrap();
        }
        b.saturating_record(u64::MAX); // clamps to one hour
        b.record(7).unwrap();
        let a2 = from_base64(&to_base64(&a)).expect("decode");
        assert_eq!(a2, a);
        let mut m = a2;
        merge(&mut m, &from_base64(&to_base64(&b)).expect("decode"));
        assert_eq!(m.len(), 6);
        assert_eq!(m.count_at(2_000), 2);
        assert_eq!(m.min(), 7);
        assert!(m.equivalent(m.max(), MAX_NS));
        assert!(from_base64("not base64!").is_err());
        assert!(from_base64("AAAA").is_err());
        assert_eq!(from_base64("").expect("empty").len(), 0);
    }
}
