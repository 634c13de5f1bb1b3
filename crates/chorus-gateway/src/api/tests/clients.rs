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
        }
    }
}

#[tokio::test]
async fn api_acts_on_connected_users() {
    let node = node_with(Arc::new(UserTokens));
    let client = node
        .try_new_client(ClientParams {
            protocol: Protocol::Json,
            transport: "websocket",
            remote_addr: None,
        })
        .unwrap();
    client
        .handle_frame(br#"{"id":1,"connect":{"token":"alice"}}"#)
        .await;
    frame_with(&client, r#""connect""#).await;
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
