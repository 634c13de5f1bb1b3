//! The per-connection outbound queue, bounded in bytes.
//!
//! Everything a connection sends — replies, pushes, pings — is an encoded message (`Bytes`)
//! enqueued here without awaiting; the connection's single writer drains it and packs several
//! messages into one frame. Replies and pushes share one FIFO (a subscribe reply must precede
//! the publications that follow it) but are bounded apart:
//!
//! * **pushes** (fan-out, pings, server-initiated messages) — [`Outbound::push`] takes a short
//!   uncontended lock and never blocks. Over `client.queue_max_size` queued push bytes the
//!   queue is dropped and the connection closed with 3008 "slow", so a slow reader costs
//!   nobody else;
//! * **replies** to the client's own commands — [`Outbound::push_reply`] never closes the
//!   connection: a history page or a recovery the client asked for is not a slow-client
//!   backlog, even when it is bigger than `queue_max_size`. The caller keeps each reply under
//!   `client.reply_max_size`, and the connection's reader waits ([`Outbound::reply_room`])
//!   before its next command while that many reply bytes are still unwritten — so a client
//!   that asks and does not read stalls only itself.
//!
//! **Direct writes.** A transport that can write without blocking (a TCP socket's
//! `try_write`) registers a [`DirectWrite`]. When nothing is queued and the writer holds no
//! batch, a push is written straight from the pushing task (the fan-out, the reader, the
//! timers) — no queue entry, no wake-up of the connection's task. At chat rates that is almost
//! every delivery: it removed the task wake, the poll of the connection's futures and the
//! frame copy per delivery (S2a, 5,000 subscribers × 10 msgs/s: see docs/benchmarks.md).
//! Whatever the socket does not take (a full send buffer, a partial write) is queued as usual
//! — a partial write's unwritten tail as a [`Taken::Raw`] entry that the writer finishes
//! first — so order is kept and the slow-client bound applies unchanged.
//!
//! **Fan-out is written in flush passes.** A publication's fan-out queues the message on each
//! subscriber ([`Outbound::push_fanout`]) and, for a connection with nothing else queued,
//! schedules it in the broadcast's [`Round`]. The round is flushed after the broadcast
//! (inline for small rooms, else by the node's flusher task): each scheduled connection gets
//! what piled up since, packed into one frame, in one direct write. At chat rates that is one
//! write per delivery with no wake-up of the connection's task; when publications come faster
//! than a pass takes, several land in one frame (S2b).
//!
//! Direct writes of other pushes (replies, pings) are for quiet connections only (`client.direct_write_min_interval`, 20 ms):
//! a connection that wrote more recently goes through the queue, so its writer packs what
//! piles up into one frame. Without that rule S2b (5,000 subscribers × 100 msgs/s) wrote one
//! frame per delivery: 157k deliveries/s at 6.3 µs each and a 10.8 s p99, against 495k/s at
//! 2.4 µs with batching.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use chorus_protocol::codes::DISCONNECT_SLOW;
use chorus_protocol::{join_frame, Protocol};
use tokio::sync::Notify;

use crate::disconnect::Disconnect;
use crate::metrics;
use crate::sync;

/// What the writer gets from the queue.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A batch of messages, in order, to pack into one frame.
    Messages(Vec<Bytes>),
    /// Bytes the transport already framed (the tail of a partial direct write, or a control
    /// frame of the transport's own): write them as they are, before anything else.
    Raw(Bytes),
    /// Close with this disconnect (the queue was flushed before, except for "slow").
    Close(Disconnect),
}

/// Queue slots kept allocated between messages (a freed and re-allocated queue per
/// delivery was 5 % of S2a's CPU in malloc/free); a queue grown past this by a burst is freed
/// once empty.
const QUEUE_KEEP: usize = 8;

/// What [`Outbound::push_fanout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The connection is closing (or was just closed as slow): not queued.
    Dropped,
    /// Queued behind other messages (a pass or the writer will write it).
    Queued,
    /// Queued and scheduled: add the queue to the round.
    Schedule,
}

/// The queues one broadcast scheduled for a flush pass.
#[derive(Debug, Default)]
pub struct Round {
    pub(crate) scheduled: Vec<Arc<Outbound>>,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }

    pub fn len(&self) -> usize {
        self.scheduled.len()
    }

    /// Runs the flush pass of every scheduled queue.
    pub fn flush(self, max_messages: usize, max_bytes: usize) {
        for outbound in self.scheduled {
            outbound.flush_scheduled(max_messages, max_bytes);
        }
    }
}

