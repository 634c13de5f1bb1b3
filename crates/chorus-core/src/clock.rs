//! Wall-clock time as the protocol counts it, and the expiry rule — one copy for the whole
//! workspace (tokens, connection and subscription expiry, server time, broker lag).
//!
//! Timers that only measure intervals use `tokio::time::Instant` instead (paused time in tests).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The expiry rule: something that expires at `expires_at` (unix seconds) has expired once
/// that second is reached. `None` never expires.
pub fn is_expired(expires_at: Option<i64>) -> bool {
    expires_at.is_some_and(|t| t <= unix_now())
}

/// Seconds from now until `expires_at` (unix seconds), for `ttl` fields; 0 if past.
pub fn ttl_until(expires_at: i64) -> u32 {
    u32::try_from(expires_at.saturating_sub(unix_now()).max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rule() {
        let now = unix_now();
        assert!(!is_expired(None));
        assert!(is_expired(Some(now)), "the expiry second itself has passed");
        assert!(is_expired(Some(now - 1)));
        assert!(!is_expired(Some(now + 60)));
        assert_eq!(ttl_until(now - 5), 0);
        assert!((59..=60).contains(&ttl_until(now + 60)));
        let ms = unix_now_ms();
        assert!((ms / 1000 - now).abs() <= 1);
    }
}
