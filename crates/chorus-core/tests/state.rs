//! Bounded node state with the memory broker: a stream evicted by the node-wide bounds is
//! never presented as a continuation (subscribers recover with `recovered: false` or are told
//! their position is lost), and subscribe/unsubscribe churn leaves no per-channel state in
//! the hub, the presence store or the broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::PublishRequest;
use chorus_core::broker::conformance::wait_for;
use chorus_core::broker::memory::{MemoryBroker, MemoryBrokerOptions, MemoryBrokerStats};
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::Node;
use chorus_protocol::SubscribeResult;
use common::{node_over, options, pubs, TestClient};

fn tiny(max_streams: usize) -> Arc<MemoryBroker> {
    MemoryBroker::with_options(MemoryBrokerOptions {
        max_streams,
        ..MemoryBrokerOptions::default()
    })
}

async fn publish(node: &Node, channel: &str, n: u64) -> u64 {
    node.api()
        .publish(PublishRequest::new(
            channel,
            Bytes::from(format!("{{\"n\":{n}}}")),
        ))
        .await
        .unwrap()
        .position
        .unwrap()
        .offset
}

async fn subscribe(c: &mut TestClient, json: &str) -> SubscribeResult {
    c.send(json).await;
    loop {
        let r = c.next().await.expect("reply");
        if let Some(s) = r.subscribe {
            return s;
        }
        assert!(r.error.is_none(), "{r:?}");
    }
}

#[tokio::test]
async fn recovery_after_eviction_is_never_a_continuation() {
    let broker = tiny(2);
    let node = node_over(options(), broker.clone(), MemoryPresence::new());

    // A client positioned at offset 3, and one at offset 0 (subscribed before any publish).
    let mut a = TestClient::connect(&node, "a").await;
    let mut z = TestClient::connect(&node, "z").await;
    let at_zero = subscribe(&mut z, r#"{"id":2,"subscribe":{"channel":"chat:zero"}}"#).await;
    assert_eq!((at_zero.offset, at_zero.recoverable), (0, true));
    let sub = subscribe(&mut a, r#"{"id":2,"subscribe":{"channel":"chat:ev"}}"#).await;
    for n in 1..=3 {
        assert_eq!(publish(&node, "chat:ev", n).await, n);
    }
    assert_eq!(pubs(&a.drain().await).len(), 3);
    a.client.cleanup().await;
    z.client.cleanup().await;

    // Two other channels push both out (max_streams 2, least recently used first).
    publish(&node, "chat:f1", 1).await;
    publish(&node, "chat:f2", 1).await;
    assert_eq!(broker.stats().streams, 2);
    // The evicted channels live on in new epochs, with offsets from 1 again.
    assert_eq!(publish(&node, "chat:ev", 4).await, 1);
    assert_eq!(publish(&node, "chat:zero", 1).await, 1);
    assert_eq!(publish(&node, "chat:zero", 2).await, 2);

    let mut b = TestClient::connect(&node, "a").await;
    let r = subscribe(
        &mut b,
        &format!(
            r#"{{"id":2,"subscribe":{{"channel":"chat:ev","recover":true,"offset":3,"epoch":"{}"}}}}"#,
            sub.epoch
        ),
    )
    .await;
    assert!(r.was_recovering && !r.recovered, "{r:?}");
    assert_ne!(r.epoch, sub.epoch);
    assert_eq!(r.offset, 1, "the new stream's top");
    assert!(r.publications.is_empty());

    // Offset 0 in the old epoch: the new epoch's publications 1 and 2 are not handed out as
    // what the client missed.
    let mut y = TestClient::connect(&node, "z").await;
    let r = subscribe(
        &mut y,
        &format!(
            r#"{{"id":2,"subscribe":{{"channel":"chat:zero","recover":true,"offset":0,"epoch":"{}"}}}}"#,
            at_zero.epoch
        ),
    )
    .await;
    assert!(r.was_recovering && !r.recovered, "{r:?}");
    assert_ne!(r.epoch, at_zero.epoch);
    assert_eq!(r.offset, 2);
    assert!(r.publications.is_empty());
}

#[tokio::test]
async fn a_live_subscriber_of_an_evicted_stream_is_told_its_position_is_lost() {
    let broker = tiny(2);
    let node = node_over(options(), broker, MemoryPresence::new());
    let mut a = TestClient::connect(&node, "a").await;
    let sub = subscribe(&mut a, r#"{"id":2,"subscribe":{"channel":"chat:live"}}"#).await;
    publish(&node, "chat:live", 1).await;
    publish(&node, "chat:live", 2).await;
    publish(&node, "chat:g1", 1).await;
    publish(&node, "chat:g2", 1).await;
    // The next publication starts a new epoch at offset 1: the client gets unsubscribe 2500
    // instead of it.
    assert_eq!(publish(&node, "chat:live", 3).await, 1);
    let replies = a.drain().await;
    assert_eq!(
        pubs(&replies).iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let unsub = replies
        .iter()
        .find_map(|r| r.push.as_ref()?.unsubscribe.clone())
        .expect("unsubscribe push");
    assert_eq!(unsub.code, 2500);
    // Resubscribing with recovery says what happened.
    let r = subscribe(
        &mut a,
        &format!(
            r#"{{"id":3,"subscribe":{{"channel":"chat:live","recover":true,"offset":2,"epoch":"{}"}}}}"#,
            sub.epoch
        ),
    )
    .await;
    assert!(!r.recovered);
    assert_eq!(r.offset, 1);
    assert_ne!(r.epoch, sub.epoch);
}

#[tokio::test]
async fn subscribe_churn_leaves_no_per_channel_state() {
    let broker = MemoryBroker::with_options(MemoryBrokerOptions {
        idle_meta_ttl: Duration::from_millis(300),
        ..MemoryBrokerOptions::default()
    });
    let presence = MemoryPresence::new();
    let node = node_over(options(), broker.clone(), presence.clone());
    // 20 connections × 25 channels each: recoverable subscriptions (a stream read each), with
    // presence and join/leave; half unsubscribe, half disconnect.
    for c in 0..20 {
        let mut client = TestClient::connect(&node, &format!("u{c}")).await;
        for i in 0..25 {
            let ch = format!("chat:churn{c}x{i}");
            let r = subscribe(
                &mut client,
                &format!(r#"{{"id":{},"subscribe":{{"channel":"{ch}"}}}}"#, i + 2),
            )
            .await;
            assert!(r.recoverable);
            if c % 2 == 0 {
                client
                    .send(&format!(
                        r#"{{"id":{},"unsubscribe":{{"channel":"{ch}"}}}}"#,
                        i + 100
                    ))
                    .await;
            }
        }
        // A history call of a channel nobody subscribes to.
        client
            .send(&format!(
                r#"{{"id":500,"history":{{"channel":"chat:churn{c}x0","limit":0}}}}"#
            ))
            .await;
        client.client.cleanup().await;
    }
    let hub_clean = wait_for(Duration::from_secs(5), || {
        node.hub().num_channels() == 0 && node.hub().num_broker_states() == 0
    })
    .await;
    assert!(
        hub_clean,
        "hub keeps {} channels, {} broker states",
        node.hub().num_channels(),
        node.hub().num_broker_states()
    );
    assert_eq!(presence.num_channels(), 0);
    assert_eq!(node.num_clients(), 0);
    // The read-created meta (500 streams, nothing published) waits out its idle grace.
    assert_eq!(broker.stats().streams, 500);
    tokio::time::sleep(Duration::from_millis(400)).await;
    broker.sweep();
    assert_eq!(broker.stats(), MemoryBrokerStats::default());
}
