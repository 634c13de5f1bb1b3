//! The per-connection command rate limit (`client.command_rate_limit`): a token bucket that
//! refills `rate` tokens per second up to `burst`. Every command but the pong takes one; a
//! command without a token is refused with error 111 (SDKs retry it with backoff), and a
//! connection that keeps sending into an empty bucket — `disconnect_after` refusals in a row —
//! is closed with 3013.
//!
//! The bucket is public so that other node-wide brakes count the same way (the gateway's
//! admin console bounds login attempts with one, `disconnect_after` 0).

use tokio::time::Instant;

use crate::options::CommandRateLimit;

/// What to do with one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Answer error 111.
    Refuse,
    /// Close the connection with 3013.
    Disconnect,
}

#[derive(Debug)]
pub struct Bucket {
    limit: CommandRateLimit,
    tokens: f64,
    refilled: Instant,
    refused_in_row: u32,
}

impl Bucket {
    pub fn new(limit: CommandRateLimit) -> Self {
        Bucket {
            limit,
            tokens: f64::from(limit.bucket()),
            refilled: Instant::now(),
            refused_in_row: 0,
        }
    }

    /// Takes a token for one command, as of `now`.
    pub fn take(&mut self, now: Instant) -> Verdict {
        if !self.limit.enabled() {
            return Verdict::Run;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let cap = f64::from(self.limit.bucket());
        self.tokens = (self.tokens + elapsed * f64::from(self.limit.rate)).min(cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_row = 0;
            return Verdict::Run;
        }
        self.refused_in_row = self.refused_in_row.saturating_add(1);
        let limit = self.limit.disconnect_after;
        if limit > 0 && self.refused_in_row >= limit {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(rate: u32, burst: u32, disconnect_after: u32) -> CommandRateLimit {
        CommandRateLimit {
            rate,
            burst,
            disconnect_after,
        }
    }

    #[test]
    fn off_by_default() {
        let mut b = Bucket::new(CommandRateLimit::default());
        let now = Instant::now();
        assert!((0..10_000).all(|_| b.take(now) == Verdict::Run));
    }

    #[test]
    fn burst_then_refill_then_disconnect() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limit(10, 5, 3));
        let verdicts: Vec<Verdict> = (0..8).map(|_| b.take(t0)).collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Run, Run, Run, Run, Run, Refuse, Refuse, Disconnect]
        );
        // 10/s: after 250 ms two tokens are back, and the refusal streak is over.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!([b.take(t1), b.take(t1), b.take(t1)], [Run, Run, Refuse]);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..6).filter(|_| b.take(t2) == Run).count(), 5);
    }

    #[test]
    fn burst_defaults_to_rate_and_zero_never_disconnects() {
        let now = Instant::now();
        let mut b = Bucket::new(limit(3, 0, 0));
        assert_eq!((0..1000).filter(|_| b.take(now) == Verdict::Run).count(), 3);
        assert!((0..1000).all(|_| b.take(now) == Verdict::Refuse));
    }
}
