//! The mergeable result of one process: exact counters, whole histograms and per-stream
//! tallies, so that a coordinator merging N worker processes gets the same figures as one
//! process would have (percentiles of merged histograms, not averages of percentiles).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::{self, Hist};
use crate::stats::{ConnReport, Counter, Shared};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    /// Load processes merged into this result.
    pub processes: usize,
    pub connected: u64,
    /// Indexed like [`Counter::ALL`].
    pub counters: Vec<u64>,
    pub failures: BTreeMap<String, u64>,
    #[serde(with = "hist::b64")]
    pub latency: Hist,
    #[serde(with = "hist::b64")]
    pub handshake: Hist,
    #[serde(with = "hist::b64")]
    pub resubscribe_wait: Hist,
    pub first_loss_ns: Option<u64>,
    pub last_resubscribed_ns: Option<u64>,
    /// Publishers per room; `sent_ok` and `got` are indexed `room * publishers + slot`.
    pub publishers: usize,
    /// Successful publications per stream.
    pub sent_ok: Vec<u64>,
    /// Distinct publications received per stream, summed over the room's receivers.
    pub got: Vec<u64>,
    /// Receivers (connections that got subscribed) per room.
    pub receivers: Vec<u64>,
    pub dups: u64,
    pub reorders: u64,
    pub connects_timeline: Vec<u64>,
    pub deliveries_timeline: Vec<u64>,
    /// CPU seconds of worker processes over the measured window (the coordinator adds its
    /// own); `None` for an in-process fleet.
    pub loadgen_cpu_s: Option<f64>,
}

/// Loss, duplicates and reorders over all receivers of all rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    /// Σ over streams of (receivers × successful publications − distinct receptions).
    pub loss: u64,
    pub dups: u64,
    pub reorders: u64,
    /// Σ over streams of receivers × successful publications.
    pub expected: u64,
}

