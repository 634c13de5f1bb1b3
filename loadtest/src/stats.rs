//! What the tasks of one process count: the clock shared by every load process of the
//! machine, the payload format, per-stream order tracking, the named counters, per-second
//! timelines and [`Shared`], which holds them all for one run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::hist::{self, Hist};

/// Latency histograms are sharded by connection so receivers rarely contend on a lock.
const LATENCY_SHARDS: usize = 16;
/// At most this many missing sequence numbers are remembered per stream (beyond it a late
/// arrival is counted as a duplicate rather than a reorder).
const MAX_MISSING: usize = 100_000;
/// At most this many distinct failure reasons are kept (codes are bounded; OS error texts
/// are not, in theory).
const MAX_REASONS: usize = 64;

/// Wall-clock nanoseconds since the Unix epoch, read from a monotonic clock anchored once.
/// The epoch is the "shared start" of every load process on the machine (workers and the
/// coordinator agree on scheduled send times through it).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_epoch_ns: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let base_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            base: Instant::now(),
            base_epoch_ns,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base_epoch_ns + self.base.elapsed().as_nanos() as u64
    }

    pub fn instant_at(&self, epoch_ns: u64) -> Instant {
        self.base + std::time::Duration::from_nanos(epoch_ns.saturating_sub(self.base_epoch_ns))
    }
}

/// Encodes a publication payload: a JSON string `"<publisher>:<seq>:<scheduled ns>:xxx…"`
/// padded with `x` to `size` bytes (never shorter than the header). A JSON string is valid
/// for both the JSON protocol (raw JSON data) and Protobuf (opaque bytes).
pub fn encode_payload(publisher: u32, seq: u64, sched_ns: u64, size: usize) -> Vec<u8> {
    let mut s = format!("\"{publisher}:{seq}:{sched_ns}:");
    while s.len() + 1 < size {
        s.push('x');
    }
    s.push('"');
    s.into_bytes()
}

/// Decodes `(publisher, seq, scheduled ns)` from a payload made by [`encode_payload`]
/// (surrounding quotes optional).
pub fn decode_payload(data: &[u8]) -> Option<(u32, u64, u64)> {
    let data = data.strip_prefix(b"\"").unwrap_or(data);
    let mut parts = data.splitn(4, |b| *b == b':');
    let num = |p: Option<&[u8]>| -> Option<u64> { std::str::from_utf8(p?).ok()?.parse().ok() };
    let publisher = u32::try_from(num(parts.next())?).ok()?;
    let seq = num(parts.next())?;
    let sched = num(parts.next())?;
    Some((publisher, seq, sched))
}

/// Order tracking of one (room, publisher) stream as seen by one receiver.
#[derive(Debug, Default)]
pub struct Stream {
    next: u64,
    missing: BTreeSet<u64>,
    pub unique: u64,
    pub dups: u64,
    pub reorders: u64,
}

impl Stream {
    pub fn observe(&mut self, seq: u64) {
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
        } else if seq > self.next {
            for s in self.next..seq {
                if self.missing.len() >= MAX_MISSING {
                    break;
                }
                self.missing.insert(s);
            }
            self.next = seq + 1;
            self.unique += 1;
        } else if self.missing.remove(&seq) {
            self.reorders += 1;
            self.unique += 1;
        } else {
            self.dups += 1;
        }
    }
}

/// What one receiving connection reports at the end: its room and its streams by publisher.
#[derive(Debug, Default)]
pub struct ConnReport {
    pub room: usize,
    pub streams: HashMap<u32, Stream>,
}

/// Every event a run counts. The JSON key of each is [`Counter::name`]; worker processes
/// ship them as an array in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Publications received (live and recovered), whatever their scheduled time.
    Deliveries,
    /// Deliveries whose scheduled time is inside the measured window (latency samples).
    Measured,
    PublishErrors,
    /// Handshakes that failed before the subscribe reply (TCP, upgrade, connect, timeout).
    ConnectFailures,
    /// Handshakes that failed on the subscribe reply.
    SubscribeFailures,
    /// Close frames or read errors after a connection was up.
    Disconnects,
    /// `disconnect` pushes received (the server says why before closing).
    DisconnectPushes,
    /// Frames that did not decode, or publications whose payload is not ours.
    BadFrames,
    /// Server pings answered with a pong.
    Pings,
    /// `unsubscribe` pushes (any code) and those asking to resubscribe (code ≥ 2500).
    UnsubscribePushes,
    ResubscribePushes,
    /// Subscribe commands with `recover: true` (retries included), successes, error replies.
    ResubscribesSent,
    Resubscribed,
    ResubscribeErrors,
    RecoveredTrue,
    RecoveredFalse,
    /// Publications that arrived inside subscribe replies.
    RecoveredPublications,
    ReconnectAttempts,
    ReconnectFailures,
    Reconnected,
}

