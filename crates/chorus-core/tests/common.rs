//! Test harness: a node with the in-memory broker and presence, and clients driven through
//! the same API the WebSocket transport uses (frames in, frames out).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::auth::{ConnectionClaims, SubscriptionClaims, TokenError, TokenVerifier};
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, Namespace, NodeOptions};
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::{Client, ClientParams, Node, WriteEvent};
use chorus_protocol::{decode_replies, Protocol, Reply};

/// Tokens of the form `user:NAME[;exp=UNIX][;channels=a,b]`, `expired`, anything else invalid;
/// subscription tokens `sub:USER:CHANNEL`.
pub struct TestTokens;

impl TokenVerifier for TestTokens {
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError> {
        if token == "expired" {
            return Err(TokenError::Expired);
        }
        let Some(rest) = token.strip_prefix("user:") else {
            return Err(TokenError::Invalid("bad".into()));
        };
        let mut parts = rest.split(';');
        let mut claims = ConnectionClaims {
            user: parts.next().unwrap_or("").to_string(),
            info: Bytes::from_static(br#"{"name":"tester"}"#),
            ..Default::default()
        };
        for p in parts {
            if let Some(exp) = p.strip_prefix("exp=") {
                claims.exp = exp.parse().ok();
            }
            if let Some(ch) = p.strip_prefix("channels=") {
                claims.channels = ch.split(',').map(String::from).collect();
            }
        }
        Ok(claims)
    }

    fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError> {
        let parts: Vec<&str> = token.splitn(3, ':').collect();
        match parts.as_slice() {
            ["sub", user, channel] => Ok(SubscriptionClaims {
                user: user.to_string(),
                channel: channel.to_string(),
                ..Default::default()
            }),
            _ => Err(TokenError::Invalid("bad".into())),
        }
    }
}

pub fn options() -> NodeOptions {
    let mut o = NodeOptions {
        name: "test".into(),
        version: "0.0.0-test".into(),
        ..Default::default()
    };
    o.client.channel_unsubscribe_delay = ConfigDuration::ZERO;
    o.channel.namespaces = vec![
        Namespace {
            name: "chat".into(),
            options: ChannelOptions {
                presence: true,
                join_leave: true,
                force_push_join_leave: true,
                history_size: 10,
                history_ttl: ConfigDuration::from_secs(300),
                force_recovery: true,
                allow_subscribe_for_client: true,
                allow_publish_for_subscriber: true,
                allow_presence_for_subscriber: true,
                allow_history_for_subscriber: true,
                ..Default::default()
            },
        },
        Namespace {
            name: "news".into(),
            options: ChannelOptions {
                allow_subscribe_for_client: true,
                ..Default::default()
            },
        },
        Namespace {
            name: "bin".into(),
            options: ChannelOptions {
                allow_subscribe_for_client: true,
                allow_publish_for_subscriber: true,
                allow_history_for_subscriber: true,
                history_size: 10,
                history_ttl: ConfigDuration::from_secs(300),
                allow_binary_data: true,
                ..Default::default()
            },
        },
    ];
    o
}

pub fn node_with(options: NodeOptions) -> Node {
    Node::new(
        "test-node",
        options,
        MemoryBroker::new(),
        MemoryPresence::new(),
        Arc::new(TestTokens),
    )
}

/// A node over the given broker and presence store (kept by the caller for inspection).
pub fn node_over(
    options: NodeOptions,
    broker: Arc<MemoryBroker>,
    presence: Arc<MemoryPresence>,
) -> Node {
    Node::new("test-node", options, broker, presence, Arc::new(TestTokens))
}

pub fn node() -> Node {
    node_with(options())
}

/// A client plus what its writer has produced so far.
pub struct TestClient {
    pub client: Arc<Client>,
    pub protocol: Protocol,
    pending: std::collections::VecDeque<Reply>,
    pub closed: Option<chorus_core::Disconnect>,
}

impl TestClient {
    pub fn new(node: &Node, protocol: Protocol) -> Self {
        let client = node
            .try_new_client(ClientParams {
                protocol,
                remote_addr: None,
            })
            .expect("client");
        TestClient {
            client,
            protocol,
            pending: Default::default(),
            closed: None,
        }
    }

    pub async fn send(&self, json: &str) {
        self.client.handle_frame(json.as_bytes()).await;
    }

    /// The next message the writer would send (waits up to 2 s).
    pub async fn next(&mut self) -> Option<Reply> {
        if let Some(r) = self.pending.pop_front() {
            return Some(r);
        }
        if self.closed.is_some() {
            return None;
        }
        match tokio::time::timeout(Duration::from_secs(2), self.client.next_write()).await {
            Ok(WriteEvent::Frame(frame)) => {
                self.pending
                    .extend(decode_replies(self.protocol, &frame).expect("decodable frame"));
                self.pending.pop_front()
            }
            Ok(WriteEvent::Close(d)) => {
                self.closed = Some(d);
                None
            }
            Ok(WriteEvent::Raw(_)) => panic!("no transport frames without a transport"),
            Err(_) => None,
        }
    }

    /// Everything already queued, without waiting.
    pub async fn drain(&mut self) -> Vec<Reply> {
        let mut out: Vec<Reply> = self.pending.drain(..).collect();
        loop {
            match tokio::time::timeout(Duration::from_millis(50), self.client.next_write()).await {
                Ok(WriteEvent::Frame(frame)) => {
                    out.extend(decode_replies(self.protocol, &frame).expect("decodable"))
                }
                Ok(WriteEvent::Close(d)) => {
                    self.closed = Some(d);
                    break;
                }
                Ok(WriteEvent::Raw(_)) => panic!("no transport frames without a transport"),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits for the close and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        while self.closed.is_none() {
            if self.next().await.is_none() && self.closed.is_none() {
                return None;
            }
        }
        self.closed.as_ref().map(|d| d.code)
    }

    pub async fn connect(node: &Node, user: &str) -> TestClient {
        let mut c = TestClient::new(node, Protocol::Json);
        c.send(&format!(
            r#"{{"id":1,"connect":{{"token":"user:{user}"}}}}"#
        ))
        .await;
        let r = c.next().await.expect("connect reply");
        assert!(r.connect.is_some(), "connect failed: {r:?}");
        c
    }
}

/// Publication offsets and data among replies.
pub fn pubs(replies: &[Reply]) -> Vec<(u64, String)> {
    replies
        .iter()
        .filter_map(|r| {
            let p = r.push.as_ref()?.publication.as_ref()?;
            Some((p.offset, String::from_utf8_lossy(&p.data).to_string()))
        })
        .collect()
}
