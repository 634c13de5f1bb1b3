//! The API acting on real connections: server-side subscribe, presence, channels, publish
//! delivery and disconnect codes, observed through the connection's writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::auth::{ConnectionClaims, SubscriptionClaims, TokenError, TokenVerifier};
use chorus_core::{Client, ClientParams, WriteEvent};
use chorus_protocol::Protocol;

use super::{call, node_with};

/// Token = user id; every user's connection info is `{"name":"<user>"}`.
struct UserTokens;

impl TokenVerifier for UserTokens {
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError> {
        Ok(ConnectionClaims {
            user: token.to_owned(),
            info: Bytes::from(format!(r#"{{"name":"{token}"}}"#)),
            ..ConnectionClaims::default()
        })
    }
    fn verify_subscription(&self, _token: &str) -> Result<SubscriptionClaims, TokenError> {
        Err(TokenError::Invalid("not in this test".into()))
    }
}

async fn next_event(client: &Client) -> WriteEvent {
    tokio::time::timeout(Duration::from_secs(5), client.next_write())
        .await
        .expect("the connection wrote nothing within 5s")
}

/// Frames until one contains `needle`.
async fn frame_with(client: &Client, needle: &str) -> String {
    loop {
        match next_event(client).await {
            WriteEvent::Frame(frame) => {
                let text = String::from_utf8(frame.to_vec()).unwrap();
                if text.contains(needle) {
                    return text;
                }
            }
            WriteEvent::Close(d) => panic!("closed {} {} waiting for {needle}", d.code, d.reason),
            WriteEvent::Raw(_) => panic!("no transport frames without a transport"),
        }
    }
}

#[tokio::test]
async fn api_acts_on_connected_users() {
    let node = node_with(Arc::new(UserTokens));
    let client = connected(&node, "alice").await;
    let id = client.id().to_owned();

    let (_, body) = call(
        &node,
        "subscribe",
        r#"{"user":"alice","channel":"chat:room","info":{"role":"mod"}}"#,
    )
    .await;
    assert_eq!(body, r#"{"result":{}}"#);
    frame_with(&client, r#""subscribe""#).await;

    let (_, presence) = call(&node, "presence", r#"{"channel":"chat:room"}"#).await;
    assert_eq!(
        presence,
        format!(
            r#"{{"result":{{"presence":{{"{id}":{{"user":"alice","client":"{id}","conn_info":{{"name":"alice"}},"chan_info":{{"role":"mod"}}}}}}}}}}"#
        )
    );
    let (_, stats) = call(&node, "presence_stats", r#"{"channel":"chat:room"}"#).await;
    assert_eq!(stats, r#"{"result":{"num_clients":1,"num_users":1}}"#);
    let (_, status) = call(&node, "user_status", r#"{"users":["bob","alice"]}"#).await;
    assert_eq!(
        status,
        r#"{"result":{"statuses":[{"user":"bob","online":false,"num_clients":0,"channels":[]},{"user":"alice","online":true,"num_clients":1,"channels":["chat:room"]}]}}"#
    );
    let (_, bad) = call(&node, "user_status", r#"{"users":[]}"#).await;
    assert_eq!(bad, r#"{"error":{"code":107,"message":"bad request"}}"#);
    let (_, channels) = call(&node, "channels", r#"{"pattern":"chat:*"}"#).await;
    assert_eq!(
        channels,
        r#"{"result":{"channels":{"chat:room":{"num_clients":1}}}}"#
    );
    let (_, channels) = call(&node, "channels", r#"{"pattern":"other:*"}"#).await;
    assert_eq!(channels, r#"{"result":{"channels":{}}}"#);

    call(
        &node,
        "publish",
        r#"{"channel":"chat:room","data":{"t": "exact",  "n":1.50}}"#,
    )
    .await;
    let push = frame_with(&client, r#""pub""#).await;
    assert!(
        push.contains(r#""data":{"t": "exact",  "n":1.50}"#),
        "{push}"
    );

    let (_, body) = call(
        &node,
        "disconnect",
        r#"{"user":"alice","disconnect":{"code":4500,"reason":"banned"}}"#,
    )
    .await;
    assert_eq!(body, r#"{"result":{}}"#);
    loop {
        if let WriteEvent::Close(d) = next_event(&client).await {
            assert_eq!((d.code, d.reason.as_str()), (4500, "banned"));
            break;
        }
    }
    client.cleanup().await;
}

/// A connected client of `user` (token = user id).
async fn connected(node: &chorus_core::Node, user: &str) -> Arc<Client> {
    let client = node
        .try_new_client(ClientParams {
            protocol: Protocol::Json,
            remote_addr: None,
        })
        .unwrap();
    let connect = format!(r#"{{"id":1,"connect":{{"token":"{user}"}}}}"#);
    client.handle_frame(connect.as_bytes()).await;
    frame_with(&client, r#""connect""#).await;
    client
}

async fn close_of(client: &Client) -> (u16, String) {
    loop {
        if let WriteEvent::Close(d) = next_event(client).await {
            return (d.code, d.reason);
        }
    }
}

#[tokio::test]
async fn refresh_changes_info_and_expires_connections() {
    let node = node_with(Arc::new(UserTokens));
    let first = connected(&node, "bob").await;
    let second = connected(&node, "bob").await;

    // New connection info: what presence shows once the client subscribes.
    let (_, body) = call(
        &node,
        "refresh",
        &format!(
            r#"{{"user":"bob","client":"{}","info":{{"name":"Robert"}}}}"#,
            first.id()
        ),
    )
    .await;
    assert_eq!(body, r#"{"result":{}}"#);
    let subscribe = format!(
        r#"{{"user":"bob","client":"{}","channel":"chat:r"}}"#,
        first.id()
    );
    assert_eq!(
        call(&node, "subscribe", &subscribe).await.1,
        r#"{"result":{}}"#
    );
    frame_with(&first, r#""subscribe""#).await;
    let (_, presence) = call(&node, "presence", r#"{"channel":"chat:r"}"#).await;
    assert!(
        presence.contains(r#""conn_info":{"name":"Robert"}"#),
        "{presence}"
    );

    // An expiry in the past, for one client: closed with 3005 at once; the other stays.
    let (_, body) = call(
        &node,
        "refresh",
        &format!(
            r#"{{"user":"bob","client":"{}","expire_at":1}}"#,
            second.id()
        ),
    )
    .await;
    assert_eq!(body, r#"{"result":{}}"#);
    assert_eq!(
        close_of(&second).await,
        (3005, "connection expired".to_owned())
    );
    assert!(!first.is_closed());

    // `expired: true` for the whole user.
    let (_, body) = call(&node, "refresh", r#"{"user":"bob","expired":true}"#).await;
    assert_eq!(body, r#"{"result":{}}"#);
    assert_eq!(
        close_of(&first).await,
        (3005, "connection expired".to_owned())
    );
    first.cleanup().await;
    second.cleanup().await;
}
