//! Server API operations on users' connections — subscribe, unsubscribe, disconnect, refresh —
//! called through the typed API and observed on real connections (exact codes and effects);
//! expiry timers with paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::*;
use chorus_core::clock::unix_now;
use chorus_core::duration::ConfigDuration;
use chorus_core::{Node, WriteEvent};
use common::{node, node_with, options, TestClient};

fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> u32 {
    r.expect_err("an error").code
}

/// A node without server pings, so only expiry can close a quiet connection.
fn quiet_node() -> Node {
    let mut o = options();
    o.client.ping_interval = ConfigDuration::ZERO;
    node_with(o)
}

fn refresh(user: &str) -> RefreshRequest {
    RefreshRequest {
        user: user.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn subscribe_validates_and_subscribes_every_connection_of_the_user() {
    let node = node();
    let api = node.api();
    let req = |user: &str, channel: &str| SubscribeRequest {
        user: user.into(),
        channel: channel.into(),
        ..Default::default()
    };
    assert_eq!(code(api.subscribe(req("", "chat:s")).await), 107);
    assert_eq!(code(api.subscribe(req("u", "")).await), 107);
    assert_eq!(code(api.subscribe(req("u", "nope:s")).await), 102);
    let bad_b64 = SubscribeRequest {
        b64info: "!!".into(),
        ..req("u", "nope:s")
    };
    assert_eq!(code(api.subscribe(bad_b64).await), 107, "107 before 102");
    let not_json = SubscribeRequest {
        info: Bytes::from_static(b"\xffnot json"),
        ..req("u", "chat:s")
    };
    assert_eq!(code(api.subscribe(not_json).await), 107);

    let mut a = TestClient::connect(&node, "u").await;
    let mut b = TestClient::connect(&node, "u").await;
    let mut other = TestClient::connect(&node, "v").await;
    let full = SubscribeRequest {
        info: Bytes::from_static(br#"{"role":"mod"}"#),
        b64data: "eyJ3ZWxjb21lIjp0cnVlfQ==".into(),
        ..req("u", "chat:s")
    };
    api.subscribe(full).await.unwrap();
    for c in [&mut a, &mut b] {
        let push = c.next().await.unwrap().push.unwrap();
        assert_eq!(push.channel, "chat:s");
        let sub = push.subscribe.unwrap();
        assert_eq!(&sub.data[..], br#"{"welcome":true}"#);
        assert!(sub.recoverable && sub.positioned);
    }
    assert!(other.drain().await.is_empty());
    let presence = api
        .presence(PresenceRequest {
            channel: "chat:s".into(),
        })
        .await
        .unwrap()
        .presence;
    assert_eq!(presence.len(), 2);
    let entry = &presence[a.client.id()];
    assert_eq!(&entry.chan_info[..], br#"{"role":"mod"}"#);

    a.drain().await;
    b.drain().await;
    // Only one connection, by client id.
    let one = SubscribeRequest {
        client: b.client.id().to_owned(),
        ..req("u", "news:one")
    };
    api.subscribe(one).await.unwrap();
    let push = b.next().await.unwrap().push.unwrap();
    assert_eq!(push.channel, "news:one");
    assert!(a.drain().await.iter().all(|r| r.push.is_none()));
}

#[tokio::test]
async fn unsubscribe_validates_and_pushes_2000() {
    let node = node();
    let api = node.api();
    let req = |user: &str, channel: &str| UnsubscribeRequest {
        user: user.into(),
        channel: channel.into(),
        ..Default::default()
    };
    assert_eq!(code(api.unsubscribe(req("", "chat:u")).await), 107);
    assert_eq!(code(api.unsubscribe(req("u", "")).await), 107);
    assert_eq!(code(api.unsubscribe(req("u", "nope:u")).await), 102);
    let mut c = TestClient::connect(&node, "u").await;
    c.send(r#"{"id":2,"subscribe":{"channel":"chat:u"}}"#).await;
    assert!(c.next().await.unwrap().subscribe.is_some());
    c.drain().await;
    api.unsubscribe(req("u", "chat:u")).await.unwrap();
    let push = c.next().await.unwrap().push.unwrap();
    assert_eq!(push.channel, "chat:u");
    let unsub = push.unsubscribe.unwrap();
    assert_eq!(
        (unsub.code, unsub.reason.as_str()),
        (2000, "server unsubscribe")
    );
}

#[tokio::test]
async fn disconnect_validates_and_closes_all_but_the_whitelist() {
    let node = node();
    let api = node.api();
    let req = |user: &str| DisconnectRequest {
        user: user.into(),
        ..Default::default()
    };
    assert_eq!(code(api.disconnect(req("")).await), 107);
    let bad_code = DisconnectRequest {
        disconnect: Some(DisconnectSpec {
            code: 3000,
            reason: String::new(),
        }),
        ..req("u")
    };
    assert_eq!(code(api.disconnect(bad_code).await), 107);

    let mut a = TestClient::connect(&node, "u").await;
    let mut b = TestClient::connect(&node, "u").await;
    let mut keep = TestClient::connect(&node, "u").await;
    let custom = DisconnectRequest {
        whitelist: vec![keep.client.id().to_owned()],
        client: String::new(),
        disconnect: Some(DisconnectSpec {
            code: 4500,
            reason: "banned".into(),
        }),
        ..req("u")
    };
    api.disconnect(custom).await.unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.close_code().await, Some(4500));
        assert_eq!(c.closed.as_ref().unwrap().reason, "banned");
    }
    assert!(keep.drain().await.is_empty() && keep.closed.is_none());
    api.disconnect(req("u")).await.unwrap();
    assert_eq!(keep.close_code().await, Some(3503));
    assert_eq!(keep.closed.unwrap().reason, "force disconnect");
}

#[tokio::test]
async fn refresh_validates_its_arguments() {
    let api = node().api();
    assert_eq!(code(api.refresh(refresh("")).await), 107);
    let negative = RefreshRequest {
        expire_at: -1,
        ..refresh("u")
    };
    assert_eq!(code(api.refresh(negative).await), 107);
    let not_json = RefreshRequest {
        info: Bytes::from_static(b"\xff\xfe"),
        ..refresh("u")
    };
    assert_eq!(code(api.refresh(not_json).await), 107);
    let too_deep = RefreshRequest {
        info: Bytes::from("[".repeat(200) + &"]".repeat(200)),
        ..refresh("u")
    };
    assert_eq!(code(api.refresh(too_deep).await), 107);
    // Nobody to refresh is not an error.
    assert_eq!(api.refresh(refresh("nobody")).await, Ok(RefreshResult {}));
}

#[tokio::test]
async fn refresh_expired_closes_the_user_with_3005() {
    let node = node();
    let api = node.api();
    let mut a = TestClient::connect(&node, "u").await;
    let mut b = TestClient::connect(&node, "u").await;
    let mut bystander = TestClient::connect(&node, "v").await;
    let expired = RefreshRequest {
        expired: true,
        ..refresh("u")
    };
    api.refresh(expired).await.unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.close_code().await, Some(3005));
        assert_eq!(c.closed.as_ref().unwrap().reason, "connection expired");
    }
    assert!(bystander.drain().await.is_empty() && bystander.closed.is_none());
}

#[tokio::test]
async fn refresh_of_one_client_leaves_the_others() {
    let node = node();
    let api = node.api();
    let mut a = TestClient::connect(&node, "u").await;
    let mut b = TestClient::connect(&node, "u").await;
    let one = RefreshRequest {
        expired: true,
        client: b.client.id().to_owned(),
        ..refresh("u")
    };
    api.refresh(one).await.unwrap();
    assert_eq!(b.close_code().await, Some(3005));
    assert!(a.drain().await.is_empty() && a.closed.is_none());
}

#[tokio::test]
async fn refresh_with_a_past_expire_at_closes_at_once() {
    let node = node();
    let mut c = TestClient::connect(&node, "u").await;
    let past = RefreshRequest {
        expire_at: unix_now() - 10,
        ..refresh("u")
    };
    node.api().refresh(past).await.unwrap();
    assert_eq!(c.close_code().await, Some(3005));
}

/// A new expiry works like a refreshed token's: the connection closes with 3005 once it and
/// `client.expired_close_delay` (25 s) have passed — and not before.
#[tokio::test(start_paused = true)]
async fn refresh_expire_at_sets_the_connection_expiry() {
    let node = quiet_node();
    let c = TestClient::connect(&node, "u").await;
    let later = RefreshRequest {
        expire_at: unix_now() + 60,
        ..refresh("u")
    };
    node.api().refresh(later).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(84), c.client.next_write()).await;
    assert!(quiet.is_err(), "closed before expiry + grace: {quiet:?}");
    match tokio::time::timeout(Duration::from_secs(3), c.client.next_write()).await {
        Ok(WriteEvent::Close(d)) => {
            assert_eq!((d.code, d.reason.as_str()), (3005, "connection expired"))
        }
        other => panic!("expected 3005, got {other:?}"),
    }
}

/// `expire_at: 0` leaves the expiry alone: a connection without one stays open.
#[tokio::test(start_paused = true)]
async fn refresh_without_expire_at_keeps_the_expiry() {
    let node = quiet_node();
    let c = TestClient::connect(&node, "u").await;
    let info_only = RefreshRequest {
        info: Bytes::from_static(br#"{"name":"renamed"}"#),
        ..refresh("u")
    };
    node.api().refresh(info_only).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(3600), c.client.next_write()).await;
    assert!(quiet.is_err(), "{quiet:?}");
}

#[tokio::test]
async fn refresh_info_becomes_the_connection_info() {
    let node = node();
    let api = node.api();
    let mut c = TestClient::connect(&node, "u").await;
    let renamed = RefreshRequest {
        info: Bytes::from_static(br#"{"name":"renamed"}"#),
        ..refresh("u")
    };
    api.refresh(renamed).await.unwrap();
    c.send(r#"{"id":2,"subscribe":{"channel":"chat:i"}}"#).await;
    assert!(c.next().await.unwrap().subscribe.is_some());
    let presence = api
        .presence(PresenceRequest {
            channel: "chat:i".into(),
        })
        .await
        .unwrap()
        .presence;
    assert_eq!(
        &presence[c.client.id()].conn_info[..],
        br#"{"name":"renamed"}"#
    );
    c.drain().await;
    c.send(r#"{"id":3,"publish":{"channel":"chat:i","data":{"m":1}}}"#)
        .await;
    let replies = c.drain().await;
    let publication = replies
        .iter()
        .find_map(|r| r.push.as_ref()?.publication.clone())
        .unwrap();
    assert_eq!(
        &publication.info.unwrap().conn_info[..],
        br#"{"name":"renamed"}"#
    );
}