/// What a [`DirectWrite`] did with one message.
#[derive(Debug)]
pub enum Direct {
    /// The whole frame is in the socket.
    Written,
    /// Part of the frame is in the socket; these framed bytes still have to be written, as
    /// they are, before anything else.
    Partial(Bytes),
    /// Nothing was written (the socket would block, or the transport is failing): queue it.
    NotNow,
}

/// A transport that can write one encoded message as one frame now, without blocking.
///
/// Called with the connection's queue lock held (that is what keeps direct and queued writes
/// in order), so it must never block or call back into the queue.
pub trait DirectWrite: Send + Sync {
    fn try_write(&self, message: &Bytes) -> Direct;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Fan-out, pings, server pushes: bounded by `queue_max_size`.
    Push,
    /// A reply to a command (bounded apart from pushes).
    Reply,
    /// Already framed by the transport; `reply` says which bound its bytes count toward.
    Raw { reply: bool },
}

impl Kind {
    fn is_reply(self) -> bool {
        matches!(self, Kind::Reply | Kind::Raw { reply: true })
    }
}

#[derive(Debug)]
struct Entry {
    message: Bytes,
    kind: Kind,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Entry>,
    /// Bytes of queued pushes (the slow-client bound).
    bytes: usize,
    /// Bytes of queued replies.
    reply_bytes: usize,
    close: Option<Disconnect>,
    close_taken: bool,
    /// The writer holds a batch it has not finished writing: no direct write may overtake it.
    writing: bool,
    /// When something was last written directly or taken by the writer.
    last_write: Option<std::time::Instant>,
    /// Fan-out is queued for a flush pass (the writer was not told).
    scheduled: bool,
}

#[derive(Debug)]
pub struct Outbound {
    state: Mutex<State>,
    notify: Notify,
    closed_notify: Notify,
    /// Woken when the writer takes replies off the queue.
    drained: Notify,
    closed: AtomicBool,
    max_bytes: usize,
    direct: OnceLock<Arc<dyn DirectWrite>>,
    /// Direct writes only after this long without a write.
    direct_interval: std::time::Duration,
    /// How queued messages are packed into one frame.
    protocol: Protocol,
}

impl std::fmt::Debug for dyn DirectWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectWrite")
    }
}

impl Outbound {
    pub fn new(max_bytes: usize) -> Self {
        Self::for_client(max_bytes, std::time::Duration::ZERO, Protocol::Json)
    }

