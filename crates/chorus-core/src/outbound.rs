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
use std::task::{Context, Poll};

use bytes::Bytes;
use chorus_protocol::codes::DISCONNECT_SLOW;
use chorus_protocol::{join_frame, Protocol};
use futures_util::task::AtomicWaker;
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
    /// Boxed: set once per connection, at its end; inline it cost every idle connection 24 B
    /// (and the queue crossed an allocator size class).
    close: Option<Box<Disconnect>>,
    close_taken: bool,
    /// The writer holds a batch it has not finished writing: no direct write may overtake it.
    writing: bool,
    /// When something was last written directly or taken by the writer.
    last_write: Option<std::time::Instant>,
    /// Fan-out is queued for a flush pass (the writer was not told).
    scheduled: bool,
}

/// The writer's wake-up: a registered waker plus a kept wake-up for when it is not waiting.
/// No per-wait state: a `Notified` future (72 B) sat in every idle connection's task.
#[derive(Debug, Default)]
struct WriterWake {
    waker: AtomicWaker,
    pending: AtomicBool,
}

impl WriterWake {
    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.pending.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[derive(Debug)]
pub struct Outbound {
    state: Mutex<State>,
    /// Wakes the single writer ([`Outbound::poll_wait`]).
    writer: WriterWake,
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
            writer: WriterWake::default(),
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
        st.close = Some(Box::new(DISCONNECT_SLOW.into()));
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
        self.writer.wake();
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
                self.writer.wake();
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
                    self.writer.wake();
                    return;
                }
            }
        } else {
            let (batch, _) = Self::take_batch(&mut st, max_messages, max_bytes);
            if batch.is_empty() {
                drop(st);
                self.writer.wake();
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
            self.writer.wake();
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
        self.writer.wake();
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
        st.close = Some(Box::new(disconnect));
        drop(st);
        self.mark_closed();
        true
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.wake();
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
        // The writer goes idle: give the queue's slots back (an idle connection held 164 B
        // for the reply that was queued at subscribe). Flush passes keep theirs (QUEUE_KEEP):
        // they run per delivery, the writer only for backlogs and replies.
        if st.queue.capacity() > 0 {
            st.queue = VecDeque::new();
        }
        match st.close.as_deref().cloned() {
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

    /// Ready once something may be available (a wake-up is kept if a push raced ahead). For
    /// the connection's single writer.
    pub(crate) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.writer.poll(cx)
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
mod tests;
