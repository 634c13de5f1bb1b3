//! Shared counters, the payload format, per-stream loss/duplicate/reorder tracking and
//! `/proc` sampling of server processes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::histogram::Histogram;

const SHARDS: usize = 64;
/// At most this many missing sequence numbers are remembered per stream (beyond it a late
/// arrival is counted as a duplicate rather than a reorder).
const MAX_MISSING: usize = 100_000;

/// Wall-clock nanoseconds since the Unix epoch, read from a monotonic clock anchored once.
/// The epoch is the "shared start" of every load process on the machine.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_epoch_ns: u64,
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

/// What one receiving connection reports at the end.
#[derive(Debug, Default)]
pub struct ConnReport {
    pub room: usize,
    pub streams: HashMap<u32, Stream>,
}

/// Resubscribe / reconnect counters (see `recovery.rs`).
#[derive(Debug)]
pub struct RecoveryStats {
    /// `unsubscribe` pushes received (any code) and those asking to resubscribe (≥ 2500).
    pub unsubscribe_pushes: AtomicU64,
    pub resubscribe_pushes: AtomicU64,
    /// Subscribe commands with `recover: true` sent (retries included), successful replies,
    /// and error replies.
    pub resubscribes_sent: AtomicU64,
    pub resubscribed: AtomicU64,
    pub resubscribe_errors: AtomicU64,
    /// Successful resubscribe replies with `recovered: true` / `false`.
    pub recovered_true: AtomicU64,
    pub recovered_false: AtomicU64,
    /// Publications that arrived inside subscribe replies.
    pub recovered_publications: AtomicU64,
    /// Reconnect attempts (`--reconnect`), failed attempts, successful reconnects.
    pub reconnect_attempts: AtomicU64,
    pub reconnect_failures: AtomicU64,
    pub reconnected: AtomicU64,
    /// Time from the unsubscribe push (or the disconnect) to the successful resubscribe
    /// reply.
    pub wait: Mutex<Histogram>,
    /// Earliest loss and latest successful resubscribe (ns, load-generator clock): the span
    /// in which the whole fleet was resubscribing.
    pub first_loss_ns: AtomicU64,
    pub last_resubscribed_ns: AtomicU64,
}

impl RecoveryStats {
    fn new() -> Self {
        Self {
            unsubscribe_pushes: AtomicU64::new(0),
            resubscribe_pushes: AtomicU64::new(0),
            resubscribes_sent: AtomicU64::new(0),
            resubscribed: AtomicU64::new(0),
            resubscribe_errors: AtomicU64::new(0),
            recovered_true: AtomicU64::new(0),
            recovered_false: AtomicU64::new(0),
            recovered_publications: AtomicU64::new(0),
            reconnect_attempts: AtomicU64::new(0),
            reconnect_failures: AtomicU64::new(0),
            reconnected: AtomicU64::new(0),
            wait: Mutex::new(Histogram::new()),
            first_loss_ns: AtomicU64::new(u64::MAX),
            last_resubscribed_ns: AtomicU64::new(0),
        }
    }

    pub fn lost_at(&self, now_ns: u64) {
        self.first_loss_ns.fetch_min(now_ns, Relaxed);
    }

    /// A successful resubscribe reply.
    pub fn resubscribed(&self, recovered: bool, waited_ns: Option<u64>, now_ns: u64) {
        self.resubscribed.fetch_add(1, Relaxed);
        if recovered {
            self.recovered_true.fetch_add(1, Relaxed);
        } else {
            self.recovered_false.fetch_add(1, Relaxed);
        }
        if let Some(w) = waited_ns {
            if let Ok(mut h) = self.wait.lock() {
                h.record(w);
            }
        }
        self.last_resubscribed_ns.fetch_max(now_ns, Relaxed);
    }

    /// Earliest loss to latest resubscribe, when there was any.
    pub fn span_ns(&self) -> Option<u64> {
        let first = self.first_loss_ns.load(Relaxed);
        let last = self.last_resubscribed_ns.load(Relaxed);
        (first != u64::MAX && last >= first).then(|| last - first)
    }
}

/// Counters shared by every task of one run.
#[derive(Debug)]
pub struct Shared {
    pub clock: Clock,
    latency: Vec<Mutex<Histogram>>,
    pub handshake: Mutex<Histogram>,
    /// Deliveries whose scheduled time is inside the measured window are timed.
    pub measure_from_ns: AtomicU64,
    pub measure_to_ns: AtomicU64,
    pub deliveries: AtomicU64,
    pub measured: AtomicU64,
    /// Successful publications per (room, publisher slot).
    pub sent_ok: Vec<AtomicU64>,
    pub pubs_per_room: usize,
    pub publish_errors: AtomicU64,
    pub connect_failures: AtomicU64,
    pub subscribe_failures: AtomicU64,
    pub disconnects: AtomicU64,
    pub bad_frames: AtomicU64,
    pub pings: AtomicU64,
    pub recovery: RecoveryStats,
}

