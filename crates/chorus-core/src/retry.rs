//! Retrying a dependency (Redis, the presence service) that is down.

/// Whether the `failures`-th consecutive failure (counted from 0) is logged at ERROR: the 1st,
/// 2nd, 4th, 8th, … and then every 64th, so an outage is loud at once and stays visible
/// without a line per retry.
pub fn log_failure(failures: u32) -> bool {
    let n = failures.saturating_add(1);
    n.is_power_of_two() || n.is_multiple_of(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_with_backoff() {
        let logged: Vec<u32> = (0..200)
            .filter(|&f| log_failure(f))
            .map(|f| f + 1)
            .collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16, 32, 64, 128, 192]);
    }
}