    /// A client's queue: direct writes need `direct_interval` without a write before them;
    /// flush passes pack messages for `protocol`.
    pub fn for_client(
        max_bytes: usize,
        direct_interval: std::time::Duration,
        protocol: Protocol,
    ) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed_notify: Notify::new(),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            max_bytes,
            direct: OnceLock::new(),
            direct_interval,
            protocol,
        }
    }

    /// Registers the transport's direct writer (once; later calls are ignored).
    pub fn set_direct(&self, direct: Arc<dyn DirectWrite>) {
        let _ = self.direct.set(direct);
    }

    /// Writes `message` directly if nothing may be ahead of it. `Ok(())`: it is in the socket,
    /// or its unwritten tail is queued; `Err(message)`: queue it as usual.
    fn try_direct(&self, st: &mut State, message: Bytes, kind: Kind) -> Result<(), Bytes> {
        if !st.queue.is_empty() || st.writing {
            return Err(message);
        }
        let Some(direct) = self.direct.get() else {
            return Err(message);
        };
        let now = std::time::Instant::now();
        if st
            .last_write
            .is_some_and(|last| now.duration_since(last) < self.direct_interval)
        {
            return Err(message);
        }
        st.last_write = Some(now);
        match direct.try_write(&message) {
            Direct::Written => Ok(()),
            Direct::Partial(tail) => {
                let reply = kind.is_reply();
                self.enqueue(st, tail, Kind::Raw { reply });
                Ok(())
            }
            Direct::NotNow => Err(message),
        }
    }

    /// Over the push bound: drop the backlog (but not a frame's unwritten tail), close 3008.
    fn overflow(&self, mut st: std::sync::MutexGuard<'_, State>) {
        // Drop the backlog, but keep the unwritten tail of a frame already on the wire
        // (a partial direct write): cut short, it would garble the 3008 close after it.
        let tails = st
            .queue
            .iter()
            .take_while(|e| matches!(e.kind, Kind::Raw { .. }))
            .count();
        st.queue.truncate(tails);
        st.queue.shrink_to_fit();
        let (mut bytes, mut reply_bytes) = (0, 0);
        for e in &st.queue {
            if e.kind.is_reply() {
                reply_bytes += e.message.len();
            } else {
                bytes += e.message.len();
            }
        }
        (st.bytes, st.reply_bytes) = (bytes, reply_bytes);
        st.close = Some(DISCONNECT_SLOW.into());
        drop(st);
        metrics::slow_client();
        self.mark_closed();
    }

    /// Queues one fan-out message. [`Pushed::Schedule`]: the caller puts this queue in its
    /// [`Round`], whose flush pass writes it (nothing else was queued, nobody was woken).
    pub(crate) fn push_fanout(&self, message: Bytes) -> Pushed {
        let mut st = self.lock();
        if st.close.is_some() {
            return Pushed::Dropped;
        }
        if st.bytes + message.len() > self.max_bytes {
            self.overflow(st);
            return Pushed::Dropped;
        }
        if self.direct.get().is_none() {
            self.enqueue(&mut st, message, Kind::Push);
            return Pushed::Queued;
        }
        st.bytes += message.len();
        st.queue.push_back(Entry {
            message,
            kind: Kind::Push,
        });
        if st.scheduled {
            return Pushed::Queued;
        }
        if st.queue.len() == 1 && !st.writing {
            st.scheduled = true;
            return Pushed::Schedule;
        }
        drop(st);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// The flush pass of a scheduled queue: what piled up since it was scheduled goes out in
    /// one frame with one direct write; anything the socket does not take is the writer's.
    pub(crate) fn flush_scheduled(&self, max_messages: usize, max_bytes: usize) {
        let mut st = self.lock();
        if !st.scheduled {
            return;
        }
        st.scheduled = false;
        let direct = match self.direct.get() {
            Some(d) if !st.writing && st.close.is_none() => d,
            _ => {
                drop(st);
                self.notify.notify_one();
                return;
            }
        };
        let frame = if st.queue.len() == 1 {
            // The usual pass at chat rates: one message, no packing.
            match st.queue.pop_front() {
                Some(e) if !matches!(e.kind, Kind::Raw { .. }) => {
                    if e.kind.is_reply() {
                        st.reply_bytes -= e.message.len();
                    } else {
                        st.bytes -= e.message.len();
                    }
                    e.message
                }
                other => {
                    if let Some(e) = other {
                        st.queue.push_front(e);
                    }
                    drop(st);
                    self.notify.notify_one();
                    return;
                }
            }
        } else {
            let (batch, _) = Self::take_batch(&mut st, max_messages, max_bytes);
            if batch.is_empty() {
                drop(st);
                self.notify.notify_one();
                return;
            }
            join_frame(self.protocol, &batch)
        };
        st.last_write = Some(std::time::Instant::now());
        let rest = match direct.try_write(&frame) {
            Direct::Written => None,
            Direct::Partial(tail) => Some((tail, Kind::Raw { reply: false })),
            Direct::NotNow => Some((frame, Kind::Push)),
        };
        if let Some((message, kind)) = rest {
            st.bytes += message.len();
            st.queue.push_front(Entry { message, kind });
        }
        if st.queue.is_empty() {
            if st.queue.capacity() > QUEUE_KEEP {
                // A burst grew the queue: give that memory back once idle.
                st.queue = VecDeque::new();
            }
        } else {
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Takes up to `max_messages` / `max_bytes` of queued messages (never a raw entry) for
    /// one frame, updating the byte counts.
    /// Also says whether replies were among them (the reader may wait for that).
    fn take_batch(st: &mut State, max_messages: usize, max_bytes: usize) -> (Vec<Bytes>, bool) {
        let mut batch = Vec::with_capacity(st.queue.len().min(max_messages));
        let mut size = 0usize;
        let mut replies = false;
        while let Some(front) = st.queue.front() {
            let len = front.message.len();
            if matches!(front.kind, Kind::Raw { .. })
                || (!batch.is_empty() && (batch.len() >= max_messages || size + len > max_bytes))
            {
                break;
            }
            let Some(e) = st.queue.pop_front() else { break };
            size += len;
            if e.kind.is_reply() {
                st.reply_bytes -= len;
                replies = true;
            } else {
                st.bytes -= len;
            }
            batch.push(e.message);
        }
        (batch, replies)
    }

    fn enqueue(&self, st: &mut State, message: Bytes, kind: Kind) {
        if kind.is_reply() {
            st.reply_bytes += message.len();
        } else {
            st.bytes += message.len();
        }
        st.queue.push_back(Entry { message, kind });
        self.notify.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a few field updates), so a poisoned lock is safe to reuse.
        sync::lock(&self.state)
    }

    /// Enqueues one encoded message. Returns false if the connection is closing (the message
    /// is dropped). Over the byte bound the connection is closed with 3008.
    pub fn push(&self, message: Bytes) -> bool {
        let mut st = self.lock();
        if st.close.is_some() {
            return false;
        }
        if st.bytes + message.len() > self.max_bytes {
            self.overflow(st);
            return false;
        }
        if let Err(message) = self.try_direct(&mut st, message, Kind::Push) {
            self.enqueue(&mut st, message, Kind::Push);
        }
        true
    }

    /// Enqueues a reply to one of the client's commands, whatever `queue_max_size` says (the
    /// caller bounds its size). Returns false if the connection is closing.
    pub fn push_reply(&self, message: Bytes) -> bool {
        let mut st = self.lock();
        if st.close.is_some() {
            return false;
        }
        if let Err(message) = self.try_direct(&mut st, message, Kind::Reply) {
            self.enqueue(&mut st, message, Kind::Reply);
        }
        true
    }

    /// Enqueues bytes the transport framed itself (a pong), in order with everything else.
    /// They count as reply bytes, so [`Outbound::reply_room`] bounds a peer that sends pings
    /// and does not read. Returns false if the connection is closing.
    pub fn push_raw(&self, frame: Bytes) -> bool {
        let mut st = self.lock();
        if st.close.is_some() {
            return false;
        }
        // Always through the queue (pongs are rare): `DirectWrite` frames messages.
        self.enqueue(&mut st, frame, Kind::Raw { reply: true });
        true
    }

    /// Resolves once fewer than `limit` reply bytes wait to be written, or the connection is
    /// closing. The reader awaits this before each command, so replies a client does not read
    /// stall its own commands instead of growing memory.
    pub async fn reply_room(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.is_closed() || self.lock().reply_bytes < limit {
                return;
            }
            tokio::select! {
                _ = &mut drained => {}
                _ = self.closed() => return,
            }
        }
    }

    /// Requests a close. The first request wins; queued messages are still flushed before the
    /// close frame. Returns true if this call set the close.
    pub fn close(&self, disconnect: Disconnect) -> bool {
        let mut st = self.lock();
        if st.close.is_some() {
            return false;
        }
        st.close = Some(disconnect);
        drop(st);
        self.mark_closed();
        true
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
        self.closed_notify.notify_waiters();
        self.drained.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once a close was requested.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Takes what the writer should do next without waiting, if anything. Taking a batch
    /// marks the writer busy (no direct write may overtake it) until it comes back and finds
    /// nothing more to take.
    pub(crate) fn try_take(&self, max_messages: usize, max_bytes: usize) -> Option<Taken> {
        let mut st = self.lock();
        if let Some(front) = st.queue.front() {
            if let Kind::Raw { reply } = front.kind {
                let len = front.message.len();
                let raw = st.queue.pop_front().map(|e| e.message).unwrap_or_default();
                if reply {
                    st.reply_bytes -= len;
                } else {
                    st.bytes -= len;
                }
                st.writing = true;
                st.last_write = Some(std::time::Instant::now());
                drop(st);
                if reply {
                    self.drained.notify_waiters();
                }
                return Some(Taken::Raw(raw));
            }
            let (batch, replies) = Self::take_batch(&mut st, max_messages, max_bytes);
            st.writing = true;
            if self.direct.get().is_some() {
                st.last_write = Some(std::time::Instant::now());
            }
            drop(st);
            if replies {
                self.drained.notify_waiters();
            }
            return Some(Taken::Messages(batch));
        }
        st.writing = false;
        match st.close.clone() {
            Some(close) if !st.close_taken => {
                st.close_taken = true;
                st.writing = true;
                Some(Taken::Close(close))
            }
            _ => None,
        }
    }

    /// Takes the pre-framed entries at the front of the queue (the tail of a partial direct
    /// write, queued pongs), so a transport that must close now can finish the frame on the
    /// wire before writing its close frame. Call after [`Outbound::close`] (then nothing can
    /// be written directly any more).
    pub(crate) fn take_raw_front(&self) -> Vec<Bytes> {
        let mut st = self.lock();
        let mut out = Vec::new();
        while let Some(Entry {
            kind: Kind::Raw { reply },
            ..
        }) = st.queue.front()
        {
            let reply = *reply;
            let Some(e) = st.queue.pop_front() else { break };
            if reply {
                st.reply_bytes -= e.message.len();
            } else {
                st.bytes -= e.message.len();
            }
            out.push(e.message);
        }
        out
    }

    /// Wakes the writer without queueing anything (its timers changed).
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits until something may be available (a permit is stored if a push raced ahead).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Push bytes currently queued (what `queue_max_size` bounds).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Reply bytes currently queued.
    pub fn queued_reply_bytes(&self) -> usize {
        self.lock().reply_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(o: &Outbound) -> Option<Taken> {
        o.try_take(16, 1 << 20)
    }

    #[test]
    fn batches_in_order_and_respects_message_cap() {
        let o = Outbound::new(1024);
        for i in 0..20u8 {
            assert!(o.push(Bytes::from(vec![i])));
        }
        match take(&o) {
            Some(Taken::Messages(m)) => {
                assert_eq!(m.len(), 16);
                assert_eq!(m[0][0], 0);
                assert_eq!(m[15][0], 15);
            }
            other => panic!("unexpected {other:?}"),
        }
        match take(&o) {
            Some(Taken::Messages(m)) => assert_eq!(m.len(), 4),
            other => panic!("unexpected {other:?}"),
        }
        assert!(take(&o).is_none());
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn overflow_closes_with_slow_and_drops_queue() {
        let o = Outbound::new(10);
        assert!(o.push(Bytes::from_static(b"12345")));
        assert!(o.push(Bytes::from_static(b"12345")));
        assert!(!o.push(Bytes::from_static(b"1")));
        assert!(o.is_closed());
        match take(&o) {
            Some(Taken::Close(d)) => assert_eq!(d.code, 3008),
            other => panic!("unexpected {other:?}"),
        }
        assert!(take(&o).is_none());
        assert!(!o.push(Bytes::from_static(b"x")));
    }

    #[test]
    fn close_flushes_queue_first_and_first_close_wins() {
        let o = Outbound::new(100);
        o.push(Bytes::from_static(b"a"));
        assert!(o.close(Disconnect::new(3001, "shutdown")));
        assert!(!o.close(Disconnect::new(3501, "bad request")));
        assert!(matches!(take(&o), Some(Taken::Messages(m)) if m.len() == 1));
        assert!(matches!(take(&o), Some(Taken::Close(d)) if d.code == 3001));
    }

    #[test]
    fn replies_do_not_count_toward_the_slow_bound() {
        let o = Outbound::new(10);
        // A reply much bigger than the queue bound is queued, not a 3008.
        assert!(o.push_reply(Bytes::from(vec![b'r'; 100])));
        assert!(!o.is_closed());
        // Pushes are still bounded on their own.
        assert!(o.push(Bytes::from_static(b"12345")));
        assert_eq!((o.queued_bytes(), o.queued_reply_bytes()), (5, 100));
        match take(&o) {
            Some(Taken::Messages(m)) => {
                assert_eq!(m.len(), 2);
                assert_eq!(m[0].len(), 100);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!((o.queued_bytes(), o.queued_reply_bytes()), (0, 0));
        assert!(o.push(Bytes::from_static(b"1234567890")));
        assert!(!o.push(Bytes::from_static(b"1")));
        assert!(o.is_closed());
        assert!(!o.push_reply(Bytes::from_static(b"late")));
    }

    #[tokio::test]
    async fn reply_room_waits_for_the_writer() {
        let o = std::sync::Arc::new(Outbound::new(10));
        o.push_reply(Bytes::from(vec![0u8; 64]));
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.reply_room(64).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(matches!(take(&o), Some(Taken::Messages(_))));
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .is_ok()
        );
        // Below the limit it returns at once.
        o.push_reply(Bytes::from(vec![0u8; 10]));
        o.reply_room(64).await;
    }

    /// A transport that takes up to `room` bytes per call, recording what it wrote.
    struct FakeSocket {
        room: Mutex<usize>,
        wire: Mutex<Vec<u8>>,
    }

    impl DirectWrite for FakeSocket {
        fn try_write(&self, message: &Bytes) -> Direct {
            let mut room = sync::lock(&self.room);
            let n = message.len().min(*room);
            *room -= n;
            sync::lock(&self.wire).extend_from_slice(&message[..n]);
            match n {
                0 => Direct::NotNow,
                n if n == message.len() => Direct::Written,
                n => Direct::Partial(message.slice(n..)),
            }
        }
    }

    fn direct(room: usize) -> (Outbound, Arc<FakeSocket>) {
        let o = Outbound::new(100);
        let sock = Arc::new(FakeSocket {
            room: Mutex::new(room),
            wire: Mutex::new(Vec::new()),
        });
        o.set_direct(sock.clone());
        (o, sock)
    }

    #[test]
    fn direct_writes_skip_the_queue_when_nothing_is_ahead() {
        let (o, sock) = direct(1000);
        assert!(o.push(Bytes::from_static(b"one")));
        assert!(o.push_reply(Bytes::from_static(b"two")));
        assert_eq!(&sync::lock(&sock.wire)[..], b"onetwo");
        assert_eq!((o.queued_bytes(), o.queued_reply_bytes()), (0, 0));
        assert!(take(&o).is_none());
    }

    #[test]
    fn a_partial_write_queues_its_tail_first_and_later_messages_wait_behind_it() {
        let (o, sock) = direct(2);
        assert!(o.push(Bytes::from_static(b"abcd")));
        assert!(o.push(Bytes::from_static(b"ef")));
        assert_eq!(&sync::lock(&sock.wire)[..], b"ab");
        assert_eq!(o.queued_bytes(), 4);
        // The writer finishes the frame as is, then the rest as messages.
        assert!(matches!(take(&o), Some(Taken::Raw(b)) if &b[..] == b"cd"));
        assert!(
            matches!(take(&o), Some(Taken::Messages(m)) if m == vec![Bytes::from_static(b"ef")])
        );
        // Still the writer's turn until it comes back to an empty queue: no overtaking.
        *sync::lock(&sock.room) = 100;
        assert!(o.push(Bytes::from_static(b"gh")));
        assert_eq!(&sync::lock(&sock.wire)[..], b"ab");
        assert!(matches!(take(&o), Some(Taken::Messages(m)) if m.len() == 1));
        assert!(take(&o).is_none());
        // Writer idle and queue empty: direct again.
        assert!(o.push(Bytes::from_static(b"ij")));
        assert_eq!(&sync::lock(&sock.wire)[..], b"abij");
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn only_quiet_connections_write_direct() {
        let o = Outbound::for_client(100, std::time::Duration::from_secs(3600), Protocol::Json);
        let sock = Arc::new(FakeSocket {
            room: Mutex::new(1000),
            wire: Mutex::new(Vec::new()),
        });
        o.set_direct(sock.clone());
        assert!(o.push(Bytes::from_static(b"first")));
        assert!(o.push(Bytes::from_static(b"second")));
        // The first went out at once; the second, right behind it, waits for the writer,
        // which packs it with whatever else arrives.
        assert_eq!(&sync::lock(&sock.wire)[..], b"first");
        assert!(matches!(take(&o), Some(Taken::Messages(m)) if m.len() == 1));
        assert!(take(&o).is_none());
        assert!(o.push(Bytes::from_static(b"third")));
        assert_eq!(o.queued_bytes(), 5);
    }

    #[test]
    fn fan_out_is_scheduled_once_and_a_pass_writes_what_piled_up_in_one_frame() {
        let (o, sock) = direct(1000);
        let o = Arc::new(o);
        assert_eq!(
            o.push_fanout(Bytes::from_static(b"{\"a\":1}")),
            Pushed::Schedule
        );
        assert_eq!(
            o.push_fanout(Bytes::from_static(b"{\"b\":2}")),
            Pushed::Queued
        );
        // Nothing written yet, the writer was not woken: the pass does it.
        assert!(sync::lock(&sock.wire).is_empty());
        let mut round = Round::default();
        round.scheduled.push(o.clone());
        round.flush(64, 1 << 16);
        assert_eq!(&sync::lock(&sock.wire)[..], b"{\"a\":1}\n{\"b\":2}");
        assert_eq!(o.queued_bytes(), 0);
        assert!(take(&o).is_none());
        // The next fan-out schedules again.
        assert_eq!(o.push_fanout(Bytes::from_static(b"{}")), Pushed::Schedule);
    }

    #[test]
    fn a_pass_leaves_to_the_writer_what_the_socket_does_not_take() {
        let (o, sock) = direct(4);
        assert_eq!(
            o.push_fanout(Bytes::from_static(b"abcdef")),
            Pushed::Schedule
        );
        o.flush_scheduled(64, 1 << 16);
        assert_eq!(&sync::lock(&sock.wire)[..], b"abcd");
        assert!(matches!(take(&o), Some(Taken::Raw(b)) if &b[..] == b"ef"));
        // While the writer holds a batch, fan-out waits in the queue for it.
        assert_eq!(o.push_fanout(Bytes::from_static(b"gh")), Pushed::Queued);
        assert!(matches!(take(&o), Some(Taken::Messages(m)) if m.len() == 1));
        assert!(take(&o).is_none());
        // Socket full: the pass gives the frame back to the queue, in order.
        assert_eq!(o.push_fanout(Bytes::from_static(b"ij")), Pushed::Schedule);
        o.flush_scheduled(64, 1 << 16);
        assert!(matches!(take(&o), Some(Taken::Messages(m)) if &m[0][..] == b"ij"));
    }

    #[test]
    fn a_full_socket_queues_and_the_slow_bound_still_applies() {
        let (o, sock) = direct(0);
        for _ in 0..10 {
            assert!(o.push(Bytes::from(vec![b'x'; 10])));
        }
        assert!(sync::lock(&sock.wire).is_empty());
        assert!(!o.push(Bytes::from_static(b"y")));
        assert!(matches!(take(&o), Some(Taken::Close(d)) if d.code == 3008));
    }

    #[test]
    fn a_slow_client_keeps_the_tail_on_the_wire_and_then_gets_3008() {
        let (o, sock) = direct(3);
        assert!(o.push(Bytes::from(vec![b'a'; 10])));
        assert_eq!(sync::lock(&sock.wire).len(), 3);
        for _ in 0..9 {
            assert!(o.push(Bytes::from(vec![b'b'; 10])));
        }
        // 7 (tail) + 90 queued; the next push is over the bound of 100.
        assert!(!o.push(Bytes::from(vec![b'c'; 10])));
        assert!(matches!(take(&o), Some(Taken::Raw(b)) if b.len() == 7));
        assert!(matches!(take(&o), Some(Taken::Close(d)) if d.code == 3008));
        assert_eq!((o.queued_bytes(), o.queued_reply_bytes()), (0, 0));
    }

    #[test]
    fn raw_frames_queue_in_order_and_closing_hands_back_the_unfinished_tail() {
        let (o, sock) = direct(3);
        assert!(o.push(Bytes::from_static(b"abcdef")));
        assert!(o.push_raw(Bytes::from_static(b"PONG")));
        assert_eq!(o.queued_reply_bytes(), 4);
        assert!(o.close(Disconnect::new(3000, "connection closed")));
        // A direct write can no longer happen after close.
        *sync::lock(&sock.room) = 100;
        assert!(!o.push(Bytes::from_static(b"late")));
        assert_eq!(
            o.take_raw_front(),
            vec![Bytes::from_static(b"def"), Bytes::from_static(b"PONG")]
        );
        assert_eq!((o.queued_bytes(), o.queued_reply_bytes()), (0, 0));
        assert_eq!(&sync::lock(&sock.wire)[..], b"abc");
    }

    #[tokio::test]
    async fn closed_resolves_after_close() {
        let o = std::sync::Arc::new(Outbound::new(100));
        let o2 = o.clone();
        let h = tokio::spawn(async move { o2.closed().await });
        tokio::task::yield_now().await;
        o.close(Disconnect::new(3001, "shutdown"));
        assert!(h.await.is_ok());
    }
}
