//! The per-connection outbound queue, bounded in bytes.
//!
//! Everything a connection sends — replies, pushes, pings — is an encoded message (`Bytes`)
//! enqueued here without awaiting; the connection's single writer drains it and packs several
//! messages into one frame. Fan-out only ever calls [`Outbound::push`], which takes a short
//! uncontended lock and never blocks on the client. Over `client.queue_max_size` bytes the queue
//! is dropped and the connection closed with 3008 "slow", so a slow reader costs nobody else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use chorus_protocol::codes::DISCONNECT_SLOW;
use tokio::sync::Notify;

use crate::disconnect::Disconnect;
use crate::metrics;

/// What the writer gets from the queue.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A batch of messages, in order, to pack into one frame.
    Messages(Vec<Bytes>),
    /// Close with this disconnect (the queue was flushed before, except for "slow").
    Close(Disconnect),
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    close: Option<Disconnect>,
    close_taken: bool,
}

#[derive(Debug)]
pub struct Outbound {
    state: Mutex<State>,
    notify: Notify,
    closed_notify: Notify,
    closed: AtomicBool,
    max_bytes: usize,
}

impl Outbound {
    pub fn new(max_bytes: usize) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed_notify: Notify::new(),
            closed: AtomicBool::new(false),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a few field updates), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues one encoded message. Returns false if the connection is closing (the message
    /// is dropped). Over the byte bound the connection is closed with 3008.
    pub fn push(&self, message: Bytes) -> bool {
        let mut st = self.lock();
        if st.close.is_some() {
            return false;
        }
        if st.bytes + message.len() > self.max_bytes {
            st.queue.clear();
            st.bytes = 0;
            st.close = Some(DISCONNECT_SLOW.into());
            drop(st);
            metrics::slow_client();
            self.mark_closed();
            return false;
        }
        st.bytes += message.len();
        st.queue.push_back(message);
        drop(st);
        self.notify.notify_one();
        true
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

    /// Takes what the writer should do next without waiting, if anything.
    pub(crate) fn try_take(&self, max_messages: usize, max_bytes: usize) -> Option<Taken> {
        let mut st = self.lock();
        if !st.queue.is_empty() {
            let mut batch = Vec::with_capacity(st.queue.len().min(max_messages));
            let mut size = 0usize;
            while let Some(front) = st.queue.front() {
                if !batch.is_empty()
                    && (batch.len() >= max_messages || size + front.len() > max_bytes)
                {
                    break;
                }
                size += front.len();
                if let Some(m) = st.queue.pop_front() {
                    batch.push(m);
                }
            }
            st.bytes -= size;
            return Some(Taken::Messages(batch));
        }
        match st.close.clone() {
            Some(close) if !st.close_taken => {
                st.close_taken = true;
                Some(Taken::Close(close))
            }
            _ => None,
        }
    }

    /// Waits until something may be available (a permit is stored if a push raced ahead).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Bytes currently queued.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
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
