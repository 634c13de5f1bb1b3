//! Unit tests of the outbound queue: batching, bounds, direct writes, flush passes.
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
    assert!(matches!(take(&o), Some(Taken::Messages(m)) if m == vec![Bytes::from_static(b"ef")]));
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
