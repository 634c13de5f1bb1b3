//! The node's timer wheel: every connection timer (server pings, the pong deadline, the stale
//! deadline before `connect`, expiry checks) is an entry here, not a tokio timer of its own.
//!
//! One task ([`crate::node::Node`] starts it) wakes once per step, takes the entries that are
//! due and runs them: a ping goes out through the connection's direct write, a missed pong or
//! an expiry closes it. A connection's own task is not woken for any of this. Before (S1,
//! 10,000 idle subscribed connections, pings every 25 s, `perf record`): each connection's
//! task kept a tokio sleep until its next deadline; `Wheel::poll` of tokio's timer took 10 %
//! of idle CPU and every ping cost two wake-ups and polls of the connection's task (the ping,
//! and the pong deadline firing after the pong had come).
//!
//! Deadlines are rounded up to the next step (`ping_interval / 20`, at most 250 ms), so a
//! timer fires at most one step late, and entries of many connections share a turn. The wheel
//! has `slots` steps of horizon; a later deadline is parked in the last slot and re-armed when
//! visited. Entries are never removed early: a connection that re-arms earlier records the
//! new tick ([`Wheel::insert`] returns it) and ignores visits for any other tick, and entries
//! of connections that are gone are dropped when visited (they hold only the id).

use std::time::Duration;

use tokio::time::Instant;

use crate::sync;

/// Longest step of the wheel.
pub(crate) const STEP_MAX: Duration = Duration::from_millis(250);
/// Most slots (horizon = slots × step; later deadlines are re-armed on a visit).
const SLOTS_MAX: usize = 4096;
const SLOTS_MIN: usize = 8;

#[derive(Debug)]
struct State<T> {
    /// Last tick taken by [`Wheel::take_due`]; entries live in ticks `cur + 1 ..= cur + slots - 1`.
    cur: u64,
    slots: Vec<Vec<(u64, T)>>,
}

/// Entries of type `T` due at ticks of `step` since `base`.
#[derive(Debug)]
pub(crate) struct Wheel<T> {
    base: Instant,
    step: Duration,
    state: std::sync::Mutex<State<T>>,
}

impl<T> Wheel<T> {
    /// A wheel with steps of `ping_interval / 20` (at most [`STEP_MAX`]) and enough slots to
    /// hold `horizon` (clamped to 8..=4096 slots).
    pub(crate) fn new(ping_interval: Duration, horizon: Duration) -> Self {
        let step = (ping_interval / 20).clamp(Duration::from_millis(1), STEP_MAX);
        let need = horizon.as_nanos().div_ceil(step.as_nanos()) + 2;
        let slots = usize::try_from(need)
            .unwrap_or(SLOTS_MAX)
            .clamp(SLOTS_MIN, SLOTS_MAX);
        Wheel {
            base: Instant::now(),
            step,
            state: std::sync::Mutex::new(State {
                cur: 0,
                slots: (0..slots).map(|_| Vec::new()).collect(),
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn step(&self) -> Duration {
        self.step
    }

    /// The tick whose turn comes at or after `at` (rounded up).
    fn tick_at_or_after(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(since.div_ceil(self.step.as_nanos())).unwrap_or(u64::MAX)
    }

    /// The last tick whose turn has come by `now`.
    fn tick_by(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.base).as_nanos();
        u64::try_from(since / self.step.as_nanos()).unwrap_or(u64::MAX)
    }

    /// `at` as nanoseconds since the wheel's base (0 for anything earlier).
    pub(crate) fn nanos_since_base(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `nanos` after the wheel's base.
    pub(crate) fn instant_at_nanos(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    /// When the turn of `tick` comes.
    pub(crate) fn instant_of(&self, tick: u64) -> Instant {
        let nanos = u64::try_from(self.step.as_nanos()).unwrap_or(u64::MAX);
        self.base + Duration::from_nanos(nanos.saturating_mul(tick))
    }

    /// Files `item` for the first turn at or after `at` (at the earliest the next turn, at the
    /// latest the end of the horizon). Returns the tick it was filed for.
    pub(crate) fn insert(&self, at: Instant, item: T) -> u64 {
        let wanted = self.tick_at_or_after(at);
        let mut st = sync::lock(&self.state);
        let n = st.slots.len() as u64;
        let tick = wanted.clamp(st.cur + 1, st.cur + n - 1);
        let slot = (tick % n) as usize;
        st.slots[slot].push((tick, item));
        tick
    }

    /// Takes every entry whose turn has come by `now`, in tick order.
    pub(crate) fn take_due(&self, now: Instant) -> Vec<(u64, T)> {
        let upto = self.tick_by(now);
        let mut st = sync::lock(&self.state);
        let n = st.slots.len() as u64;
        let mut due = Vec::new();
        while st.cur < upto {
            st.cur += 1;
            let slot = (st.cur % n) as usize;
            if due.is_empty() {
                due = std::mem::take(&mut st.slots[slot]);
            } else {
                let more = std::mem::take(&mut st.slots[slot]);
                due.extend(more);
            }
        }
        due
    }

    /// When the next turn comes (the task sleeps until then).
    pub(crate) fn next_turn(&self) -> Instant {
        let cur = sync::lock(&self.state).cur;
        self.instant_of(cur + 1)
    }

    /// Entries filed (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        sync::lock(&self.state).slots.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_come_due_on_their_turn_rounded_up_by_less_than_a_step() {
        let wheel = Wheel::new(Duration::from_secs(25), Duration::from_secs(25));
        assert_eq!(wheel.step(), STEP_MAX);
        let t0 = Instant::now();
        let a = wheel.insert(t0 + Duration::from_millis(100), "a");
        let b = wheel.insert(t0 + Duration::from_millis(250), "b");
        let c = wheel.insert(t0 + Duration::from_millis(251), "c");
        assert_eq!((a, b, c), (1, 1, 2));
        assert!(wheel.take_due(t0 + Duration::from_millis(249)).is_empty());
        assert_eq!(
            wheel.take_due(t0 + Duration::from_millis(250)),
            vec![(1, "a"), (1, "b")]
        );
        assert_eq!(wheel.next_turn(), t0 + Duration::from_millis(500));
        assert_eq!(
            wheel.take_due(t0 + Duration::from_millis(600)),
            vec![(2, "c")]
        );
        assert_eq!(wheel.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_task_catches_up_in_tick_order_and_past_deadlines_go_to_the_next_turn() {
        let wheel = Wheel::new(Duration::from_secs(2), Duration::from_secs(2));
        assert_eq!(wheel.step(), Duration::from_millis(100));
        let t0 = Instant::now();
        wheel.insert(t0 + Duration::from_millis(350), 3);
        wheel.insert(t0 + Duration::from_millis(150), 2);
        wheel.insert(t0, 1);
        let due: Vec<i32> = wheel
            .take_due(t0 + Duration::from_secs(1))
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(due, vec![1, 2, 3]);
        // Now at tick 10: a deadline in the past is filed for tick 11.
        assert_eq!(wheel.insert(t0, 4), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_past_the_horizon_park_in_the_last_slot() {
        let wheel = Wheel::new(Duration::from_secs(2), Duration::from_secs(1));
        let t0 = Instant::now();
        // 1 s / 100 ms + 2 = 12 slots: ticks 1..=11 are reachable.
        let tick = wheel.insert(t0 + Duration::from_secs(3600), "far");
        assert_eq!(tick, 11);
        assert!(wheel.take_due(t0 + Duration::from_millis(1000)).is_empty());
        assert_eq!(
            wheel.take_due(t0 + Duration::from_millis(1100)),
            vec![(11, "far")]
        );
    }
}