impl Shared {
    pub fn new(rooms: usize, pubs_per_room: usize) -> Self {
        Self {
            clock: Clock::new(),
            latency: (0..SHARDS).map(|_| Mutex::new(Histogram::new())).collect(),
            handshake: Mutex::new(Histogram::new()),
            measure_from_ns: AtomicU64::new(u64::MAX),
            measure_to_ns: AtomicU64::new(u64::MAX),
            deliveries: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            sent_ok: (0..rooms * pubs_per_room)
                .map(|_| AtomicU64::new(0))
                .collect(),
            pubs_per_room,
            publish_errors: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            subscribe_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            recovery: RecoveryStats::new(),
        }
    }

    pub fn published_ok(&self, room: usize, slot: u32) {
        if let Some(c) = self.sent_ok.get(room * self.pubs_per_room + slot as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Records the deliveries of one frame: `(scheduled ns)` per publication.
    pub fn record_deliveries(&self, shard: usize, now_ns: u64, scheduled: &[u64]) {
        if scheduled.is_empty() {
            return;
        }
        self.deliveries.fetch_add(scheduled.len() as u64, Relaxed);
        let from = self.measure_from_ns.load(Relaxed);
        let to = self.measure_to_ns.load(Relaxed);
        let mut measured = 0;
        let Ok(mut h) = self.latency[shard % SHARDS].lock() else {
            return;
        };
        for &s in scheduled {
            if s >= from && s < to {
                h.record(now_ns.saturating_sub(s));
                measured += 1;
            }
        }
        drop(h);
        self.measured.fetch_add(measured, Relaxed);
    }

    pub fn latency(&self) -> Histogram {
        let mut all = Histogram::new();
        for h in &self.latency {
            if let Ok(h) = h.lock() {
                all.merge(&h);
            }
        }
        all
    }

    /// Loss, duplicates and reorders over all receivers: loss is, per receiver and stream of
    /// its room, successful publications minus distinct publications received.
    pub fn order_totals(&self, reports: &[ConnReport]) -> (u64, u64, u64, u64) {
        let (mut loss, mut dups, mut reorders, mut expected) = (0, 0, 0, 0);
        for r in reports {
            for slot in 0..self.pubs_per_room {
                let sent = self
                    .sent_ok
                    .get(r.room * self.pubs_per_room + slot)
                    .map_or(0, |c| c.load(Relaxed));
                expected += sent;
                let got = r.streams.get(&(slot as u32)).map_or(0, |s| s.unique);
                loss += sent.saturating_sub(got);
            }
            for s in r.streams.values() {
                dups += s.dups;
                reorders += s.reorders;
            }
        }
        (loss, dups, reorders, expected)
    }
}

/// CPU (utime + stime) and RSS of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_kib: u64,
}

/// Reads `/proc/PID/stat` fields 14–15 (clock ticks, USER_HZ = 100 on Linux) and `VmRSS`.
pub fn sample_proc(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_secs: (utime + stime) as f64 / 100.0,
        rss_kib,
    })
}

/// Sums samples of several processes; `None` when there are none or any is unreadable.
pub fn sample_all(pids: &[String]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = ProcSample::default();
    for p in pids {
        let s = sample_proc(p)?;
        total.cpu_secs += s.cpu_secs;
        total.rss_kib += s.rss_kib;
    }
    Some(total)
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
    fn order_totals_counts_loss_per_receiver() {
        let shared = Shared::new(2, 1);
        for _ in 0..10 {
            shared.published_ok(0, 0);
        }
        let mut r = ConnReport::default();
        let mut st = Stream::default();
        (0..8).for_each(|s| st.observe(s));
        r.streams.insert(0, st);
        let (loss, dups, reorders, expected) = shared.order_totals(&[r]);
        assert_eq!((loss, dups, reorders, expected), (2, 0, 0, 10));
    }

    #[test]
    fn recovery_stats_span_and_counts() {
        let r = RecoveryStats::new();
        assert_eq!(r.span_ns(), None);
        r.lost_at(1_000);
        r.lost_at(500);
        r.resubscribed(true, Some(300), 800);
        r.resubscribed(false, None, 2_500);
        assert_eq!(r.span_ns(), Some(2_000));
        assert_eq!(r.recovered_true.load(Relaxed), 1);
        assert_eq!(r.recovered_false.load(Relaxed), 1);
        assert_eq!(r.wait.lock().unwrap().count(), 1);
    }

    #[test]
    fn proc_self_is_readable() {
        let s = sample_proc("self").expect("own /proc entry");
        assert!(s.rss_kib > 0);
    }
}
