//! The per-channel bound on join/leave pushes (`channel.join_leave_max_rate`).
//!
//! One connection subscribing and unsubscribing in a loop (or a crowd arriving at once) would
//! otherwise push a join and a leave to every member of the room for each step. Each channel's
//! gate is a token bucket of `rate` events per second (burst `rate`): an event with a token and
//! nothing waiting is delivered at once; otherwise it waits, in arrival order, and is released
//! as tokens come back (the node ticks every [`TICK`]). While an event waits it is coalesced
//! per client: a leave that meets the same client's waiting join (or a join that meets its
//! waiting leave) cancels both — members never see a client who came and went within the
//! backlog, and see every net change, at most `rate` per second, in order. What waits is
//! bounded by the number of distinct clients (one entry each).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::ClientInfo;
use tokio::time::Instant;

/// How often the node releases waiting events.
pub const TICK: Duration = Duration::from_millis(100);

/// A join or a leave.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Join(ClientInfo),
    Leave(ClientInfo),
}

impl Event {
    fn client(&self) -> &str {
        match self {
            Event::Join(i) | Event::Leave(i) => &i.client,
        }
    }

    fn is_join(&self) -> bool {
        matches!(self, Event::Join(_))
    }
}

/// What an offer did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Queued behind others or without a token.
    Held,
    /// Cancelled out with the same client's waiting opposite event (both are gone).
    Cancelled,
    /// Free to go (returned by the following `release`).
    Ready,
}

#[derive(Debug)]
pub(crate) struct Gate {
    tokens: f64,
    refilled: Instant,
    next_seq: u64,
    /// Waiting events in arrival order.
    waiting: BTreeMap<u64, Event>,
    /// Client id → its waiting event's sequence number (at most one per client).
    by_client: HashMap<Arc<str>, u64>,
}

impl Gate {
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        Gate {
            tokens: f64::from(rate),
            refilled: now,
            next_seq: 0,
            waiting: BTreeMap::new(),
            by_client: HashMap::new(),
        }
    }

    pub(crate) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Adds an event behind the waiting ones, or cancels it out with its opposite.
    pub(crate) fn offer(&mut self, event: Event, rate: u32, now: Instant) -> Offered {
        if let Some(&seq) = self.by_client.get(event.client()) {
            let opposite = self
                .waiting
                .get(&seq)
                .is_some_and(|w| w.is_join() != event.is_join());
            if opposite {
                self.waiting.remove(&seq);
                self.by_client.remove(event.client());
                return Offered::Cancelled;
            }
            // Same kind again (a refreshed join): the newest info replaces the waiting one.
            self.waiting.insert(seq, event);
            return Offered::Held;
        }
        self.refill(rate, now);
        let ready = self.waiting.is_empty() && self.tokens >= 1.0;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_client.insert(Arc::from(event.client()), seq);
        self.waiting.insert(seq, event);
        if ready {
            Offered::Ready
        } else {
            Offered::Held
        }
    }

    /// Takes the waiting events the bucket allows now, oldest first.
    pub(crate) fn release(&mut self, rate: u32, now: Instant) -> Vec<Event> {
        self.refill(rate, now);
        let mut out = Vec::new();
        while self.tokens >= 1.0 {
            let Some((_, event)) = self.waiting.pop_first() else {
                break;
            };
            self.by_client.remove(event.client());
            self.tokens -= 1.0;
            out.push(event);
        }
        if self.waiting.is_empty() {
            // Drop grown maps once a burst is over.
            self.by_client = HashMap::new();
        }
        out
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(client: &str) -> ClientInfo {
        ClientInfo {
            user: format!("u-{client}"),
            client: client.to_string(),
            ..Default::default()
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Join(i) => format!("+{}", i.client),
                Event::Leave(i) => format!("-{}", i.client),
            })
            .collect()
    }

    #[test]
    fn within_the_rate_everything_goes_at_once() {
        let t = Instant::now();
        let mut g = Gate::new(3, t);
        for c in ["a", "b", "c"] {
            assert_eq!(g.offer(Event::Join(info(c)), 3, t), Offered::Ready);
            assert_eq!(names(&g.release(3, t)), [format!("+{c}")]);
        }
        assert!(!g.has_waiting());
    }

    #[test]
    fn excess_waits_in_order_and_flaps_cancel_out() {
        let t = Instant::now();
        let mut g = Gate::new(2, t);
        // Two tokens: a and b go; c, d wait.
        for c in ["a", "b", "c", "d"] {
            g.offer(Event::Join(info(c)), 2, t);
            g.release(2, t);
        }
        // c leaves before its join went out: both vanish. d flaps many times: nothing.
        assert_eq!(g.offer(Event::Leave(info("c")), 2, t), Offered::Cancelled);
        for _ in 0..500 {
            assert_eq!(g.offer(Event::Leave(info("d")), 2, t), Offered::Cancelled);
            assert_eq!(g.offer(Event::Join(info("d")), 2, t), Offered::Held);
        }
        // a (already announced) leaves: waits behind d's join.
        assert_eq!(g.offer(Event::Leave(info("a")), 2, t), Offered::Held);
        assert!(g.release(2, t).is_empty());
        // Half a second later one token is back, a second later two (never more than 2).
        let t1 = t + Duration::from_millis(500);
        assert_eq!(names(&g.release(2, t1)), ["+d"]);
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(names(&g.release(2, t2)), ["-a"]);
        assert!(!g.has_waiting());
    }

    #[test]
    fn a_loop_of_many_clients_is_bounded_per_second() {
        let t = Instant::now();
        let rate = 100;
        let mut g = Gate::new(rate, t);
        let mut sent = 0;
        for i in 0..10_000 {
            let c = format!("c{i}");
            g.offer(Event::Join(info(&c)), rate, t);
            sent += g.release(rate, t).len();
            g.offer(Event::Leave(info(&c)), rate, t);
            sent += g.release(rate, t).len();
        }
        // The first 100 events went out; everything after cancelled in the backlog.
        assert_eq!(sent, 100);
        assert!(!g.has_waiting());
    }
}
