//! The engine under abuse (issue 6): non-JSON and over-deep payloads (107), replies bigger than
//! the push queue bound (delivered, or 106 / `recovered: false` past `client.reply_max_size`),
//! presence of a crowded channel (106), the command rate limit (111, then 3013) and the
//! join/leave gate. Each asserts exact codes and that bystanders keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::{self, PresenceRequest};
use chorus_core::options::CommandRateLimit;
use chorus_protocol::{encode_command, Command, Protocol, PublishRequest, Reply};
use common::{node, node_with, options, pubs, TestClient};

fn errors(replies: &[Reply]) -> Vec<(u32, u32)> {
    replies
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| (r.id, e.code)))
        .collect()
}

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

async fn subscribed(node: &chorus_core::Node, user: &str, channel: &str) -> TestClient {
    let mut c = TestClient::connect(node, user).await;
    c.send(&format!(
        r#"{{"id":2,"subscribe":{{"channel":"{channel}"}}}}"#
    ))
    .await;
    let replies = c.drain().await;
    assert!(replies.iter().any(|r| r.subscribe.is_some()), "{replies:?}");
    c
}

/// Unsubscribes and subscribes again recovering from `offset`; returns the subscribe result.
async fn resubscribe_recovering(
    c: &mut TestClient,
    channel: &str,
    offset: u64,
) -> chorus_protocol::SubscribeResult {
    c.send(&format!(
        r#"{{"id":90,"unsubscribe":{{"channel":"{channel}"}}}}"#
    ))
    .await;
    c.send(&format!(
        r#"{{"id":91,"subscribe":{{"channel":"{channel}","recover":true,"offset":{offset},"epoch":""}}}}"#
    ))
    .await;
    let replies = c.drain().await;
    replies
        .iter()
        .find_map(|r| r.subscribe.clone())
        .expect("subscribe reply")
}

