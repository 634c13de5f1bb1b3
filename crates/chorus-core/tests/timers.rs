//! Connection timers with paused time: stale connections (3502), server pings and the pong
//! deadline (3012), connection expiry without refresh (3005).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_core::WriteEvent;
use chorus_protocol::Protocol;
use common::{node, TestClient};

async fn next_event(c: &TestClient, within: Duration) -> Option<WriteEvent> {
    tokio::time::timeout(within, c.client.next_write())
        .await
        .ok()
}

#[tokio::test(start_paused = true)]
async fn connection_without_connect_is_closed_stale_after_10s() {
    let node = node();
    let c = TestClient::new(&node, Protocol::Json);
    assert_eq!(next_event(&c, Duration::from_secs(9)).await, None);
    match next_event(&c, Duration::from_secs(2)).await {
        Some(WriteEvent::Close(d)) => assert_eq!((d.code, d.reason.as_str()), (3502, "stale")),
        other => panic!("expected stale close, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn pings_every_interval_and_no_pong_closes_with_3012() {
    let node = node();
    let mut c = TestClient::connect(&node, "u").await;
    // First ping within [interval/2, interval] = [12.5 s, 25 s].
    match next_event(&c, Duration::from_secs(26)).await {
        Some(WriteEvent::Frame(f)) => assert_eq!(&f[..], b"{}"),
        other => panic!("expected ping, got {other:?}"),
    }
    // Answer it: the connection stays; the next ping comes 25 s later.
    c.send("{}").await;
    match next_event(&c, Duration::from_secs(26)).await {
        Some(WriteEvent::Frame(f)) => assert_eq!(&f[..], b"{}"),
        other => panic!("expected second ping, got {other:?}"),
    }
    // Do not answer: closed 8 s (pong_timeout) after the ping.
    assert_eq!(c.close_code().await, None, "not before the pong timeout");
    match next_event(&c, Duration::from_secs(9)).await {
        Some(WriteEvent::Close(d)) => assert_eq!((d.code, d.reason.as_str()), (3012, "no pong")),
        other => panic!("expected no-pong close, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn expired_connection_is_closed_3005_after_the_grace_delay() {
    let node = node();
    // The token expires 1 s after connect; with no refresh the connection is closed once
    // `client.expired_close_delay` (25 s) has passed on top.
    let exp = chorus_core::clock::unix_now() + 1;
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(&format!(
        r#"{{"id":1,"connect":{{"token":"user:u;exp={exp}"}}}}"#
    ))
    .await;
    let r = c.next().await.unwrap().connect.unwrap();
    assert!(r.expires);
    let mut closed = None;
    for _ in 0..4 {
        let ev = next_event(&c, Duration::from_secs(30)).await;
        match ev {
            Some(WriteEvent::Close(d)) => {
                closed = Some(d.code);
                break;
            }
            Some(WriteEvent::Frame(_)) => c.send("{}").await,
            Some(WriteEvent::Raw(_)) => panic!("no transport frames without a transport"),
            None => {}
        }
    }
    assert_eq!(closed, Some(3005));
}

/// Records what was written straight to the "socket".
#[derive(Default)]
struct Wire(std::sync::Mutex<Vec<Vec<u8>>>);

impl chorus_core::outbound::DirectWrite for Wire {
    fn try_write(&self, message: &bytes::Bytes) -> chorus_core::outbound::Direct {
        self.0.lock().unwrap().push(message.to_vec());
        chorus_core::outbound::Direct::Written
    }
}

/// Advances (paused) time in 50 ms steps until `n` writes reached the wire; fails after `within`.
async fn wait_for_writes(wire: &Wire, n: usize, within: Duration) {
    let start = tokio::time::Instant::now();
    while wire.0.lock().unwrap().len() < n {
        assert!(start.elapsed() <= within, "no write {n} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn pings_go_out_from_the_wheel_without_the_connection_writer_and_a_pong_keeps_it() {
    // The quiet-connection rule measures real time; this test's clock is paused.
    let mut options = common::options();
    options.client.direct_write_min_interval = chorus_core::duration::ConfigDuration::ZERO;
    let node = common::node_with(options);
    let c = TestClient::connect(&node, "u").await;
    let wire = std::sync::Arc::new(Wire::default());
    c.client.set_direct_writer(wire.clone());
    // The writer comes back for more after the connect reply (it holds no batch now)...
    assert_eq!(next_event(&c, Duration::ZERO).await, None);
    // ...and is not polled again: the node's timer wheel writes the ping directly, at a
    // random point of [12.5 s, 25 s] (plus at most one 250 ms wheel step).
    wait_for_writes(&wire, 1, Duration::from_millis(25_300)).await;
    assert_eq!(*wire.0.lock().unwrap(), vec![b"{}".to_vec()]);
    assert_eq!(next_event(&c, Duration::ZERO).await, None, "nothing queued");
    // The pong arrives at once: past the pong timeout (8 s) the connection is still open,
    // and the next ping follows 25 s after the first.
    c.send("{}").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!c.client.is_closed());
    assert_eq!(wire.0.lock().unwrap().len(), 1, "no second ping yet");
    wait_for_writes(&wire, 2, Duration::from_millis(15_300)).await;
    // No pong this time: closed with 3012 after the pong timeout, within one wheel step.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    assert!(!c.client.is_closed(), "not before the pong timeout");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(c.client.is_closed());
    match next_event(&c, Duration::ZERO).await {
        Some(WriteEvent::Close(d)) => assert_eq!(d.code, 3012),
        other => panic!("expected no-pong close, got {other:?}"),
    }
}
