//! Connection timers, driven by the writer loop (no task of their own): the stale deadline
//! before `connect` (3502), server pings and the pong deadline (3012), connection expiry
//! (3005) and subscription expiry (unsubscribe 2501).

use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::codes;
use chorus_protocol::ping_message;
use rand::Rng;
use tokio::time::Instant;

use super::Client;
use crate::clock::{self, unix_now};
use crate::options::ClientOptions;
use crate::sync;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Close with 3502 if not connected by then.
    stale: Option<Instant>,
    next_ping: Option<Instant>,
    /// Close with 3012 if no pong by then.
    pong_deadline: Option<Instant>,
    /// Check connection and subscription expiry at this instant.
    expiry_check: Option<Instant>,
    /// The connection expires (3005) at this instant unless refreshed (expiry + grace).
    conn_deadline: Option<Instant>,
    ping_interval: Duration,
    pong_timeout: Duration,
}

impl Timers {
    pub(crate) fn new(opts: &ClientOptions) -> Self {
        Timers {
            stale: (!opts.stale_close_delay.is_zero())
                .then(|| Instant::now() + opts.stale_close_delay.get()),
            ping_interval: opts.ping_interval.get(),
            pong_timeout: opts.pong_timeout.get(),
            ..Default::default()
        }
    }

    fn earliest(&self) -> Option<Instant> {
        [
            self.stale,
            self.next_ping,
            self.pong_deadline,
            self.expiry_check,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Longest step of the ping grid.
const GRID_MAX: Duration = Duration::from_millis(250);

/// Rounds `at` up onto a process-wide grid of `ping_interval / 20` (at most 250 ms).
///
/// Pings and pong deadlines of all connections land on the same few instants, so one timer
/// turn sends a batch of pings (and their pongs arrive together) instead of waking a parked
/// worker thread for each connection. Measured before (S1: 10,000 idle connections, pings
/// spread at random over each interval): 30 % of idle CPU in `finish_task_switch`, 1.9 µs per
/// connection-second. A ping is at most one grid step late.
fn on_grid(at: Instant, ping_interval: Duration) -> Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let step = (ping_interval / 20).clamp(Duration::from_millis(1), GRID_MAX);
    let base = Instant::from_std(*BASE.get_or_init(std::time::Instant::now));
    let Some(since) = at.checked_duration_since(base) else {
        return at;
    };
    let step_ns = step.as_nanos().max(1);
    let steps = since.as_nanos().div_ceil(step_ns);
    let rounded = u64::try_from(steps * step_ns).unwrap_or(u64::MAX);
    base + Duration::from_nanos(rounded)
}

/// Converts a unix time (seconds) into a tokio instant (now if in the past).
fn instant_at(unix: i64, grace: Duration) -> Instant {
    let delta = u64::try_from(unix.saturating_sub(unix_now())).unwrap_or(0);
    Instant::now() + Duration::from_secs(delta) + grace
}

impl Client {
    fn lock_timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        sync::lock(&self.timers)
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.lock_timers().earliest()
    }

    /// Called after a successful connect: stop the stale timer, start pings (first one at a
    /// random point in [interval/2, interval) so mass reconnects do not ping in lockstep).
    pub(super) fn start_session_timers(&self) {
        let mut t = self.lock_timers();
        t.stale = None;
        if !t.ping_interval.is_zero() {
            let half = t.ping_interval / 2;
            let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
            let first = Instant::now() + half + Duration::from_millis(jitter);
            t.next_ping = Some(on_grid(first, t.ping_interval));
        }
        drop(t);
        // The writer sleeps until the deadline it last saw; with direct writes no queued
        // reply wakes it any more, so tell it the deadlines moved.
        self.outbound.wake();
    }

    /// Re-arms the expiry check after connect/refresh/subscribe changed an expiry.
    pub(crate) fn schedule_expiry_check(&self) {
        let grace = self.node.options().client.expired_close_delay.get();
        let st = self.lock_state();
        let conn = st.expires_at.map(|t| instant_at(t, grace));
        let subs = st
            .subs
            .values()
            .filter_map(|s| s.expires_at)
            .min()
            .map(|t| instant_at(t, Duration::ZERO));
        drop(st);
        let mut t = self.lock_timers();
        t.conn_deadline = conn;
        t.expiry_check = [conn, subs].into_iter().flatten().min();
        drop(t);
        self.outbound.wake();
    }

    pub(super) fn on_pong(&self) {
        self.lock_timers().pong_deadline = None;
    }

    /// Runs whatever timers are due.
    pub(super) fn on_timers(&self) {
        let now = Instant::now();
        let mut t = self.lock_timers();
        if t.stale.is_some_and(|d| now >= d) {
            t.stale = None;
            drop(t);
            self.disconnect(codes::DISCONNECT_STALE.into());
            return;
        }
        if t.pong_deadline.is_some_and(|d| now >= d) {
            t.pong_deadline = None;
            drop(t);
            self.disconnect(codes::DISCONNECT_NO_PONG.into());
            return;
        }
        if t.next_ping.is_some_and(|d| now >= d) {
            t.next_ping = Some(on_grid(now + t.ping_interval, t.ping_interval));
            if !t.pong_timeout.is_zero() && t.pong_deadline.is_none() {
                t.pong_deadline = Some(on_grid(now + t.pong_timeout, t.ping_interval));
            }
            self.outbound.push(ping_message(self.params.protocol));
        }
        if t.expiry_check.is_some_and(|d| now >= d) {
            t.expiry_check = None;
            drop(t);
            self.check_expiry();
        }
    }

    fn check_expiry(&self) {
        let due = self
            .lock_timers()
            .conn_deadline
            .is_some_and(|d| Instant::now() >= d);
        if due {
            self.disconnect(codes::DISCONNECT_EXPIRED.into());
            return;
        }
        let st = self.lock_state();
        let expired: Vec<Arc<str>> = st
            .subs
            .iter()
            .filter(|(_, s)| clock::is_expired(s.expires_at))
            .map(|(c, _)| c.clone())
            .collect();
        drop(st);
        if !expired.is_empty() {
            if let Some(me) = self.me.upgrade() {
                self.node.spawn(async move {
                    let _serial = me.cmd_lock.lock().await;
                    for channel in expired {
                        me.remove_subscription(&channel, Some(codes::UNSUBSCRIBE_EXPIRED))
                            .await;
                    }
                    me.schedule_expiry_check();
                });
            }
        }
        self.schedule_expiry_check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_rounds_up_by_less_than_one_step_and_groups_nearby_instants() {
        let interval = Duration::from_secs(25);
        let step = Duration::from_millis(250);
        // Past the grid's base (set by the first call) by more than a step.
        let _ = on_grid(Instant::now(), interval);
        let now = Instant::now() + Duration::from_secs(1);
        for ms in [0u64, 1, 90, 249, 250, 251, 10_000, 24_999] {
            let at = now + Duration::from_millis(ms);
            let g = on_grid(at, interval);
            assert!(g >= at && g < at + step, "{ms} ms");
            assert_eq!(on_grid(g, interval), g, "a grid point stays put");
        }
        // Instants within one step share their grid point.
        let g = on_grid(now, interval);
        let earlier_in_step = g - Duration::from_millis(249);
        assert_eq!(on_grid(earlier_in_step, interval), g);
        // Short intervals get a finer grid (interval / 20).
        let fine = on_grid(now, Duration::from_secs(1));
        assert!(fine >= now && fine < now + Duration::from_millis(50));
    }
}