impl Counter {
    pub const COUNT: usize = 20;
    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::Deliveries,
        Counter::Measured,
        Counter::PublishErrors,
        Counter::ConnectFailures,
        Counter::SubscribeFailures,
        Counter::Disconnects,
        Counter::DisconnectPushes,
        Counter::BadFrames,
        Counter::Pings,
        Counter::UnsubscribePushes,
        Counter::ResubscribePushes,
        Counter::ResubscribesSent,
        Counter::Resubscribed,
        Counter::ResubscribeErrors,
        Counter::RecoveredTrue,
        Counter::RecoveredFalse,
        Counter::RecoveredPublications,
        Counter::ReconnectAttempts,
        Counter::ReconnectFailures,
        Counter::Reconnected,
    ];

    /// The resubscribe / reconnect counters: the tail of [`Counter::ALL`], from
    /// `UnsubscribePushes` on (reported in their own section).
    pub const RECOVERY: &'static [Counter] =
        Counter::ALL.split_at(Counter::UnsubscribePushes as usize).1;

    /// The JSON key (kept from the first versions of the tool: scripts read them).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Deliveries => "deliveries_total",
            Counter::Measured => "deliveries_measured",
            Counter::PublishErrors => "publish_errors",
            Counter::ConnectFailures => "connect_failures",
            Counter::SubscribeFailures => "subscribe_failures",
            Counter::Disconnects => "disconnects",
            Counter::DisconnectPushes => "disconnect_pushes",
            Counter::BadFrames => "bad_frames",
            Counter::Pings => "pings",
            Counter::UnsubscribePushes => "unsubscribe_pushes",
            Counter::ResubscribePushes => "resubscribe_pushes",
            Counter::ResubscribesSent => "resubscribes_sent",
            Counter::Resubscribed => "resubscribed",
            Counter::ResubscribeErrors => "resubscribe_errors",
            Counter::RecoveredTrue => "recovered_true",
            Counter::RecoveredFalse => "recovered_false",
            Counter::RecoveredPublications => "recovered_publications",
            Counter::ReconnectAttempts => "reconnect_attempts",
            Counter::ReconnectFailures => "reconnect_failures",
            Counter::Reconnected => "reconnected",
        }
    }
}

/// Per-second event counts from an origin (epoch ns) set once the phase starts.
#[derive(Debug)]
pub struct Timeline {
    origin_ns: AtomicU64,
    buckets: Vec<AtomicU64>,
}

impl Timeline {
    pub fn new(secs: usize) -> Self {
        Self {
            origin_ns: AtomicU64::new(u64::MAX),
            buckets: (0..secs.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn set_origin(&self, ns: u64) {
        self.origin_ns.store(ns, Relaxed);
    }

    /// Counts `n` events at `now_ns`; events before the origin or past the last bucket are
    /// not kept (the totals are counted elsewhere).
    pub fn record(&self, now_ns: u64, n: u64) {
        let origin = self.origin_ns.load(Relaxed);
        if origin == u64::MAX || now_ns < origin {
            return;
        }
        let i = ((now_ns - origin) / 1_000_000_000) as usize;
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(n, Relaxed);
        }
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }
}

/// Everything the tasks of one process count during one run.
#[derive(Debug)]
pub struct Shared {
    pub clock: Clock,
    counters: [AtomicU64; Counter::COUNT],
    latency: Vec<Mutex<Hist>>,
    handshake: Mutex<Hist>,
    /// Unsubscribe push (or disconnect) → successful resubscribe reply.
    resubscribe_wait: Mutex<Hist>,
    /// Deliveries whose scheduled time is in [from, to) are timed.
    measure_from_ns: AtomicU64,
    measure_to_ns: AtomicU64,
    /// Successful publications per (room, publisher slot).
    sent_ok: Vec<AtomicU64>,
    publishers: usize,
    failures: Mutex<BTreeMap<String, u64>>,
    /// Earliest loss and latest successful resubscribe (ns): the span in which the fleet
    /// was resubscribing.
    first_loss_ns: AtomicU64,
    last_resubscribed_ns: AtomicU64,
    /// Successful handshakes per second since the connect phase began.
    pub connects: Timeline,
    /// Deliveries per second since the measured run began.
    pub deliveries: Timeline,
}

impl Shared {
    /// `rooms` × `publishers` publication streams; timelines of `timeline_secs` seconds.
    pub fn new(rooms: usize, publishers: usize, timeline_secs: usize) -> Self {
        Self {
            clock: Clock::new(),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(hist::new_ns()))
                .collect(),
            handshake: Mutex::new(hist::new_ns()),
            resubscribe_wait: Mutex::new(hist::new_ns()),
            measure_from_ns: AtomicU64::new(u64::MAX),
            measure_to_ns: AtomicU64::new(u64::MAX),
            sent_ok: (0..rooms * publishers).map(|_| AtomicU64::new(0)).collect(),
            publishers,
            failures: Mutex::new(BTreeMap::new()),
            first_loss_ns: AtomicU64::new(u64::MAX),
            last_resubscribed_ns: AtomicU64::new(0),
            connects: Timeline::new(timeline_secs),
            deliveries: Timeline::new(timeline_secs),
        }
    }

    pub fn add(&self, c: Counter, n: u64) {
        self.counters[c as usize].fetch_add(n, Relaxed);
    }

    /// Adds one and returns the previous value (to log only the first few of a kind).
    pub fn bump(&self, c: Counter) -> u64 {
        self.counters[c as usize].fetch_add(1, Relaxed)
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Relaxed)
    }