#[tokio::test]
async fn protobuf_client_cannot_poison_a_json_channel() {
    let node = node();
    let mut json = subscribed(&node, "j", "chat:poison").await;
    let mut pb = TestClient::new(&node, Protocol::Protobuf);
    let subscribe = Command {
        id: 4,
        subscribe: Some(chorus_protocol::SubscribeRequest {
            channel: "chat:poison".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut frame = Vec::new();
    for cmd in [
        Command {
            id: 1,
            connect: Some(chorus_protocol::ConnectRequest {
                token: "user:p".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        subscribe,
        Command {
            id: 2,
            publish: Some(PublishRequest {
                channel: "chat:poison".into(),
                data: Bytes::from_static(b"\xff\x00not json"),
            }),
            ..Default::default()
        },
        Command {
            id: 3,
            publish: Some(PublishRequest {
                channel: "chat:poison".into(),
                data: Bytes::from_static(b"{\"fine\":true}"),
            }),
            ..Default::default()
        },
    ] {
        frame.extend_from_slice(&encode_command(Protocol::Protobuf, &cmd).unwrap());
    }
    pb.client.handle_frame(&frame).await;
    let replies = pb.drain().await;
    assert_eq!(errors(&replies), vec![(2, 107)]);
    assert!(replies.iter().any(|r| r.id == 3 && r.publish.is_some()));
    // The JSON subscriber got the JSON publication only, and so does a JSON history reader.
    assert_eq!(
        pubs(&json.drain().await),
        vec![(1, "{\"fine\":true}".to_string())]
    );
    json.send(r#"{"id":5,"history":{"channel":"chat:poison","limit":10}}"#)
        .await;
    let history = json.next().await.unwrap().history.unwrap();
    assert_eq!(history.publications.len(), 1);
    assert_eq!(json.closed, None);
}

#[tokio::test]
async fn json_nesting_is_bounded_everywhere() {
    let node = node();
    let mut c = subscribed(&node, "d", "chat:deep").await;
    let ok = nested(64);
    let deep = nested(65);
    let million = nested(1_000_000);
    c.send(&format!(
        "{{\"id\":10,\"publish\":{{\"channel\":\"chat:deep\",\"data\":{ok}}}}}\n\
         {{\"id\":11,\"publish\":{{\"channel\":\"chat:deep\",\"data\":{deep}}}}}\n\
         {{\"id\":12,\"publish\":{{\"channel\":\"chat:deep\",\"data\":{million}}}}}\n\
         {{\"id\":13,\"subscribe\":{{\"channel\":\"chat:deep2\",\"data\":{deep}}}}}"
    ))
    .await;
    let replies = c.drain().await;
    assert_eq!(errors(&replies), vec![(11, 107), (12, 107), (13, 107)]);
    assert_eq!(pubs(&replies).len(), 1, "only the 64-deep publication");
    // The server API is held to the same bound.
    let api = node
        .api()
        .publish(api::PublishRequest::new(
            "chat:deep",
            Bytes::from(deep.clone()),
        ))
        .await;
    assert_eq!(api.map_err(|e| e.code), Err(107));
    // Connect data: a failed connect answers 107 and closes.
    let mut late = TestClient::new(&node, Protocol::Json);
    late.send(&format!(
        r#"{{"id":1,"connect":{{"token":"user:x","data":{deep}}}}}"#
    ))
    .await;
    assert_eq!(errors(&late.drain().await), vec![(1, 107)]);
    assert_eq!(late.close_code().await, Some(3000));
}

/// 20 publications of ~60 KB, queue bound 64 KiB: the history reply (~600 KB) is delivered,
/// not a 3008; the connection stays and keeps receiving live publications.
#[tokio::test]
async fn a_reply_the_client_asked_for_is_not_a_slow_client() {
    let mut o = options();
    o.client.queue_max_size = 64 << 10;
    o.client.reply_max_size = 4 << 20;
    let node = node_with(o);
    let mut c = subscribed(&node, "h", "chat:big").await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(60_000));
    for _ in 0..20 {
        node.api()
            .publish(api::PublishRequest::new(
                "chat:big",
                Bytes::from(big.clone()),
            ))
            .await
            .unwrap();
        // Drain as a reading client would, so live pushes never pile up.
        c.drain().await;
    }
    c.send(r#"{"id":3,"history":{"channel":"chat:big","limit":10}}"#)
        .await;
    let reply = c.next().await.unwrap();
    assert_eq!(reply.id, 3);
    assert_eq!(reply.history.unwrap().publications.len(), 10);
    // Recovery of everything kept (history_size 10 keeps offsets 11..=20): ~600 KB in one
    // reply, recovered.
    let sub = resubscribe_recovering(&mut c, "chat:big", 10).await;
    assert!(sub.recovered);
    assert_eq!(sub.publications.len(), 10);
    assert_eq!(c.closed, None);
}

#[tokio::test]
async fn replies_past_reply_max_size_answer_106_or_not_recovered() {
    let mut o = options();
    o.client.queue_max_size = 64 << 10;
    o.client.reply_max_size = 256 << 10;
    let node = node_with(o);
    let mut c = subscribed(&node, "h", "chat:huge").await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(60_000));
    for _ in 0..10 {
        node.api()
            .publish(api::PublishRequest::new(
                "chat:huge",
                Bytes::from(big.clone()),
            ))
            .await
            .unwrap();
        c.drain().await;
    }
    // ~600 KB of history > 256 KiB: error 106, no disconnect.
    c.send(r#"{"id":3,"history":{"channel":"chat:huge","limit":10}}"#)
        .await;
    assert_eq!(errors(&c.drain().await), vec![(3, 106)]);
    // 3 publications (~180 KB) fit.
    c.send(r#"{"id":4,"history":{"channel":"chat:huge","limit":3}}"#)
        .await;
    let reply = c.next().await.unwrap();
    assert_eq!(reply.history.unwrap().publications.len(), 3);
    // A recovery over the bound answers recovered:false at the top (the client reloads).
    let sub = resubscribe_recovering(&mut c, "chat:huge", 0).await;
    assert!(sub.was_recovering);
    assert!(!sub.recovered);
    assert!(sub.publications.is_empty());
    assert_eq!(sub.offset, 10);
    // Still subscribed and live.
    node.api()
        .publish(api::PublishRequest::new(
            "chat:huge",
            Bytes::from_static(b"{\"n\":11}"),
        ))
        .await
        .unwrap();
    assert_eq!(pubs(&c.drain().await), vec![(11, "{\"n\":11}".to_string())]);
    assert_eq!(c.closed, None);
}

#[tokio::test]
async fn presence_of_a_crowded_channel_answers_106() {
    let mut o = options();
    o.channel.presence_max_clients = 3;
    let node = node_with(o);
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(subscribed(&node, &format!("u{i}"), "chat:crowd").await);
    }
    let asker = &mut members[0];
    asker
        .send(r#"{"id":7,"presence":{"channel":"chat:crowd"}}"#)
        .await;
    asker
        .send(r#"{"id":8,"presence_stats":{"channel":"chat:crowd"}}"#)
        .await;
    let replies = asker.drain().await;
    assert_eq!(errors(&replies), vec![(7, 106)]);
    let stats = replies
        .iter()
        .find_map(|r| r.presence_stats.clone())
        .unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (4, 4));
    assert_eq!(asker.closed, None);
    assert_eq!(
        node.api()
            .presence(PresenceRequest {
                channel: "chat:crowd".into()
            })
            .await
            .map_err(|e| e.code)
            .err(),
        Some(106)
    );
}

#[tokio::test]
async fn command_rate_limit_answers_111_then_3013() {
    let mut o = options();
    o.client.command_rate_limit = CommandRateLimit {
        rate: 10,
        burst: 5,
        disconnect_after: 3,
    };
    let node = node_with(o);
    let mut c = TestClient::connect(&node, "r").await; // connect took one token
    let frame: Vec<String> = (10..20)
        .map(|id| format!(r#"{{"id":{id},"subscribe":{{"channel":"news:r{id}"}}}}"#))
        .collect();
    c.send(&frame.join("\n")).await;
    let replies = c.drain().await;
    let ok: Vec<u32> = replies
        .iter()
        .filter(|r| r.subscribe.is_some())
        .map(|r| r.id)
        .collect();
    assert_eq!(ok, vec![10, 11, 12, 13]);
    assert_eq!(errors(&replies), vec![(14, 111), (15, 111)]);
    assert_eq!(c.close_code().await, Some(3013));
}

/// One connection subscribing and unsubscribing 646 times in one frame, ten frames: members
/// of the room see at most `join_leave_max_rate` join/leave pushes, not ~13k.
#[tokio::test]
async fn join_leave_flood_is_bounded_per_channel() {
    let mut o = options();
    o.channel.join_leave_max_rate = 20;
    let node = node_with(o);
    let mut member = subscribed(&node, "m", "chat:room").await;
    let attacker = TestClient::connect(&node, "a").await;
    let started = std::time::Instant::now();
    let mut id = 10;
    for _ in 0..10 {
        let mut lines = Vec::new();
        for _ in 0..646 {
            lines.push(format!(
                r#"{{"id":{id},"subscribe":{{"channel":"chat:room"}}}}"#
            ));
            lines.push(format!(
                r#"{{"id":{},"unsubscribe":{{"channel":"chat:room"}}}}"#,
                id + 1
            ));
            id += 2;
        }
        attacker.send(&lines.join("\n")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = member
        .drain()
        .await
        .iter()
        .filter(|r| {
            r.push
                .as_ref()
                .is_some_and(|p| p.join.is_some() || p.leave.is_some())
        })
        .count();
    // The burst of 20 (the member's own join included), then 20 per second while pairs keep
    // cancelling out in the backlog: ~13k events become a few dozen.
    let bound = 20.0 * (1.0 + started.elapsed().as_secs_f64());
    assert!(
        (events as f64) <= bound,
        "{events} join/leave pushes > {bound}"
    );
    assert!(events >= 20, "{events} join/leave pushes");
    // Presence is exact regardless of the gate.
    let p = node
        .api()
        .presence(PresenceRequest {
            channel: "chat:room".into(),
        })
        .await
        .unwrap();
    assert_eq!(p.presence.len(), 1);
}