fn add_into(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

impl Partial {
    pub fn empty(rooms: usize, publishers: usize) -> Self {
        Self {
            processes: 0,
            connected: 0,
            counters: vec![0; Counter::COUNT],
            failures: BTreeMap::new(),
            latency: hist::new_ns(),
            handshake: hist::new_ns(),
            resubscribe_wait: hist::new_ns(),
            first_loss_ns: None,
            last_resubscribed_ns: None,
            publishers,
            sent_ok: vec![0; rooms * publishers],
            got: vec![0; rooms * publishers],
            receivers: vec![0; rooms],
            dups: 0,
            reorders: 0,
            connects_timeline: Vec::new(),
            deliveries_timeline: Vec::new(),
            loadgen_cpu_s: None,
        }
    }

    /// The result of one process: its counters and the reports of its receivers.
    pub fn from_run(shared: &Shared, reports: &[ConnReport], rooms: usize, connected: u64) -> Self {
        let publishers = shared.publishers();
        let mut p = Self::empty(rooms, publishers);
        p.processes = 1;
        p.connected = connected;
        p.counters = shared.counters();
        p.failures = shared.failures();
        p.latency = shared.latency();
        p.handshake = shared.handshake();
        p.resubscribe_wait = shared.resubscribe_wait();
        (p.first_loss_ns, p.last_resubscribed_ns) = shared.loss_span();
        p.sent_ok = shared.sent_ok();
        p.connects_timeline = shared.connects.snapshot();
        p.deliveries_timeline = shared.deliveries.snapshot();
        for r in reports {
            if let Some(n) = p.receivers.get_mut(r.room) {
                *n += 1;
            }
            for (publisher, s) in &r.streams {
                let i = r.room * publishers + *publisher as usize;
                match p.got.get_mut(i) {
                    Some(g) if (*publisher as usize) < publishers => *g += s.unique,
                    // Not a stream of this run (another run's publisher in the same room).
                    _ => p.counters[Counter::BadFrames as usize] += 1,
                }
                p.dups += s.dups;
                p.reorders += s.reorders;
            }
        }
        p
    }

    pub fn merge(&mut self, o: Partial) {
        self.processes += o.processes;
        self.connected += o.connected;
        add_into(&mut self.counters, &o.counters);
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        hist::merge(&mut self.latency, &o.latency);
        hist::merge(&mut self.handshake, &o.handshake);
        hist::merge(&mut self.resubscribe_wait, &o.resubscribe_wait);
        self.first_loss_ns = match (self.first_loss_ns, o.first_loss_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_resubscribed_ns = self.last_resubscribed_ns.max(o.last_resubscribed_ns);
        add_into(&mut self.sent_ok, &o.sent_ok);
        add_into(&mut self.got, &o.got);
        add_into(&mut self.receivers, &o.receivers);
        self.dups += o.dups;
        self.reorders += o.reorders;
        add_into(&mut self.connects_timeline, &o.connects_timeline);
        add_into(&mut self.deliveries_timeline, &o.deliveries_timeline);
        self.loadgen_cpu_s = match (self.loadgen_cpu_s, o.loadgen_cpu_s) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.counters.get(c as usize).copied().unwrap_or(0)
    }

    /// Successful publications counted outside the fleet (the HTTP API publisher).
    pub fn add_sent(&mut self, sent: &[u64]) {
        add_into(&mut self.sent_ok, sent);
    }

    pub fn published(&self) -> u64 {
        self.sent_ok.iter().sum()
    }

    /// Loss per stream is receivers × sent − received, floored at 0. (Per stream rather
    /// than per receiver, so that workers only ship sums; the two differ only when a
    /// receiver got a publication whose publish reply was lost, which then hides as much
    /// loss elsewhere in the same stream.)
    pub fn order(&self) -> Order {
        let mut o = Order {
            dups: self.dups,
            reorders: self.reorders,
            ..Order::default()
        };
        for (i, sent) in self.sent_ok.iter().enumerate() {
            let room = i / self.publishers.max(1);
            let receivers = self.receivers.get(room).copied().unwrap_or(0);
            let expected = receivers * sent;
            let got = self.got.get(i).copied().unwrap_or(0);
            o.expected += expected;
            o.loss += expected.saturating_sub(got);
        }
        o
    }

    /// Resubscribe span: first loss anywhere → last successful resubscribe (ns).
    pub fn resubscribe_span_ns(&self) -> Option<u64> {
        match (self.first_loss_ns, self.last_resubscribed_ns) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::Stream;

    fn receiver(room: usize, streams: &[(u32, std::ops::Range<u64>)]) -> ConnReport {
        let mut r = ConnReport {
            room,
            ..Default::default()
        };
        for (p, seqs) in streams {
            let mut s = Stream::default();
            seqs.clone().for_each(|q| s.observe(q));
            r.streams.insert(*p, s);
        }
        r
    }

    #[test]
    fn loss_is_counted_per_stream_and_receiver() {
        // 2 rooms, 2 publishers each; room 0 has two receivers, room 1 one.
        let shared = Shared::new(2, 2, 1);
        for _ in 0..10 {
            shared.published_ok(0, 0);
            shared.published_ok(1, 1);
        }
        shared.published_ok(0, 1);
        let reports = [
            receiver(0, &[(0, 0..10), (1, 0..1)]),
            receiver(0, &[(0, 0..8)]), // missed 2 of publisher 0 and 1 of publisher 1
            receiver(1, &[(1, 0..10)]),
        ];
        let p = Partial::from_run(&shared, &reports, 2, 3);
        assert_eq!(p.receivers, [2, 1]);
        assert_eq!(p.sent_ok, [10, 1, 0, 10]);
        assert_eq!(p.got, [18, 1, 0, 10]);
        assert_eq!(
            p.order(),
            Order {
                loss: 3,
                dups: 0,
                reorders: 0,
                expected: 32
            }
        );
    }

    #[test]
    fn merging_workers_equals_one_process() {
        // Publishers in one worker, receivers in the other.
        let a = Shared::new(1, 1, 2);
        for _ in 0..5 {
            a.published_ok(0, 0);
        }
        a.add(Counter::Pings, 2);
        a.connected(1_000);
        a.failed("timeout".into());
        let b = Shared::new(1, 1, 2);
        b.set_window(0, u64::MAX);
        b.record_deliveries(0, 10, &[1, 2, 3, 4, 5]);
        b.failed("timeout".into());
        b.lost_at(70);
        b.resubscribed(true, Some(5), 90);
        let mut m = Partial::from_run(&a, &[], 1, 1);
        m.merge(Partial::from_run(&b, &[receiver(0, &[(0, 0..5)])], 1, 1));
        // Through the wire format, as a worker sends it.
        let m: Partial = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!((m.processes, m.connected), (2, 2));
        assert_eq!(m.order().loss, 0);
        assert_eq!(m.order().expected, 5);
        assert_eq!(m.counter(Counter::Pings), 2);
        assert_eq!(m.counter(Counter::Deliveries), 5);
        assert_eq!(m.latency.len(), 5);
        assert_eq!(m.handshake.len(), 1);
        assert_eq!(m.failures["timeout"], 2);
        assert_eq!(m.resubscribe_span_ns(), Some(20));
    }
}