    pub fn counters(&self) -> Vec<u64> {
        Counter::ALL.iter().map(|c| self.get(*c)).collect()
    }

    pub fn set_window(&self, from_ns: u64, to_ns: u64) {
        self.measure_from_ns.store(from_ns, Relaxed);
        self.measure_to_ns.store(to_ns, Relaxed);
    }

    pub fn published_ok(&self, room: usize, slot: u32) {
        if let Some(c) = self.sent_ok.get(room * self.publishers + slot as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn sent_ok(&self) -> Vec<u64> {
        self.sent_ok.iter().map(|c| c.load(Relaxed)).collect()
    }

    pub fn publishers(&self) -> usize {
        self.publishers
    }

    /// Records the deliveries of one frame: the scheduled send time of each publication.
    pub fn record_deliveries(&self, shard: usize, now_ns: u64, scheduled: &[u64]) {
        if scheduled.is_empty() {
            return;
        }
        let n = scheduled.len() as u64;
        self.add(Counter::Deliveries, n);
        self.deliveries.record(now_ns, n);
        let from = self.measure_from_ns.load(Relaxed);
        let to = self.measure_to_ns.load(Relaxed);
        let mut measured = 0;
        if let Ok(mut h) = self.latency[shard % LATENCY_SHARDS].lock() {
            for &s in scheduled {
                if s >= from && s < to {
                    h.saturating_record(now_ns.saturating_sub(s));
                    measured += 1;
                }
            }
        }
        self.add(Counter::Measured, measured);
    }

    /// A successful handshake that took `ns`.
    pub fn connected(&self, ns: u64) {
        if let Ok(mut h) = self.handshake.lock() {
            h.saturating_record(ns);
        }
        self.connects.record(self.clock.now_ns(), 1);
    }

    /// A failed handshake, by reason (see `HandshakeError::reason`).
    pub fn failed(&self, reason: String) {
        if let Ok(mut m) = self.failures.lock() {
            let key = if m.len() < MAX_REASONS || m.contains_key(&reason) {
                reason
            } else {
                "other".to_string()
            };
            *m.entry(key).or_default() += 1;
        }
    }

    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn lost_at(&self, now_ns: u64) {
        self.first_loss_ns.fetch_min(now_ns, Relaxed);
    }

    /// A successful resubscribe reply.
    pub fn resubscribed(&self, recovered: bool, waited_ns: Option<u64>, now_ns: u64) {
        self.add(Counter::Resubscribed, 1);
        self.add(
            if recovered {
                Counter::RecoveredTrue
            } else {
                Counter::RecoveredFalse
            },
            1,
        );
        if let Some(w) = waited_ns {
            if let Ok(mut h) = self.resubscribe_wait.lock() {
                h.saturating_record(w);
            }
        }
        self.last_resubscribed_ns.fetch_max(now_ns, Relaxed);
    }

    /// Earliest loss and latest resubscribe, when there was a loss.
    pub fn loss_span(&self) -> (Option<u64>, Option<u64>) {
        let first = self.first_loss_ns.load(Relaxed);
        let last = self.last_resubscribed_ns.load(Relaxed);
        (
            (first != u64::MAX).then_some(first),
            (last > 0).then_some(last),
        )
    }

    pub fn latency(&self) -> Hist {
        let mut all = hist::new_ns();
        for h in &self.latency {
            if let Ok(h) = h.lock() {
                hist::merge(&mut all, &h);
            }
        }
        all
    }

    pub fn handshake(&self) -> Hist {
        self.handshake
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| hist::new_ns())
    }

    pub fn resubscribe_wait(&self) -> Hist {
        self.resubscribe_wait
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| hist::new_ns())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_padding() {
        let p = encode_payload(7, 42, 1_700_000_000_123_456_789, 100);
        assert_eq!(p.len(), 100);
        assert!(p.starts_with(b"\"7:42:1700000000123456789:x"));
        assert!(p.ends_with(b"x\""));
        assert!(serde_json::from_slice::<String>(&p).is_ok());
        assert_eq!(decode_payload(&p), Some((7, 42, 1_700_000_000_123_456_789)));
        // Too small a size still yields a complete header.
        let short = encode_payload(1, 2, 3, 4);
        assert_eq!(short, b"\"1:2:3:\"");
        assert_eq!(decode_payload(&short), Some((1, 2, 3)));
        // Without quotes (opaque bytes) and garbage.
        assert_eq!(decode_payload(b"3:4:5:"), Some((3, 4, 5)));
        assert_eq!(decode_payload(b"{\"a\":1}"), None);
        assert_eq!(decode_payload(b""), None);
    }

    #[test]
    fn stream_counts_gaps_reorders_and_dups() {
        let mut s = Stream::default();
        for seq in [0, 1, 3, 2, 2, 5, 6, 6] {
            s.observe(seq);
        }
        assert_eq!(s.unique, 6); // 0 1 2 3 5 6, 4 missing
        assert_eq!(s.reorders, 1);
        assert_eq!(s.dups, 2);
    }

    #[test]
    fn counter_names_are_distinct_and_in_index_order() {
        let names: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::COUNT);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        assert_eq!(Counter::RECOVERY.first(), Some(&Counter::UnsubscribePushes));
        assert_eq!(Counter::RECOVERY.last(), Some(&Counter::Reconnected));
        assert_eq!(Counter::RECOVERY.len(), 11);
    }

