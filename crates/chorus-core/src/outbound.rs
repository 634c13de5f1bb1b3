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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use chorus_protocol::codes::DISCONNECT_SLOW;
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
}

impl std::fmt::Debug for dyn DirectWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectWrite")
    }
}

impl Outbound {
    pub fn new(max_bytes: usize) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed_notify: Notify::new(),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            max_bytes,
            direct: OnceLock::new(),
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
                drop(st);
                if reply {
                    self.drained.notify_waiters();
                }
                return Some(Taken::Raw(raw));
            }
            let mut batch = Vec::with_capacity(st.queue.len().min(max_messages));
            let (mut size, mut push_size, mut reply_size) = (0usize, 0usize, 0usize);
            while let Some(front) = st.queue.front() {
                let len = front.message.len();
                if matches!(front.kind, Kind::Raw { .. })
                    || (!batch.is_empty()
                        && (batch.len() >= max_messages || size + len > max_bytes))
                {
                    break;
                }
                size += len;
                if let Some(e) = st.queue.pop_front() {
                    if e.kind.is_reply() {
                        reply_size += len;
                    } else {
                        push_size += len;
                    }
                    batch.push(e.message);
                }
            }
            st.bytes -= push_size;
            st.reply_bytes -= reply_size;
            st.writing = true;
            drop(st);
            if reply_size > 0 {
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
