//! Several nodes as one server, in process: two nodes share one in-memory broker (the same
//! wiring the Redis broker gives separate processes). Cross-node delivery, presence, `channels`,
//! `info` and server API operations on users connected to another node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::{
    ChannelInfo, ChannelsRequest, DisconnectRequest, DisconnectSpec, InfoRequest, PresenceRequest,
    PresenceStatsRequest, PublishRequest, RefreshRequest, SubscribeRequest, UnsubscribeRequest,
    UserStatusRequest,
};
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::control::NodeInfo;
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::presence::UserStatus;
use chorus_core::Node;
use common::{options, pubs, TestClient, TestTokens};

fn two_nodes() -> (Node, Node) {
    let broker = MemoryBroker::new();
    let make = |id: &str| {
        Node::new(
            id,
            options(),
            broker.clone(),
            MemoryPresence::new(),
            Arc::new(TestTokens),
        )
    };
    (make("node-a"), make("node-b"))
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The live nodes `node` knows (server API `info`).
async fn nodes(node: &Node) -> Vec<NodeInfo> {
    node.api().info(InfoRequest {}).await.unwrap().nodes
}

async fn see_each_other(a: &Node, b: &Node) {
    for _ in 0..500 {
        if nodes(a).await.len() == 2 && nodes(b).await.len() == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nodes never saw each other");
}

#[tokio::test]
async fn publication_on_one_node_reaches_subscribers_on_both_in_order() {
    let (a, b) = two_nodes();
    let mut ca = TestClient::connect(&a, "ua").await;
    let mut cb = TestClient::connect(&b, "ub").await;
    for c in [&ca, &cb] {
        c.send(r#"{"id":2,"subscribe":{"channel":"chat:x"}}"#).await;
    }
    ca.drain().await;
    cb.drain().await;
    for i in 1..=5 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.api()
            .publish(PublishRequest::new(
                "chat:x",
                Bytes::from(format!("{{\"i\":{i}}}")),
            ))
            .await
            .unwrap();
    }
    let expected: Vec<u64> = (1..=5).collect();
    for c in [&mut ca, &mut cb] {
        let got: Vec<u64> = pubs(&c.drain().await).iter().map(|p| p.0).collect();
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn presence_channels_and_info_cover_every_node() {
    let (a, b) = two_nodes();
    see_each_other(&a, &b).await;
    let ca = TestClient::connect(&a, "ua").await;
    let cb = TestClient::connect(&b, "ub").await;
    let cb2 = TestClient::connect(&b, "ub").await;
    for c in [&ca, &cb, &cb2] {
        c.send(r#"{"id":2,"subscribe":{"channel":"chat:p"}}"#).await;
    }
    until("subscriptions", || {
        a.hub().has_subscribers("chat:p") && b.hub().channel_counts().get("chat:p") == Some(&2)
    })
    .await;
    let presence = a
        .api()
        .presence(PresenceRequest {
            channel: "chat:p".into(),
        })
        .await
        .unwrap()
        .presence;
    let mut users: Vec<&str> = presence.values().map(|i| i.user.as_str()).collect();
    users.sort();
    assert_eq!(users, vec!["ua", "ub", "ub"]);
    let stats = b
        .api()
        .presence_stats(PresenceStatsRequest {
            channel: "chat:p".into(),
        })
        .await
        .unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (3, 2));
    let channels = a.api().channels(ChannelsRequest::default()).await.unwrap();
    assert_eq!(
        channels.channels.get("chat:p"),
        Some(&ChannelInfo { num_clients: 3 })
    );
    // Other nodes' counts come from their heartbeats (every 3 s).
    let mut total = 0;
    for _ in 0..500 {
        let info = nodes(&b).await;
        assert_eq!(info.len(), 2);
        total = info.iter().map(|n| n.num_clients).sum::<u32>();
        if total == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(total, 3);
}

/// `user_status` merges every node's view: connections add up, channels unite, request order
/// is kept, unknown users are offline; 107 for a bad request.
#[tokio::test]
async fn user_status_covers_every_node() {
    let (a, b) = two_nodes();
    see_each_other(&a, &b).await;
    let ca = TestClient::connect(&a, "ann").await;
    let cb = TestClient::connect(&b, "ann").await;
    let cc = TestClient::connect(&b, "bob").await;
    ca.send(r#"{"id":2,"subscribe":{"channel":"chat:one"}}"#)
        .await;
    cb.send(r#"{"id":2,"subscribe":{"channel":"chat:two"}}"#)
        .await;
    cc.send(r#"{"id":2,"subscribe":{"channel":"chat:one"}}"#)
        .await;
    until("subscriptions", || {
        a.hub().has_subscribers("chat:one") && b.hub().channel_counts().len() == 2
    })
    .await;
    let users = vec!["zed".to_string(), "ann".to_string(), "bob".to_string()];
    let got = a
        .api()
        .user_status(UserStatusRequest {
            users: users.clone(),
        })
        .await
        .unwrap()
        .statuses;
    let status = |user: &str, n: u32, channels: &[&str]| UserStatus {
        user: user.into(),
        online: n > 0,
        num_clients: n,
        channels: channels.iter().map(|c| c.to_string()).collect(),
    };
    assert_eq!(
        got,
        vec![
            status("zed", 0, &[]),
            status("ann", 2, &["chat:one", "chat:two"]),
            status("bob", 1, &["chat:one"]),
        ]
    );
    for bad in [vec![], vec![String::new()]] {
        let r = b.api().user_status(UserStatusRequest { users: bad }).await;
        assert_eq!(r.map_err(|e| e.code).err(), Some(107));
    }
}

#[tokio::test]
async fn server_api_user_operations_reach_other_nodes() {
    let (a, b) = two_nodes();
    see_each_other(&a, &b).await;
    let mut on_b = TestClient::connect(&b, "target").await;
    let mut other = TestClient::connect(&b, "bystander").await;
    a.api()
        .subscribe(SubscribeRequest {
            user: "target".into(),
            channel: "news:srv".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let push = on_b.next().await.unwrap().push.unwrap();
    assert_eq!(push.channel, "news:srv");
    assert!(push.subscribe.is_some());
    a.api()
        .publish(PublishRequest::new(
            "news:srv",
            Bytes::from_static(b"{\"k\":1}"),
        ))
        .await
        .unwrap();
    assert_eq!(
        pubs(&on_b.drain().await),
        vec![(0, "{\"k\":1}".to_string())]
    );
    a.api()
        .unsubscribe(UnsubscribeRequest {
            user: "target".into(),
            channel: "news:srv".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let push = on_b.next().await.unwrap().push.unwrap();
    assert_eq!(push.unsubscribe.map(|u| u.code), Some(2000));
    a.api()
        .disconnect(DisconnectRequest {
            user: "target".into(),
            disconnect: Some(DisconnectSpec {
                code: 4501,
                reason: "banned".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(on_b.close_code().await, Some(4501));
    assert!(other.drain().await.is_empty());
    assert!(other.closed.is_none());
}

#[tokio::test]
async fn refresh_reaches_connections_on_other_nodes() {
    let (a, b) = two_nodes();
    see_each_other(&a, &b).await;
    let mut on_b = TestClient::connect(&b, "target").await;
    let mut other = TestClient::connect(&b, "bystander").await;
    a.api()
        .refresh(RefreshRequest {
            user: "target".into(),
            expired: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(on_b.close_code().await, Some(3005));
    assert!(other.drain().await.is_empty());
    assert!(other.closed.is_none());
}

#[tokio::test]
async fn a_stopped_node_leaves_the_registry() {
    let (a, b) = two_nodes();
    see_each_other(&a, &b).await;
    b.shutdown(Duration::ZERO, Duration::from_secs(1)).await;
    // The shutdown notice removes it at once (a crashed node would age out after 10 s).
    assert_eq!(nodes(&a).await.len(), 1);
}