    #[test]
    fn deliveries_are_timed_only_inside_the_window_and_bucketed_per_second() {
        let s = Shared::new(1, 1, 3);
        s.deliveries.set_origin(10_000_000_000);
        s.set_window(100, 200);
        s.record_deliveries(3, 10_500_000_000, &[50, 100, 150, 200]);
        s.record_deliveries(4, 11_000_000_000, &[150]);
        s.record_deliveries(5, 99_000_000_000, &[150]); // past the timeline
        assert_eq!(s.get(Counter::Deliveries), 6);
        assert_eq!(s.get(Counter::Measured), 4);
        assert_eq!(s.latency().len(), 4);
        assert_eq!(s.deliveries.snapshot(), [4, 1, 0]);
    }

    #[test]
    fn recovery_span_and_counts() {
        let s = Shared::new(1, 1, 1);
        assert_eq!(s.loss_span(), (None, None));
        s.lost_at(1_000);
        s.lost_at(500);
        s.resubscribed(true, Some(300), 800);
        s.resubscribed(false, None, 2_500);
        assert_eq!(s.loss_span(), (Some(500), Some(2_500)));
        assert_eq!(s.get(Counter::RecoveredTrue), 1);
        assert_eq!(s.get(Counter::RecoveredFalse), 1);
        assert_eq!(s.get(Counter::Resubscribed), 2);
        assert_eq!(s.resubscribe_wait().len(), 1);
    }

    #[test]
    fn failure_reasons_are_counted_and_bounded() {
        let s = Shared::new(1, 1, 1);
        s.failed("tcp_refused".into());
        s.failed("tcp_refused".into());
        for i in 0..100 {
            s.failed(format!("r{i}"));
        }
        let f = s.failures();
        assert_eq!(f["tcp_refused"], 2);
        assert_eq!(f.len(), MAX_REASONS + 1);
        assert_eq!(f["other"], 100 - (MAX_REASONS as u64 - 1));
    }
}
