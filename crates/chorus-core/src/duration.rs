//! Durations in configuration: strings with units (`"25s"`, `"500ms"`, `"1m30s"`, `"720h"`),
//! or bare integers meaning seconds. Serialized back as a string in the largest exact unit.

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A `std::time::Duration` that reads and writes the config duration syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub const ZERO: ConfigDuration = ConfigDuration(Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Self {
        ConfigDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        ConfigDuration(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected e.g. \"25s\", \"500ms\", \"1m30s\", \"720h\" or whole seconds")]
pub struct DurationParseError(pub String);

/// Parses `"1h2m3s"`, `"250ms"`, `"10us"`, `"0"`, `"-1"`-less forms. Negative values are
/// rejected; `"0"` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationParseError> {
    let s = text.trim();
    let err = || DurationParseError(text.to_string());
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return Err(err()),
        };
        let nanos = value * nanos_per_unit;
        if !nanos.is_finite() || !(0.0..=1e20).contains(&nanos) {
            return Err(err());
        }
        total += Duration::from_nanos(nanos as u64);
    }
    Ok(total)
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos.is_multiple_of(3_600_000_000_000) {
            write!(f, "{}h", nanos / 3_600_000_000_000)
        } else if nanos.is_multiple_of(60_000_000_000) {
            write!(f, "{}m", nanos / 60_000_000_000)
        } else if nanos.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", nanos / 1_000_000_000)
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{}ms", nanos / 1_000_000)
        } else {
            write!(f, "{nanos}ns")
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"25s\" or whole seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDuration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ConfigDuration::from_secs)
                    .map_err(|_| E::custom("negative duration"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(ConfigDuration(Duration::from_secs_f64(v)))
                } else {
                    Err(E::custom("invalid duration"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn displays_largest_exact_unit() {
        assert_eq!(ConfigDuration::from_secs(300).to_string(), "5m");
        assert_eq!(ConfigDuration::from_secs(25).to_string(), "25s");
        assert_eq!(ConfigDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(ConfigDuration::from_secs(7200).to_string(), "2h");
    }

    #[test]
    fn serde_round_trip() {
        let d: ConfigDuration = serde_json::from_str("\"300s\"").unwrap_or_default();
        assert_eq!(d, ConfigDuration::from_secs(300));
        let d: ConfigDuration = serde_json::from_str("10").unwrap_or_default();
        assert_eq!(d, ConfigDuration::from_secs(10));
        assert_eq!(serde_json::to_string(&d).ok().as_deref(), Some("\"10s\""));
        assert!(serde_json::from_str::<ConfigDuration>("\"abc\"").is_err());
    }
}
